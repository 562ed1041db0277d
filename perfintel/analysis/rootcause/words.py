"""What words say in root-cause analysis: names and labels in, explanations out.

In: the entity and the machine a series belongs to by its labels, and the role
(load, resource, latency, errors) its metric name says (:mod:`.roles`). Out: the
sentence that says why a change ranks where it does. Kept apart from the ranking
(:mod:`perfintel.analysis.rootcause.ranking`) so the method stays readable; this
module knows labels and numbers, not the ranking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from perfintel.model import METRIC_NAME, LabelSet, metric_name

from .conventions import ENTITY_KINDS, HOST_KINDS, entity_label
from .parts import measurement_of
from .roles import ROLE_ORDER, SYMPTOM_ROLES, role_of
from .roles import is_occupancy as is_occupancy  # read here by the ranking and the tests
from .roles import is_throttling as is_throttling  # read here by the ranking
from .roles import role_codes as role_codes  # read here by the ranking

#: labels naming the entity a series belongs to, most specific kind first (see
#: :data:`~perfintel.analysis.rootcause.conventions.ENTITY_KINDS`: ``pod`` before ``instance``,
#: each kind's Prometheus label before its OpenTelemetry resource attribute)
ENTITY_LABELS = tuple(k for _, keys in ENTITY_KINDS for k in keys)
#: labels naming a machine: a series carrying one of them and none of the finer entity labels
#: is the machine's own (a noisy neighbour there reaches every workload it hosts)
HOST_LABELS = tuple(k for kind, keys in ENTITY_KINDS if kind in HOST_KINDS for k in keys)


def host_of(labels: LabelSet) -> tuple[str, bool]:
    """``(machine, whether the series is the machine's own)`` from the host/node labels."""
    d = dict(labels)
    host = next((d[k] for k in HOST_LABELS if d.get(k)), "")
    finer = any(d.get(k) for k in ENTITY_LABELS if k not in HOST_LABELS)
    return host, bool(host) and not finer


def entity_of(labels: LabelSet) -> str:
    """The entity a series belongs to: ``<kind>=<value>`` of its first entity kind
    (:data:`ENTITY_LABELS`, an OpenTelemetry label read as its kind; ``""``: none)."""
    e = entity_label(dict(labels))
    return f"{e[0]}={e[1]}" if e else ""


_VERBS = {
    ("shift", 1): "rose",
    ("shift", -1): "fell",
    ("spike", 1): "spiked",
    ("spike", -1): "dropped briefly",
    ("ramp", 1): "grew steadily",
    ("ramp", -1): "declined steadily",
    ("saturation", 1): "saturated",
    ("saturation", -1): "bottomed out",
}


def verb(shape: str, sigma: float) -> str:
    """What a change did, in words (``rose``, ``spiked``, ``saturated``…)."""
    return _VERBS[(shape, 1 if sigma >= 0 else -1)]


#: labels that say where a series is, not what it measures (left out of its description)
_WHERE = frozenset(
    (*ENTITY_LABELS, "namespace", "cluster", "region", "zone", "datacenter", "env", "environment")
)


def describe_series(labels: LabelSet, counter: bool = False) -> str:
    """``<metric>{<what else tells it apart>} on <entity>`` from the usual labels (pod,
    instance, host, service, job): ``node_cpu_seconds_total{cpu="3",mode="iowait"} on db-1``.
    A ``counter`` is analysed by its increase per step, and always grows: "the rate of" it
    is what rose or fell."""
    if counter:
        return "the rate of " + describe_series(labels)
    d = dict(labels)
    name = metric_name(labels) or "series"
    rest = ",".join(f'{k}="{v}"' for k, v in labels if k != METRIC_NAME and k not in _WHERE)
    if rest:
        name += "{" + rest + "}"
    e = entity_label(d)
    where = e[1] if e else ""
    return f"{name} on {where}" if where else name


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _duration(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def explain(
    labels: LabelSet,
    shape: str,
    sigma: float,
    onset_ms: int,
    followers: Sequence[tuple[LabelSet, str, float, int]],
    explained_by: LabelSet | None,
    constant_at: float | None = None,
    counters: Collection[LabelSet] = (),
) -> str:
    """Why a change ranks where it does: what it did, what followed it and how much later.

    ``followers`` are ``(labels, shape, sigma, lag_ms)`` of the changes it
    explains, earliest first; ``explained_by`` the labels of the strongest
    earlier change that explains it. ``constant_at``: the value of a series that was
    constant through the baseline, whose σ (a move over no spread at all) says nothing a
    reader can use: the sentence says what it was instead. ``counters``: the labels of the
    series that are counters (each described by its rate).
    """
    size = f"{abs(sigma):.1f}σ" if constant_at is None else f"constant at {constant_at:g} before"
    what = f"{describe_series(labels, labels in counters)} {verb(shape, sigma)} (onset {_clock(onset_ms)}, {size})"
    if followers:
        # named: the first follower that is not another part of the same measurement
        # (the next core of the same machine says nothing new)
        mine = measurement_of(labels)
        others = [f for f in followers if mine is None or measurement_of(f[0]) != mine]
        # a symptom (latency, errors) first: what the user sees is what the sentence is about
        named = next(
            (f for f in others if ROLE_ORDER.get(role_of(f[0]), -1) in SYMPTOM_ROLES), None
        )
        named = named or (others[0] if others else None)
        f_labels, f_shape, f_sigma, lag_ms = named or followers[0]
        did = f"{describe_series(f_labels, f_labels in counters)} {verb(f_shape, f_sigma)}"
        # a follower dated before its cause began with it, within their onsets' uncertainty
        text = f"{did} as {what}" if lag_ms <= 0 else f"{did} {_duration(lag_ms)} after {what}"
        if len(followers) > 1:
            text += f"; {len(followers) - 1} more series followed"
    else:
        text = what + "; nothing else moved with it"
    if explained_by is not None:
        text += f"; it may itself follow {describe_series(explained_by, explained_by in counters)}"
    return text
