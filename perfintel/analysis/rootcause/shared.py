"""A shared stock that filled: the callers of one exhausted dependency fail together.

:mod:`~perfintel.analysis.rootcause.exhaust` lets a resource that filled slowly
explain the later symptoms of its *own* workload. A shared stock — a
database's sessions, a cache's memory, a callee's memory — fills the same way,
but what fails when it is full are *other* services, its callers, and across
services the baseline shows no dependency (the stock was quiet there) and the
onsets are far apart (minutes of filling, then the failure), so no link ties
them. Round 12b's cross-entity exhaustion lost more than it won: a chance drift
that grew and held lines up with *any* later orphan symptom.

What a chance drift does not do is explain a *group*: callers of one exhausted
dependency fail together. With ``shared`` (a fraction) on, change ``i``
explains the orphan symptoms ``J`` of other entities when

* ``i`` is a stock (a gauge, not a counter's rate; neither offered load nor a
  symptom), grew gradually (longer than a hop to 80 % of its peak), held from
  its onset to each symptom's onset and stood at ≥ ``shared`` × its peak when
  each began (:func:`~perfintel.analysis.rootcause.exhaust.gradual_rise`),
* every ``j`` in ``J`` is an *orphan*: a latency or errors change that nothing
  of its own workload or machine explains, of another entity than ``i``'s (not
  on ``i``'s machine), that the declared graph lets ``i`` reach, and began
  after ``i`` beyond their onsets' uncertainty,
* ``J`` began within one propagation hop of one another and spans at least two
  entities (the largest such group of ``i``'s candidates, the earliest on a tie).

Two restrictions, each off at 0 (round 16):

* ``min_peak``: the stock's peak |z| is at least this (``shared_size`` × ``min_sigma``): an
  exhaustion is a large departure, a drift of a few sigmas that held is not one;
* ``cover``: the group spans at least this share of the entities with an orphan symptom:
  when a shared dependency is exhausted, what fails unexplained is its callers, all of them
  beginning together; a stock whose group leaves most of the unexplained entities aside
  lines up by chance with part of another fault's spread (a planted background drift beside
  a spike whose first followers began in the same step).

Pure: arrays in, a boolean matrix out.
"""

from __future__ import annotations

import numpy as np

from .exhaust import full_when_began, gradual_rise, held_until
from .pairs import Pairs, entity_count
from .words import ROLE_ORDER, SYMPTOM_ROLES

_TRAFFIC = ROLE_ORDER["traffic"]


def shared_links(
    z: np.ndarray,
    peak: np.ndarray,
    onset: np.ndarray,
    tol: np.ndarray,
    role: np.ndarray,
    gauge: np.ndarray,
    linked: np.ndarray,
    pairs: Pairs,
    max_prop: int,
    onset_sigma: float,
    fraction: float,
    min_peak: float = 0.0,
    cover: float = 0.0,
) -> np.ndarray:
    """``link[a, b]``: stock ``a`` explains orphan symptom ``b`` of a group of callers (see the
    module docstring; ``min_peak`` and ``cover`` are its two restrictions, 0 off). Rows of
    ``z`` (window z-scores), ``peak`` (signed peak z), ``onset`` (window index), ``tol`` (onset uncertainty, steps) and ``role`` (``ROLE_ORDER``, -1
    unknown) are the changes; ``linked`` (``a`` already explains ``b``) and ``pairs`` (its
    ``hosts``, ``allowed`` and ``same_entity``) are over their pairs."""
    k = onset.size
    link = np.zeros((k, k), dtype=bool)
    if k < 3 or fraction <= 0:
        return link
    v, top, since, gradual = gradual_rise(z, peak, onset, max_prop)
    drop = held_until(v, since, onset_sigma)
    symptom = np.isin(role, SYMPTOM_ROLES)
    cause = gradual & gauge & ~symptom & (role != _TRAFFIC) & (top >= min_peak)
    hosts, same = pairs.hosts, pairs.same_entity
    orphan = symptom & (onset >= 0) & ~(linked & hosts).any(axis=0)
    a_idx, b_idx = np.flatnonzero(cause), np.flatnonzero(orphan)
    if a_idx.size == 0 or b_idx.size < 2:
        return link
    sub = np.ix_(a_idx, b_idx)
    full = full_when_began(v, top, onset, tol, drop, a_idx, b_idx, fraction)
    may = full & ~same[sub] & ~hosts[sub] & pairs.allowed[sub]
    need = cover * entity_count(same, b_idx)  # the group spans this many entities at least
    for row in np.flatnonzero(may.sum(axis=1) >= 2):
        cols = b_idx[may[row]]
        when = onset[cols]
        best: np.ndarray | None = None
        for start in np.unique(when):  # earliest first: a tie keeps the earliest group
            group = cols[(when >= start) & (when <= start + max_prop)]
            several = not same[np.ix_(group, group)].all()  # at least two entities
            if several and (best is None or group.size > best.size):
                best = group
        if best is not None and entity_count(same, best) >= need:
            link[a_idx[row], best] = True
    return link
