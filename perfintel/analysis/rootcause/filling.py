"""A resource still filling at the alert: a suspect beside the top change, even unlinked.

An alert on exhaustion comes late. A leak — memory, file descriptors, a
connection pool, a database's sessions — grows for many minutes, often from
before the analysis window, and the symptoms appear when it reaches a limit,
in whatever calls the exhausted thing. Across entities the ranking cannot tie
the two: the baseline, where the leak did not yet harm anyone, holds no learned
dependency, and the symptoms began far later than one hop (round 12b of
BENCHMARKS.md tried explaining them anyway, as links: the errors of other
services then rank after the leak, and a slow drift that lines up with an
unrelated failure by chance took the top place too often). So the leak explains
nothing, the symptoms — larger, sharper, each supported by the others — fill
the first places, and the leak ranks far down.

With ``filling`` (a fraction) on, the ranking keeps its first place and puts
right after it the earliest *filling* change (the first to start filling is
where the chain begins) when it is not already among the first three: a change

* that is not a symptom (latency, errors) nor offered load (a surge is not
  exhaustion) — a resource or a series of unknown role,
* that nothing explains (the root of its chain) and that is not toward relief,
* that *grew gradually* (longer than one hop from its onset to 80 % of its peak,
  or dated before the window),
* that is a *stock* (a level a gauge reports: memory, descriptors, sessions in use),
  not a flow (a counter's rate: CPU seconds, commits): a flow saturates, it does
  not fill,
* that began before every symptom the alert is on (begun by the incident time and
  still departed there), beyond their onsets' uncertainty,
* that *held*: it never came back within ``onset_sigma / 2`` from its onset to
  the incident time, and still stood at least ``filling`` × its peak there
  (what is full when the alert fires, not what filled and drained).

Only one is moved, and only to second place: the top change stays first (a
change the links tie to the symptoms is better evidence than a coincidence in
time), and at most one other suspect loses a place.

Pure: arrays in, an index out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from perfintel.model import LabelSet, metric_name

from .exhaust import gradual_rise
from .machine import NODE_PREFIX
from .words import ROLE_ORDER, SYMPTOM_ROLES, host_of


def filling_suspects(
    z: np.ndarray,
    peak: np.ndarray,
    onset: np.ndarray,
    tol: np.ndarray,
    role: np.ndarray,
    free: np.ndarray,
    stock: np.ndarray,
    at: int,
    max_prop: int,
    onset_sigma: float,
    fraction: float,
) -> np.ndarray:
    """Which changes are filling (see the module docstring). Rows of ``z`` (window z-scores),
    ``peak`` (signed peak z), ``onset`` (window index), ``tol`` (onset uncertainty, steps) and
    ``role`` (``ROLE_ORDER``, -1 unknown) are the changes; ``free`` marks those nothing
    explains and not toward relief, ``stock`` those that are a level (a gauge), not a flow
    (a counter's rate); ``at`` is the incident time's window index."""
    k = onset.size
    if k == 0 or fraction <= 0:
        return np.zeros(k)
    w = z.shape[1]
    at = min(max(at, 0), w - 1)
    v, top, since, gradual = gradual_rise(z, peak, onset, max_prop)
    dropped = ((v < onset_sigma / 2) & since & (np.arange(w)[None, :] <= at)).any(axis=1)
    held = ~dropped & (v[:, at] >= fraction * top)
    symptom = np.isin(role, SYMPTOM_ROLES)
    kind = ~symptom & (role != ROLE_ORDER["traffic"]) & stock
    # the symptoms the alert is on: begun by the incident time and still departed there
    shown = symptom & (onset <= at) & (v[:, at] >= onset_sigma / 2)
    if not shown.any():
        return np.zeros(k)
    first = float(np.median(onset[shown] - tol[shown]))
    before = (onset + tol) < first
    ok = kind & free & gradual & before & held
    return np.where(ok, v[:, at] / np.maximum(top, 1e-12), 0.0)


def machine_wide(labels: LabelSet) -> bool:
    """Whether a series is a whole machine's (its host/node labels only, or a node exporter's
    ``node_*`` metric): its memory or descriptors sum what runs there."""
    return host_of(labels)[1] or metric_name(labels).startswith(NODE_PREFIX)


def second_place(
    scores: dict[int, float], suspects: Mapping[int, tuple[float, ...]], tie: dict[int, int]
) -> dict[int, float]:
    """``scores`` with the suspect of highest preference (``suspects[i]``, compared as tuples;
    then the higher score) moved right after the first change, when it is not among the
    first three already (the ranking orders by score, then ``tie``, then
    index). Changes tied with the first keep their order after the moved one."""
    if len(scores) < 4 or not suspects:
        return scores
    order = sorted(scores, key=lambda i: (-scores[i], tie[i], i))
    best = max(suspects, key=lambda i: (suspects[i], scores[i], -i))
    if order.index(best) < 3:
        return scores
    out = dict(scores)
    head = scores[order[0]]
    for j in order[1:]:
        if scores[j] < head - 1e-6:
            break
        out[j] = head - 2e-6
    out[best] = head - 1e-6
    return out
