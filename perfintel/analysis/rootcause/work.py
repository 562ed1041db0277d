"""Work before waiting: a CPU that rose with other entities' symptoms comes first.

Two changes that began in the same step (within their onsets' uncertainty)
are ordered by the structure when it can say (the declared graph, a machine
before what runs on it, the role inside one workload) and otherwise by size,
the larger first: a fault attenuates as it travels. Across entities without
a graph, a shared dependency's CPU and its callers' latency therefore tie, and
the callers' latency — amplified by queueing, often 2-60 times more sigmas —
comes first and "explains" the CPU.

What a CPU measures says which way it goes. CPU time used per second is
*work done*: requests served times what each costs. Another service's
latency or errors do not make a service do more work: a slower or failing
caller sends no more requests (more load would be a traffic change), and what
rises with a peer's latency is what the waiting *holds* — connections,
threads, descriptors (occupancies, Little's law). The reverse is how a shared
dependency fails: its CPU saturates and every caller waits. So with
``work_first`` on, a workload's CPU that rose and the latency or errors of
other entities that rose in the same step are ordered CPU first — when the
CPU began with the symptoms of at least ``work_first`` other entities (a
shared dependency slows several callers at once). Nothing else changes: the
CPU still explains a symptom only through the ranking's usual tests (the
learned dependency, the gain bound, the orphan rule), and the graph, when it
declares both, still decides. Pure: labels and arrays in, a boolean matrix
out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perfintel.model import LabelSet, metric_name

from .pairs import Pairs, entity_count
from .scope import LEFT_WORDS
from .words import ROLE_ORDER, SYMPTOM_ROLES, is_occupancy, role_of

#: name fragments of a work rate: CPU time used
WORK_WORDS = ("cpu",)
_RESOURCE = ROLE_ORDER["resource"]


def is_work(labels: LabelSet, role: int | None = None) -> bool:
    """Whether the series is CPU in use (a resource by name, not an occupancy, not a gauge of
    what is left such as idle CPU). ``role``: its ``ROLE_ORDER`` when already read."""
    name = metric_name(labels).lower()
    return (
        (role_of(labels) == "resource" if role is None else role == _RESOURCE)
        and any(w in name for w in WORK_WORDS)
        and not any(w in name for w in LEFT_WORDS)
        and not is_occupancy(labels, True)
    )


def work_of(
    labels: Sequence[LabelSet], roles: np.ndarray, machines: Sequence[tuple[str, bool]]
) -> np.ndarray:
    """Per change: a workload's CPU in use (:func:`is_work` by its ``labels`` and ``roles``,
    ``ROLE_ORDER``), not a machine's own series (``machines``:
    :func:`~perfintel.analysis.rootcause.machine.machine_of`, with ``node_*`` names or not)."""
    return np.array(
        [
            is_work(ls, int(rc)) and not own
            for ls, rc, (_, own) in zip(labels, roles.tolist(), machines, strict=True)
        ],
        dtype=bool,
    )


def work_ties(
    onset: np.ndarray,
    tol: np.ndarray,
    peak: np.ndarray,
    role: np.ndarray,
    work: np.ndarray,
    pairs: Pairs,
    declared: np.ndarray,
    quorum: int,
) -> np.ndarray:
    """``tie[a, b]``: CPU ``a`` rose in the same step (within both onsets' uncertainty) as
    symptom ``b`` of another entity rose, neither the other's machine, the graph not deciding
    between them, and ``a`` began with the symptoms of at least ``quorum`` other entities.
    Rows of ``onset`` (window index), ``tol`` (onset uncertainty, steps), ``peak`` (signed peak
    z), ``role`` (``ROLE_ORDER``) and ``work`` (:func:`work_of`) are the changes; ``pairs`` and
    ``declared`` (the graph orders the pair) are over their pairs."""
    k = onset.size
    if k < 2 or quorum < 1:
        return np.zeros((k, k), dtype=bool)
    up = peak > 0
    symptom = np.isin(role, SYMPTOM_ROLES) & up
    together = np.abs(onset[:, None] - onset[None, :]) < tol[:, None] + tol[None, :]
    tie = (work & up)[:, None] & symptom[None, :] & together
    tie &= ~pairs.same_entity & ~pairs.hosts & ~pairs.hosts.T & ~declared
    if quorum > 1:
        for a in np.flatnonzero(tie.any(axis=1)):
            if entity_count(pairs.same_entity, np.flatnonzero(tie[a])) < quorum:
                tie[a] = False
    return tie
