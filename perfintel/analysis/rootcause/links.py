"""Links across entities: learned from the baseline, or given to orphan symptoms.

:func:`learned_links` is the dependency learned Granger-style from the
baseline: without a declared graph, :mod:`perfintel.analysis.rootcause` lets
a change in one entity explain one in another only when their step-to-step
changes were correlated there (a learned link). A shared dependency that was
quiet in the baseline (a database whose CPU barely moved) never earns that
link, so the callers' latency, often 2-50 times more sigmas than the
database's own change, outranks it.

An *orphan* is a symptom (latency, errors) that no earlier change of its own
workload or of its machine explains: it must have come from outside. For it,
an earlier change of another entity may explain it without the learned link,
when it began first within the propagation bound, the graph (if any) allows
it and their onset-aligned z-score paths follow one course (at least
``orphan_corr``). Pure: the ranking hands in its own pairwise tests as matrices
(:class:`~perfintel.analysis.rootcause.pairs.Pairs`) and its path correlation as a
function; this module only picks the links.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .pairs import Pairs
from .parameters import RootCauseParams
from .words import ROLE_ORDER, SYMPTOM_ROLES

#: roles of the explaining change allowed per ``roles`` setting (``None``: any)
_ROLES: dict[int, frozenset[int] | None] = {
    0: None,
    # a callee's resources, latency or errors: what a caller waits on or receives
    1: frozenset(ROLE_ORDER[r] for r in ("resource", "latency", "errors")),
    # offered load, resources or latency
    2: frozenset(ROLE_ORDER[r] for r in ("traffic", "resource", "latency")),
}


def learned_links(base: np.ndarray, max_lag: int) -> np.ndarray:
    """``L[a, b]``: the largest correlation of ``a``'s step changes with ``b``'s ``0..max_lag``
    steps later, over the baseline (Granger-style: what ``a`` did shows up in ``b``)."""
    d = np.diff(base, axis=1)
    d = d - d.mean(axis=1, keepdims=True)
    sd = d.std(axis=1, keepdims=True)
    z = np.divide(d, sd, out=np.zeros_like(d), where=sd > 0)
    n = z.shape[1]
    out = np.zeros((z.shape[0], z.shape[0]))
    for k in range(min(max_lag, n - 4) + 1):
        c = z[:, : n - k] @ z[:, k:].T / (n - k)
        np.maximum(out, c, out=out)
    return out


@dataclass(frozen=True)
class OrphanRule:
    """How orphan symptoms are linked (see :class:`~perfintel.analysis.rootcause.RootCauseParams`).

    ``mode`` 1 keeps only the best explainer of each orphan (highest path
    correlation, then earliest), 2 every qualifying one, 3 only the earliest
    (then the highest correlation); ``corr`` is the path
    correlation an orphan link needs; ``gain`` how many times more sigmas
    the orphan may have than its explainer (0: no limit: queueing amplifies);
    ``roles`` which roles may explain (0 any, 1 resource/latency/errors, 2
    traffic/resource/latency); ``quorum`` how many orphans an explainer must
    reach for its links to count (a shared dependency moves several callers);
    ``quorum_first`` counts that quorum over every qualifying explainer of
    every orphan *before* ``mode`` chooses one per orphan, and chooses only
    among the explainers that meet it (otherwise the quorum is counted over
    the chosen links, and an orphan whose chosen explainer fails it is left
    with none, though another qualifying explainer reaches several orphans).
    """

    mode: int
    corr: float
    gain: float
    roles: int
    quorum: int
    quorum_first: bool = False

    @classmethod
    def of(cls, p: RootCauseParams) -> OrphanRule:
        """The rule the constants ``orphan``, ``orphan_corr`` … ``orphan_first`` set."""
        return cls(
            *(int(p.orphan), p.orphan_corr, p.orphan_gain, int(p.orphan_roles)),
            *(int(p.orphan_quorum), p.orphan_first > 0),
        )


def orphan_links(
    role: np.ndarray,
    size: np.ndarray,
    onset: np.ndarray,
    linked: np.ndarray,
    pairs: Pairs,
    path_corr: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rule: OrphanRule,
) -> list[tuple[int, int, float]]:
    """``(i, j, path correlation)``: change ``i`` explains orphan symptom ``j`` (not yet linked).

    Positions in the ranking's list of changes: ``role`` (``ROLE_ORDER``, -1
    unknown), ``size`` (|peak z|) and ``onset`` (step) per change;
    ``linked[i, j]`` whether ``i`` already explains ``j``; ``pairs`` the
    structural tests (``hosts``: ``i`` is ``j``'s own workload or machine;
    ``first``: ``i`` began first within the propagation bound; ``allowed``: the
    graph's direction); ``path_corr(a, b)`` the path correlations of the pairs
    ``(a[k], b[k])``. Ordered by orphan, then explainer.
    """
    if rule.mode <= 0 or role.size == 0:
        return []
    roles = _ROLES.get(rule.roles)
    symptom = np.isin(role, SYMPTOM_ROLES)
    orphan = symptom & ~(linked & pairs.hosts).any(axis=0)
    may = orphan[None, :] & ~pairs.same_entity & ~pairs.hosts & ~linked
    may &= pairs.first & pairs.allowed
    if roles is not None:
        may &= np.isin(role, list(roles))[:, None]
    if rule.gain > 0:
        may &= size[:, None] * rule.gain >= size[None, :]
    jj, ii = np.nonzero(may.T)  # by orphan, then explainer
    c = path_corr(ii, jj)
    ok = c >= rule.corr
    ii, jj, c = ii[ok], jj[ok], c[ok]
    if rule.quorum_first and rule.quorum > 1:
        # a shared dependency is one that reaches several orphans: count that first
        reach_all = np.bincount(ii, minlength=role.size)
        ok = reach_all[ii] >= rule.quorum
        ii, jj, c = ii[ok], jj[ok], c[ok]
    links: list[tuple[int, int, float]] = []
    for j in np.unique(jj):
        k = np.flatnonzero(jj == j)
        found = [(int(ii[m]), int(j), float(c[m])) for m in k]
        if rule.mode == 1:  # the closest course, then the earliest
            found = [max(found, key=lambda f: (f[2], -float(onset[f[0]]), -f[0]))]
        elif rule.mode == 3:  # the earliest (the farthest upstream), then the closest
            found = [max(found, key=lambda f: (-float(onset[f[0]]), f[2], -f[0]))]
        links.extend(found)
    if rule.quorum > 1 and not rule.quorum_first:
        reach: dict[int, int] = {}
        for i, _, _ in links:
            reach[i] = reach.get(i, 0) + 1
        links = [f for f in links if reach[f[0]] >= rule.quorum]
    return links
