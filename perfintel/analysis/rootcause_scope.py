"""The incident's scope: which changes moved its symptoms, and which are another event.

An incident is declared on its symptoms (latency, errors: what users see).
When symptoms changed by the incident time, a change that is none of them and
moved none of them — it explains no symptom, directly or through a chain of
the changes it explains — is not part of what the alert is about, however
large it is: a memory drop on a host where nothing slowed, a burst of CPU in a
service whose callers never noticed. The ranking lowers such a change
(``unmoved`` in :class:`~perfintel.analysis.rootcause.RootCauseParams`), with
one exception: a resource still growing steadily at the incident time (a
ramp: a leak) may not have reached the limit at which it moves anything yet
(see ``accumulation``), so its silence is not evidence against it.

Arrays and mappings in, sets of series indices out; no ranking here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def moves_symptoms(symptoms: Sequence[int], explained: Mapping[int, list[int]]) -> set[int]:
    """The symptoms and every change that explains one, directly or through a chain of
    explained changes (walked back from the symptoms along ``explained``)."""
    seen = set(symptoms)
    todo = list(symptoms)
    while todo:
        for k in explained[todo.pop()]:
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def unmoved(cands: Sequence[int], moves: Collection[int], shapes: Mapping[int, str]) -> set[int]:
    """The changes of ``cands`` outside ``moves`` (they moved no symptom) that are not still
    growing steadily (``ramp``); empty when no symptom changed (``moves`` empty)."""
    if not moves:
        return set()
    return {i for i in cands if i not in moves and shapes[i] != "ramp"}
