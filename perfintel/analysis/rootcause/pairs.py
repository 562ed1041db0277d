"""The ranking's pairwise tests, as matrices over the changed series.

:mod:`perfintel.analysis.rootcause` asks, for every ordered pair of changes
``(i, j)``, whether ``i`` can explain ``j``: began first, hosts it, is allowed
by the graph, learned, within the gain bound, and whether their onset-aligned
z-score paths follow one course. With every candidate changed (a deploy that
moves the fleet) those are hundreds of thousands of pairs, so each test is one
boolean matrix over the changes (row ``i``, column ``j``, positions in the
candidate list) and the path correlation, the only costly one, is computed
only for the pairs that pass the cheap tests, grouped by onset delay
(:func:`path_corrs`). The rules themselves are documented in the ranking's
module docstring. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .words import ROLE_ORDER

_LATENCY = ROLE_ORDER["latency"]
_RESOURCE = ROLE_ORDER["resource"]


def path_corrs(
    z: np.ndarray, onset: np.ndarray, rows_i: np.ndarray, rows_j: np.ndarray
) -> np.ndarray:
    """``|corr|`` of the z-score paths of rows ``rows_i[k]`` and ``rows_j[k]`` aligned on their
    onsets, over the whole window (-1 where they overlap by fewer than three steps or one is
    constant there): a step matches a step and a spike a spike at the right delay, and two
    changes that merely overlap in time do not."""
    out = np.full(rows_i.shape, -1.0)
    w = z.shape[1]
    delay = onset[rows_j] - onset[rows_i]
    for d in np.unique(delay):
        d = int(d)
        if abs(d) >= w - 2:
            continue
        k = np.flatnonzero(delay == d)
        if d >= 0:
            a, b = z[rows_i[k], : w - d], z[rows_j[k], d:]
        else:
            a, b = z[rows_i[k], -d:], z[rows_j[k], : w + d]
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        aa, bb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
        ok = (aa != 0) & (bb != 0)  # a constant path follows no course
        n = a.shape[1] - 1
        cov = np.einsum("ij,ij->i", a[ok], b[ok]) / n
        r = cov / np.sqrt(aa[ok] / n) / np.sqrt(bb[ok] / n)
        out[k[ok]] = np.abs(np.clip(r, -1.0, 1.0))
    return out


@dataclass(frozen=True)
class Pairs:
    """Pairwise tests over the changes (``[i, j]``: of ``i`` toward ``j``)."""

    #: ``i`` began first within the propagation bound (or together, and the structure or, when
    #: it cannot say, the larger size puts ``i`` first)
    first: np.ndarray
    #: one entity, or ``i`` is the machine ``j`` runs on
    hosts: np.ndarray
    #: the declared graph lets a fault in ``i`` reach ``j``
    allowed: np.ndarray
    same_entity: np.ndarray


def _codes(values: list[str]) -> np.ndarray:
    return np.unique(np.array(values, dtype=object), return_inverse=True)[1].reshape(-1)


def pair_tests(
    onset: np.ndarray,
    size: np.ndarray,
    tol: np.ndarray,
    entity: list[str],
    role: np.ndarray,
    machine: list[tuple[str, bool]],
    occupancy: np.ndarray,
    saturated: np.ndarray,
    allowed: np.ndarray,
    graph_orders: np.ndarray,
    max_prop: int,
    little_order: bool = False,
) -> Pairs:
    """The structural tests of every pair: ``onset`` (steps), ``size`` (|peak z|) and ``tol``
    (onset uncertainty) per change; ``entity``, ``role`` (``ROLE_ORDER``, -1 unknown),
    ``machine`` (host, the machine's own), ``occupancy`` and ``saturated`` per change;
    ``allowed`` the graph's direction and ``graph_orders`` where the graph may order a pair
    (both declared, different nodes). ``little_order``: inside one workload, a resource that is
    not an occupancy comes before an occupancy below its cap that began with it."""
    ent = _codes(entity)
    same = ent[:, None] == ent[None, :]
    host = _codes([h for h, _ in machine])
    has_host = np.array([bool(h) for h, _ in machine], dtype=bool)
    own = np.array([o for _, o in machine], dtype=bool)
    same_host = has_host[:, None] & (host[:, None] == host[None, :])
    hosts = same | (same_host & own[:, None] & ~own[None, :])
    ri, rj = role[:, None], role[None, :]
    # when the structure can order two changes that began together, and whether it puts i first:
    # the graph (callee first), then the machine before what runs on it, then the role in one
    # workload (load, resources, latency, errors)
    by_graph = graph_orders & (allowed != allowed.T)
    by_machine = same_host & (own[:, None] != own[None, :])
    by_role = same & (ri >= 0) & (rj >= 0) & (ri != rj)
    # occupancy (pool, connections, threads in use) is arrivals × latency (Little's law): it
    # moves with latency either way unless it hit its cap
    little = occupancy & ~saturated
    moves_with = ((rj == _LATENCY) & little[:, None]) | ((ri == _LATENCY) & little[None, :])
    by_role &= ~moves_with
    # ... and follows the resources that slow the work it holds (CPU, memory: latency follows
    # them, and the occupancy follows latency)
    res = (ri == _RESOURCE) & (rj == _RESOURCE)
    by_little = same & res & (little[:, None] != little[None, :]) & bool(little_order)
    says = by_graph | by_machine | by_role | by_little
    ahead = np.where(
        by_graph,
        allowed,
        np.where(
            by_machine,
            own[:, None],
            np.where(by_role, ri < rj, by_little & ~little[:, None]),
        ),
    )
    d = onset[None, :] - onset[:, None]
    apart = np.abs(d) >= tol[:, None] + tol[None, :]
    idx = np.arange(onset.size)
    larger = (size[:, None] > size[None, :]) | (
        (size[:, None] == size[None, :]) & (idx[:, None] < idx[None, :])
    )
    # began together: the structure orders them; else the larger (a fault attenuates)
    together = np.where(says, ahead, larger)
    first = (np.abs(d) <= max_prop) & np.where(apart, d > 0, together)
    return Pairs(first, hosts, allowed, same)


def entity_count(same: np.ndarray, idx: np.ndarray) -> int:
    """How many entities the changes ``idx`` belong to (``same``: one entity, over pairs)."""
    return int(idx.size - np.triu(same[np.ix_(idx, idx)], k=1).any(axis=0).sum())


def active_until(
    z: np.ndarray, peak: np.ndarray, onset_sigma: float, fraction: float
) -> np.ndarray:
    """The last step (window index) at which each row is still departed toward its ``peak``
    by its onset level (``max(onset_sigma, fraction × |peak|)``, at most ``|peak|``: the level
    at which the ranking dates a change's beginning); -1 never."""
    top = np.abs(peak)
    level = np.minimum(np.maximum(onset_sigma, fraction * top), top)
    on = np.sign(peak)[:, None] * z >= level[:, None]
    last = z.shape[1] - 1 - np.argmax(on[:, ::-1], axis=1)
    return np.where(on.any(axis=1), last, -1)
