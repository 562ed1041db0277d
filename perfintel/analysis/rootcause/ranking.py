"""Root cause of an incident: which series changed first, most, and explains the others.

Arrays in, ranked :class:`Cause` objects out (no SQL, no HTTP). The input is
every candidate series on one grid (:class:`~perfintel.analysis.signals.SeriesInput`,
counters as counters), the incident's time and optionally a dependency graph.
Four principles decide:

1. **Abnormal against its own baseline.** Each series' normal behaviour is
   learned from the ``baseline`` before the analysis window (the ``window``
   before the incident time): a robust level and trend (medians of the two
   halves; a daily cycle over a few hours is close to a line) and a robust
   spread (1.4826 × MAD of what the line leaves, floored by half the
   step-to-step noise and by 0.1 % of the level, so a flat or quantised series
   does not turn every wiggle into a storm). Every step of the window becomes
   a z-score against the extrapolated line. A series has *changed* when its
   largest |z| in the window is at least ``min_sigma`` and beyond the largest
   |z| its own baseline reached (a series whose noise is heavy-tailed must go
   further than its own history of outliers). A cycle of an hour, a day or a
   week that the baseline holds at least three times and that repeats (the
   profiles of its even and odd cycles correlate at least ``seasonal_gain``)
   is carried into the window in phase, with a line drawn through whole
   cycles, when it leaves a smaller spread.
2. **The earliest robust onset.** Walking back from the largest departure
   while it stays beyond ``onset_sigma / 2``, the change began at the first
   step beyond ``max(onset_sigma, onset_fraction × peak)``: scale-free, so a
   step is dated at the step, and a ramp and an attenuated, noisier copy of it
   are dated at the same point of their rise. A ramp's onset is uncertain by
   a quarter of its rise (1 to 3 steps); a sharp change's by half a step.
   A change already departing when the window opens (``lead``) is measured
   again over a window opened up to ``lead`` window lengths earlier, against
   the baseline before that, and dated where it began.
3. **Propagation order.** Change ``i`` *explains* change ``j`` when ``i``
   began first, at most ``max_propagation`` earlier, their z-score paths
   aligned on the onsets follow one course over the whole window
   (|correlation| at least ``explain_corr``), and — across entities
   (``pod``, ``instance``, ``container``, ``host``, ``service``…) — ``j`` is
   at most ``max_gain`` times larger in sigmas (a fault attenuates as it
   travels; within one entity, or from a machine to what runs on it, a
   resource may move latency and errors by far more sigmas than it moved
   itself). Without a declared graph, a change in one entity explains one in
   another only when their step-to-step changes were correlated in the
   baseline with ``i`` ahead by 0 to ``max_propagation`` steps (at least
   ``learned_corr``: a dependency learned Granger-style, which two unrelated
   changes that merely line up in time do not have). With ``link_fdr`` the
   learned dependency is a significance test instead (:func:`~perfintel.analysis.correlation.significant_links`:
   high-passed, prewhitened, Bartlett + Šidák, Benjamini–Hochberg over the
   pairs); it is off by default because on the tuning generators a root's true
   dependencies are no more visible in the baseline than a background anomaly's
   coincidences (``benchmarks/root_cause_links.py``: AUC 0.49–0.65), so the
   cross-validation found no gain beyond noise.
   Two changes closer than their onsets' uncertainty (half a step —
   ``sharp_tolerance`` — for a sharp change, a quarter of its rise for a
   ramp) began together; a propagation without lag is then ordered by the
   structure: the declared graph (callee before caller), a machine's own
   series (labels ``host``/``node`` only) before the workloads on it, and
   inside one workload offered load → resources → latency → errors, by the
   metric's name and labels (:func:`role_of`) — except that an occupancy (a pool,
   connections, threads in use; with ``little_order``, on, open file
   descriptors and sockets too: arrivals × latency by Little's law) moves
   with latency either way unless it hit its cap, and (``little_order``)
   comes after its workload's other resources (CPU, memory slow the work it
   holds). Only when the structure cannot say does
   the larger change come first (a fault attenuates). A resource growing
   steadily (a ramp: a leak) explains the later roles of its own workload at
   any later time of the window (``accumulation``): exhaustion comes when the
   growth reaches a limit, not one hop's delay after it began.
4. **Graph direction when known.** With a :class:`DependencyGraph` (``a``
   calls ``b``: a fault in ``b`` can reach ``a``, not the reverse), a change
   can only explain changes in its own entity or in entities that depend on
   it, transitively.

   Inside one workload, a role earlier in that order explains a later one's
   change when their paths correlate at least ``inner_corr`` (a timeout or a
   cap between latency and errors bends the course, not the dependency).

Score: ``log(1 + |peak z|)`` plus ``support_weight`` times the log of one plus
the summed ``log(1 + |peak z|)`` of the changes it explains directly that
began by the incident time (with ``credit_margin`` below 1, only those
that follow its course nearly as closely as they follow their best explainer's;
off by default, no gain beyond noise), each weighted 1 when it is a symptom (latency,
errors: what users see and what incidents are declared on) and
``context_weight`` otherwise (load, resources). The log keeps one phenomenon
seen in many series (a dip in traffic in every instance's requests, CPU and
pool) from outweighing a large change that moved the symptoms. A change that
others explain ranks right after the lowest-ranked of them, resolved along
the whole chain (a cause before its effects, wherever the effects' own
magnitude would put them), and a change that began after the incident time (beyond its onset's
uncertainty) and the first symptom after it (``symptom_minutes``) is no cause and ranks last.
Two options read an incident as a cluster of changes; both are off by
default, their out-of-fold gain being within seed noise: ``recency_weight``
penalises a cluster (a change and what it explains) that stopped growing
long before the incident time, and ``resource_paths`` lets a resource of one
service be moved from another only by the load it sends or, for an
occupancy, the latency it waits on.
*Orphan symptoms* (``orphan``, on) get a cross-entity link the baseline
could not learn (a shared callee quiet in the baseline): a latency
or errors change that nothing of its own workload or machine explains is
explained by the earliest change of another entity that began before it and
whose path it follows closely (``orphan_corr``), with no gain limit (queueing
amplifies), when that change explains at least ``orphan_quorum`` orphans
(a shared dependency moves several callers; :mod:`~perfintel.analysis.rootcause.links`).
*Bygone changes* (``bygone``, on): when symptoms changed by the incident time, a change
that came and went before it and moved none of them ranks after every other.
*Relief* (``relief``, on): a change toward relief (less load or use of a resource, faster, fewer
errors) explains nothing and loses score (:mod:`~perfintel.analysis.rootcause.scope`).
*Cycles* (``cycles``, on): changes that explain one another rank as one phenomenon, after what
explains them from outside, earliest first (:mod:`~perfintel.analysis.rootcause.cycles`).
*Exhaustion* (``exhaustion``, on): a change that grew gradually and held explains a later
symptom of its own workload at any delay once it had nearly filled: a leak harms when it
reaches a limit (:mod:`~perfintel.analysis.rootcause.exhaust`).
*Back-dating* (``backdate``, off): a ramp is dated where the line fitted to its rise meets its
baseline, not where it leaves the noise (:mod:`~perfintel.analysis.rootcause.onset`; it dates
roots better but moves effects and backgrounds that are ramps as much: no gain out of fold).
*Filling* (``filling``, on): a stock still filling at the alert that nothing explains ranks
right after the first change, even unlinked to the symptoms
(:mod:`~perfintel.analysis.rootcause.filling`).
*Shared* (``shared``, off: no gain out of fold): a stock that filled explains a group of other
entities' orphan symptoms begun together (:mod:`~perfintel.analysis.rootcause.shared`).
*Rise* (``rise``, on): a series whose baseline's largest |z| is the start of its own change (a
leak that began inside the baseline and never came back) is measured against the baseline
before that rise and dated where it began (:mod:`~perfintel.analysis.rootcause.rise`).
*Work first* (``work_first``, on): a CPU that rose in the same step as other entities' latency or
errors comes before them (:mod:`~perfintel.analysis.rootcause.work`).
*Story* (``story``, on): when the largest symptom began as the window opened or before, the
window opens back half a length to see its root begin (:mod:`~perfintel.analysis.rootcause.story`).
The constants were chosen by cross-validation on the tuning seeds of four
incident generators (``default``, ``variant``, ``variant-lagged``, ``blind``;
``benchmarks/root_cause.py --cv``); figures are reported on other seeds and
on a fifth, held-out generator (``perfintel.bench.incidents_holdout``) never
used for a choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from perfintel.errors import BadInputError
from perfintel.model import LabelSet

from ..correlation import significant_links
from ..signals import Grid, SeriesInput, as_matrix
from .changes import Changes as _Changes
from .cycles import after_explainers as _after_explainers
from .cycles import after_explainers_by_cycle
from .durations import in_time, ramp_clip, spike_return
from .exhaust import exhaustion_links
from .filling import filling_suspects, machine_wide, second_place
from .links import OrphanRule, learned_links, orphan_links
from .machine import entity_by, machine_of, sums_followed
from .onset import backdated
from .outlive import outlived
from .pairs import active_until, pair_tests, path_corrs
from .parameters import RootCauseParams
from .rise import before_window
from .scope import moves_symptoms as _moves_symptoms
from .scope import relieved
from .shapes import shape as _shape
from .shared import shared_links
from .unseen import counted_over_gaps, gap_dated
from .window import (
    born_filled,
    from_data_start,
    has_history,
    late,
    measured,
    slacks,
    window_of,
)
from .words import (
    ROLE_ORDER,
    SYMPTOM_ROLES,
    explain,
    is_occupancy,
    is_throttling,
    role_codes,
)
from .words import entity_of as entity_of  # the tests' and reports' names
from .words import host_of as host_of
from .words import role_of as role_of
from .work import work_of, work_ties

#: subtracted from the score of a change that began too late to be the cause (ranks it last)
_LATE = 1000.0
#: subtracted from the score of a bygone change (ranks it after every present or relevant one)
_BYGONE = 100.0


@dataclass(frozen=True)
class DependencyGraph:
    """Who depends on whom, by the value of one label (default ``service``).

    ``calls[a]`` holds the entities ``a`` calls (depends on): a fault in a
    callee can propagate to its callers. Entities not mentioned are unknown:
    no constraint applies to them.
    """

    calls: Mapping[str, frozenset[str]]
    label: str = "service"

    @classmethod
    def from_edges(
        cls, edges: Sequence[tuple[str, str]], label: str = "service"
    ) -> DependencyGraph:
        """From ``(caller, callee)`` pairs."""
        out: dict[str, set[str]] = {}
        for caller, callee in edges:
            out.setdefault(caller, set()).add(callee)
        return cls({k: frozenset(v) for k, v in out.items()}, label)

    def known(self, entity: str) -> bool:
        return entity in self.calls or any(entity in v for v in self.calls.values())

    def reachable_from(self, entity: str) -> set[str]:
        """Entities a fault in ``entity`` can reach: itself and its callers, transitively."""
        callers: dict[str, set[str]] = {}
        for a, bs in self.calls.items():
            for b in bs:
                callers.setdefault(b, set()).add(a)
        seen = {entity}
        todo = [entity]
        while todo:
            for a in callers.get(todo.pop(), ()):
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen


@dataclass(frozen=True)
class Follower:
    """A change explained by a cause: its series index and how much later it began."""

    index: int
    lag_ms: int


@dataclass(frozen=True)
class Cause:
    """One ranked candidate.

    ``sigma`` is the signed peak departure in robust standard deviations;
    ``shape`` is ``shift``, ``spike``, ``ramp`` or ``saturation``;
    ``followers`` are the changes it explains (earliest first) and
    ``explained_by`` the strongest earlier change that explains it, if any.
    The evidence a timeline draws, one value per step from
    ``window_start_ms``: ``values`` (as analysed: counters as their increase
    per step), ``expected`` (the baseline's line) and ``z``.
    """

    index: int
    labels: LabelSet
    score: float
    onset_ms: int
    peak_ms: int
    sigma: float
    shape: str
    followers: tuple[Follower, ...]
    explained_by: int | None
    explanation: str
    window_start_ms: int
    values: np.ndarray = field(repr=False)
    expected: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)
    #: the series was constant through the baseline: ``sigma`` is a move over no spread
    #: (astronomical, only an order), and the explanation says the value it held instead
    constant_before: bool = False


# -- per series -----------------------------------------------------------------------------


def _shape_of(
    ch: _Changes, i: int, values: np.ndarray, step_ms: int = 60_000, back: int = 2
) -> str:
    """:func:`_shape` of change ``i`` from its onset, before the window too when it began there."""
    if i in ch.early:
        z, v = ch.early[i]
        return _shape(z, int(ch.onset[i]) + z.size - ch.z.shape[1], v, step_ms, back)
    return _shape(ch.z[i], int(ch.onset[i]), values[i], step_ms, back)


def _tolerance(
    ch: _Changes, i: int, shape: str, sharp: float, clip: tuple[float, float] = (1.0, 3.0)
) -> float:
    """How uncertain the onset of ``i`` is, in steps: a ramp's start is blurred by its noise."""
    if shape != "ramp":
        return sharp
    return float(np.clip((float(ch.peak_at[i]) - float(ch.onset[i])) / 4.0, *clip))


def _corrs_of(ch: _Changes, rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Path correlations of the changes at candidate positions ``a`` and ``b`` (see
    :func:`~perfintel.analysis.rootcause.pairs.path_corrs`)."""
    return path_corrs(ch.z, ch.onset, rows[a], rows[b])


def _graph_tests(
    graph: DependencyGraph | None, labels: Sequence[LabelSet]
) -> tuple[np.ndarray, np.ndarray]:
    """``allowed[i, j]``: the graph lets a fault in ``i`` reach ``j`` (its own entity, an unknown
    one, or one that depends on it transitively); ``declared[i, j]``: both are different
    entities the graph knows, so it decides."""
    k = len(labels)
    if graph is None:
        return np.ones((k, k), dtype=bool), np.zeros((k, k), dtype=bool)
    nodes = [dict(ls).get(graph.label, "") for ls in labels]
    names = sorted(set(nodes))
    known = np.array([graph.known(n) for n in names], dtype=bool)
    both = known[:, None] & known[None, :] & ~np.eye(len(names), dtype=bool)
    sets = [graph.reachable_from(a) for a in names]
    reach = np.array([[b in r for b in names] for r in sets], dtype=bool).reshape(len(names), -1)
    at = {n: c for c, n in enumerate(names)}
    code = np.array([at[n] for n in nodes], dtype=np.int64)
    sel = np.ix_(code, code)
    return (~both | reach)[sel], both[sel]


# -- ranking --------------------------------------------------------------------------------


@dataclass
class _Ranking:
    cands: list[int]
    shapes: dict[int, str]
    explains: dict[int, list[int]]
    explained: dict[int, list[int]]
    strength: dict[int, float]
    scores: dict[int, float]


def _rank(
    ch: _Changes,
    base: np.ndarray,
    values: np.ndarray,
    series: Sequence[SeriesInput],
    roles: np.ndarray,
    graph: DependencyGraph | None,
    max_prop: int,
    slack: int,
    p: RootCauseParams,
    step_ms: int = 60_000,
    sym_slack: int = -1,
    start: int = -1,
) -> _Ranking:
    cands = [int(i) for i in np.flatnonzero(ch.changed)]
    sym_slack = slack if sym_slack < 0 else sym_slack  # latest onset of a symptom cause
    back = spike_return(p, step_ms)
    shapes = {i: _shape_of(ch, i, values, step_ms, back) for i in cands}
    seen_at = ch.onset.copy()  # the threshold's dates, before back-dating
    if p.backdate > 0:  # a ramp began where the line of its rise meets its baseline
        for i in cands:
            if shapes[i] == "ramp" and i not in ch.early:
                ch.onset[i] = backdated(ch.z[i], int(ch.onset[i]), int(ch.peak_at[i]), p.backdate)
    clip = ramp_clip(p, step_ms)
    tol = {i: _tolerance(ch, i, shapes[i], p.sharp_tolerance, clip) for i in cands}
    if p.gap_onsets > 0 and start >= 0:  # a change first seen after missed scrapes
        for i in cands:
            dated = (
                None
                if i in ch.early
                else gap_dated(p.gap_onsets, series[i], start, int(seen_at[i]), tol[i])
            )
            if dated is not None:  # inside the window, as every onset
                ch.onset[i], tol[i] = min(max(dated[0], 0), values.shape[1] - 1), dated[1]
    strength = {i: float(np.log1p(abs(ch.peak[i]))) for i in cands}
    names = p.machine_names > 0  # a node exporter's node_* series are the machine's own
    labels = [series[i].labels for i in cands]
    ent = {i: entity_by(ls, names) for i, ls in zip(cands, labels, strict=True)}
    rows = np.array(cands, dtype=np.int64)
    k = rows.size
    r = roles[rows]  # ROLE_ORDER, read once per call (role_codes)
    role = dict(zip(cands, r.tolist(), strict=True))
    onset = ch.onset[rows]
    size = np.abs(ch.peak[rows])
    tols = np.array([tol[i] for i in cands], dtype=np.float64)
    held = p.little_order >= 1
    # a throttled CPU is read as an occupancy: it follows the usage that met its quota
    occupancy = np.array([is_occupancy(ls, held) or is_throttling(ls) for ls in labels], dtype=bool)
    allowed, declared = _graph_tests(graph, labels)
    machines = [machine_of(ls, names) for ls in labels]
    pt = pair_tests(
        onset,
        size,
        tols,
        [ent[i] for i in cands],
        r,
        machines,
        occupancy,
        np.array([shapes[i] == "saturation" for i in cands], dtype=bool),
        allowed,
        declared,
        max_prop,
        p.little_order >= 2,
    )
    if names and p.machine_sums:  # a machine's sum follows its workloads' parts
        dev = values[rows] - ch.expected[rows]
        pt = sums_followed(pt, onset, tols, labels, machines, dev, ch.peak_at[rows], p.machine_sums)
    hosts = pt.hosts
    ri, rj = r[:, None], r[None, :]
    if p.link_fdr > 0 and k:
        learned = significant_links(base[cands], max_prop, p.link_fdr).astype(bool)
    elif p.learned_corr > 0 and k:
        learned = learned_links(base[cands], max_prop) >= p.learned_corr
    else:
        learned = np.ones((k, k), dtype=bool)
    # learned across entities without a declared graph (declared: the graph decides)
    learned = learned | hosts | declared
    gain = hosts | (size[:, None] * p.max_gain >= size[None, :])
    if p.work_first:  # a CPU that rose with other entities' symptoms did not follow them
        wt = work_of(labels, r, machines)
        wt = work_ties(onset, tols, ch.peak[rows], r, wt, pt, declared, int(p.work_first))
        pt = replace(pt, first=(pt.first | wt) & ~wt.T)
    other = ~np.eye(k, dtype=bool)
    test = other & pt.first & gain & allowed & learned
    if p.resource_paths:  # another entity's resource moves only by its load or latency waited on
        waits = (ri == ROLE_ORDER["latency"]) & occupancy[None, :]
        test &= (
            hosts
            | (rj != ROLE_ORDER["resource"])
            | (ri < 0)
            | (ri == ROLE_ORDER["traffic"])
            | waits
        )
    # a resource growing steadily (a leak) explains its workload's later roles at any time
    ramp = np.array([shapes[i] == "ramp" for i in cands], dtype=bool)
    acc = other & ramp[:, None] & (ri >= 0) & (ri < rj) & hosts
    acc &= (onset[None, :] - tols[None, :]) > (onset[:, None] + tols[:, None])
    acc &= bool(p.accumulation)
    test &= ~acc
    follows_m = np.where(acc, 1.0, 0.0)
    ti, tj = np.nonzero(test)
    c = path_corrs(ch.z, ch.onset, rows[ti], rows[tj])
    inner = pt.same_entity & (ri >= 0) & (ri < rj)
    need = np.where(inner, min(p.inner_corr, p.explain_corr), p.explain_corr)[ti, tj]
    keep = c >= need
    link = acc.copy()
    link[ti[keep], tj[keep]] = True
    follows_m[ti[keep], tj[keep]] = c[keep]
    out = outlived(
        ch.z[rows], ch.peak[rows], p.onset_sigma, p.outlive, slack - p.onset_slack, max_prop
    )
    link &= acc | ~out  # an effect lasts no longer than its cause, but through a stock
    explains: dict[int, list[int]] = {i: [] for i in cands}
    explained: dict[int, list[int]] = {i: [] for i in cands}
    follows: dict[tuple[int, int], float] = {}
    la, lb = np.nonzero(link)
    for a, b, f in zip(la.tolist(), lb.tolist(), follows_m[la, lb].tolist(), strict=True):
        explains[cands[a]].append(cands[b])
        follows[cands[a], cands[b]] = f
    for b, a in zip(*(v.tolist() for v in np.nonzero(link.T)), strict=True):
        explained[cands[b]].append(cands[a])
    rule = OrphanRule.of(p)
    path = partial(_corrs_of, ch, rows)
    have = link.copy()
    for a, b, cc in orphan_links(r, size, onset, link, pt, path, rule):
        if out[a, b]:
            continue
        have[a, b] = True
        i, j = cands[a], cands[b]
        explains[i].append(j)
        explained[j].append(i)
        follows[i, j] = cc
    paths, starts, pk, sig = ch.z[rows], onset, ch.peak[rows], p.onset_sigma
    if p.rise > 0:  # changes dated before the window: their paths there too
        paths, starts = before_window(paths, onset, [ch.early.get(i, (None,))[0] for i in cands])
    ex = np.zeros((k, k), dtype=bool)
    if p.exhaustion > 0:  # a resource that filled slowly explains what failed when it was full
        ex = exhaustion_links(
            paths, pk, starts, tols, r, hosts, allowed, max_prop, sig, p.exhaustion
        )
    if p.shared > 0:  # a shared stock that filled explains its callers failing together
        gauge = np.array([not series[i].counter for i in cands], dtype=bool)
        ex |= shared_links(
            *(paths, pk, starts, tols, r, gauge, have | ex, pt, max_prop, sig, p.shared),
            p.shared_size * p.min_sigma,
            p.shared_cover,
        )
    for a, b in zip(*(v.tolist() for v in np.nonzero(ex & ~have)), strict=True):
        i, j = cands[a], cands[b]
        explains[i].append(j)
        explained[j].append(i)
        follows[i, j] = 1.0
    eased = (
        {i for i, ls in zip(cands, labels, strict=True) if relieved(ls, float(ch.peak[i]), role[i])}
        if p.relief
        else set()
    )
    if eased:  # relief made nothing worse: it explains nothing
        explains = {i: [] if i in eased else v for i, v in explains.items()}
        explained = {j: [i for i in v if i not in eased] for j, v in explained.items()}
    closest = {j: max((follows[i, j] for i in by), default=0.0) for j, by in explained.items()}
    symptom = set(SYMPTOM_ROLES)
    # only what changed by the incident time is part of the incident it explains
    current = {j: bool(ch.onset[j] - tol[j] + 0.5 <= slack) for j in cands}
    credited = {
        i: [j for j in explains[i] if current[j] and follows[i, j] >= closest[j] - p.credit_margin]
        for i in cands
    }
    gone: set[int] = set()  # bygone changes that moved no symptom (only when symptoms moved)
    if p.bygone > 0:
        moves = _moves_symptoms([j for j in cands if role[j] in symptom and current[j]], explained)
        until = active_until(ch.z[rows], ch.peak[rows], p.onset_sigma, p.bygone).tolist()
        gone = {
            i
            for i, u in zip(cands, until, strict=True)
            if moves and i not in moves and (u < slack - p.onset_slack or p.mute > 0)
        }
    began = [ch.onset[j] + tol[j] for j in cands if role[j] in symptom and current[j]]
    if p.after_symptoms > 0 and began:  # what began after every symptom caused none of them
        gone |= {i for i in cands if role[i] not in symptom and ch.onset[i] - tol[i] > max(began)}
    too_late = dict(zip(cands, late(onset, tols, r, slack, sym_slack).tolist(), strict=True))
    scores = {}
    for i in cands:
        support = _support(
            [strength[j] * (1.0 if role[j] in symptom else p.context_weight) for j in credited[i]]
        )
        s = strength[i] + p.support_weight * support
        if p.recency_weight:
            front = max([int(ch.onset[j]) for j in credited[i]] + [int(ch.onset[i])])
            if shapes[i] == "ramp":  # still growing at the incident time
                front = slack
            s -= p.recency_weight * max(0.0, (slack - front) / max_prop - 1.0)
        if i in gone:
            s -= _BYGONE
        if i in eased:
            s -= p.relief
        if too_late[i]:  # the late-onset rule (window.late)
            s -= _LATE
        scores[i] = s
    if p.cycles:
        last = len(ROLE_ORDER)
        key = {i: (int(ch.onset[i]), role[i] if role[i] >= 0 else last) for i in cands}
        ranked = after_explainers_by_cycle(scores, explained, key.__getitem__, int(p.cycles))
    else:
        ranked = _after_explainers(scores, explained)
    if p.filling > 0:  # a resource still filling at the alert is a suspect, even unlinked
        fill = filling_suspects(
            ch.z[rows],
            ch.peak[rows],
            onset,
            tols,
            r,
            np.array([not explained[i] and i not in eased for i in cands], dtype=bool),
            np.array([not series[i].counter for i in cands], dtype=bool),
            slack - p.onset_slack,
            max_prop,
            p.onset_sigma,
            p.filling,
        )
        tie = {i: int(ch.onset[i]) for i in cands}
        # a workload's own stock before a machine's (which sums it), then the fullest
        prefer = {
            cands[a]: (
                float(not machine_wide(labels[a])),
                float(fill[a]),
            )
            for a in np.flatnonzero(fill)
        }
        ranked = second_place(ranked, prefer, tie)
    return _Ranking(cands, shapes, explains, explained, strength, ranked)


def _support(weights: Sequence[float]) -> float:
    """Evidence from the changes a change explains: the log of their summed strengths.

    Concave on purpose: one phenomenon is often seen in many series (every
    instance's requests, CPU and pool under one surge of traffic), and a
    linear sum let such a cluster of small, correlated changes outrank a
    large change that explains the few symptoms an incident is about.
    """
    return float(np.log1p(sum(weights)))


def rank_root_causes(
    target_time_ms: int,
    series: Sequence[SeriesInput],
    grid: Grid,
    graph: DependencyGraph | None = None,
    *,
    window_ms: int = 30 * 60_000,
    baseline_ms: int = 3 * 3_600_000,
    max_propagation_ms: int = 5 * 60_000,
    limit: int | None = None,
    params: RootCauseParams | None = None,
) -> list[Cause]:
    """The changed series ranked by how likely each is the incident's root cause.

    ``series`` hold one value per step of ``grid``. Changes are sought in the
    window from ``target_time_ms - window_ms`` (opened back with ``story``) and a third of a
    window after the incident time, or up to ``symptom_minutes`` when longer, where the data
    reach that far, to see how they develop; the baseline is the ``baseline_ms`` before the
    window (:mod:`~perfintel.analysis.rootcause.window`, which also says how late a change
    may begin and still be a cause).
    ``max_propagation_ms`` bounds how much later a change may begin than a
    change that explains it (one hop). Returns at most ``limit`` causes (all
    changed series when ``None``); series that did not change are not
    returned, nor series first sampled past half the baseline
    (:func:`~perfintel.analysis.rootcause.window.has_history`); where no series was sampled
    before some step, the data begin there and the baseline is what was recorded before the
    window (:func:`~perfintel.analysis.rootcause.window.from_data_start`). Raises ``BadInputError``
    when the grid holds fewer than four steps of baseline.

    >>> import numpy as np
    >>> from perfintel.analysis.signals import Grid, SeriesInput
    >>> from perfintel.model import label_set
    >>> rng = np.random.default_rng(0)
    >>> pool = 10 + rng.normal(0, 0.5, 240); pool[200:] = 40
    >>> latency = 0.1 + rng.normal(0, 0.002, 240); latency[202:] += 0.05
    >>> series = [SeriesInput(label_set({"__name__": n, "instance": "db-1"}), v)
    ...           for n, v in (("db_connections", pool), ("latency_seconds", latency))]
    >>> top = rank_root_causes(220 * 60_000, series, Grid(0, 60_000, 240))[0]
    >>> top.explanation
    'latency_seconds on db-1 rose 2 min after db_connections on db-1 saturated (onset 03:20:00, 60.6σ)'
    """
    p = in_time(params or RootCauseParams(), grid.step_ms)
    if window_ms <= 0 or baseline_ms <= 0 or max_propagation_ms < 0:
        raise BadInputError("window, baseline and max_propagation must be positive")
    # the baseline is what was recorded: the data may begin after the grid does
    series, grid, first = from_data_start(series, grid, target_time_ms - window_ms, baseline_ms)
    x, usable = as_matrix(series)
    if p.counter_gaps > 0:  # a counter's increase over missed scrapes is known: kept
        x = counted_over_gaps(x, usable, series)
    if x.shape[1] != grid.size:
        raise BadInputError("every series must have one value per step of the grid")
    step = grid.step_ms
    w = window_of(grid, target_time_ms, window_ms, baseline_ms, p)
    # ``first`` (each series' first sample, found once) says what has a baseline to measure
    # a change against, and what was born inside it
    usable &= has_history(first, w)
    x = born_filled(x, series, w, first)  # one born inside it: measured on what was seen of it
    periods = [c // step for c in (3_600_000, 86_400_000, 7 * 86_400_000) if c % step == 0]
    max_prop = max(1, max_propagation_ms // step)
    roles = role_codes(s.labels for s in series)  # once: every rule reads these
    w, ch = measured(x, usable, w, baseline_ms // step, p, periods, max_prop, roles)
    ws, we, b0 = w.start, w.end, w.base
    p, slack, sym_slack = slacks(p, step, w, ch, roles)
    values = x[:, ws:we]
    r = _rank(
        ch, x[:, b0:ws], values, series, roles, graph, max_prop, slack, p, step, sym_slack, ws
    )
    order = sorted(r.scores, key=lambda i: (-r.scores[i], ch.onset[i], i))
    if limit is not None:
        order = order[:limit]
    out = []
    on, size = ch.onset.tolist(), np.abs(ch.peak).tolist()
    base = x[:, b0:ws]
    seen = np.isfinite(base).any(axis=1)
    low = np.min(np.where(np.isfinite(base), base, np.inf), axis=1)
    constant = seen & (low == np.max(np.where(np.isfinite(base), base, -np.inf), axis=1))
    counters = frozenset(s.labels for s in series if s.counter)  # each told by its rate
    for i in order:
        fol = tuple(
            Follower(j, (on[j] - on[i]) * step)
            for j in sorted(r.explains[i], key=lambda j: (on[j], -size[j]))
        )
        by = max(r.explained[i], key=lambda j: r.strength[j]) if r.explained[i] else None
        text = explain(
            series[i].labels,
            r.shapes[i],
            float(ch.peak[i]),
            grid.time(ws + int(ch.onset[i])),
            [
                (series[f.index].labels, r.shapes[f.index], float(ch.peak[f.index]), f.lag_ms)
                for f in fol
            ],
            series[by].labels if by is not None else None,
            float(low[i]) if constant[i] else None,
            counters,
        )
        out.append(
            Cause(
                i,
                series[i].labels,
                float(r.scores[i]),
                grid.time(ws + int(ch.onset[i])),
                grid.time(ws + int(ch.peak_at[i])),
                float(ch.peak[i]),
                r.shapes[i],
                fol,
                by,
                text,
                grid.time(ws),
                values[i],
                ch.expected[i],
                ch.z[i],
                bool(constant[i]),
            )
        )
    return out
