"""Series that are parts of one measurement, read as one cause.

A machine's CPU time per core (``cpu``), a histogram's buckets (``le``) and a
summary's quantiles (``quantile``) split one measurement into parts. When
several parts changed, a ranking lists one finding several times (eight cores
of one database host, each "saturated", fill the top of the list and push the
next finding out of sight). :func:`group_parts` keeps the best ranked part of
each measurement where it ranked and lists the others under it; the ranking
itself is untouched (this is how it is read, not how it is computed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from perfintel.model import METRIC_NAME, LabelSet

#: labels that split one measurement into parts of the same kind
PART_LABELS = ("cpu", "le", "quantile")


def measurement_of(labels: LabelSet) -> tuple[str, LabelSet] | None:
    """The measurement ``labels`` is a part of (its part label and the other labels), or None."""
    names = {k for k, _ in labels}
    if METRIC_NAME not in names:
        return None
    part = next((k for k in PART_LABELS if k in names), None)
    if part is None:
        return None
    return part, tuple((k, v) for k, v in labels if k != part)


class _Labelled(Protocol):
    @property
    def labels(self) -> LabelSet: ...


C = TypeVar("C", bound=_Labelled)


@dataclass(frozen=True)
class PartGroup(Generic[C]):
    """The best ranked part of a measurement, the label its parts differ by (None for a
    series that is no part) and its other parts, in rank order."""

    first: C
    part_label: str | None
    others: tuple[C, ...] = ()


def group_parts(ranked: Sequence[C]) -> list[PartGroup[C]]:
    """``ranked`` with the parts of one measurement gathered under its best ranked part."""
    groups: list[PartGroup[C]] = []
    at: dict[tuple[str, LabelSet], int] = {}
    for item in ranked:
        m = measurement_of(item.labels)
        if m is None:
            groups.append(PartGroup(item, None))
        elif m in at:
            g = groups[at[m]]
            groups[at[m]] = PartGroup(g.first, g.part_label, (*g.others, item))
        else:
            at[m] = len(groups)
            groups.append(PartGroup(item, m[0]))
    return groups
