"""Root-cause accuracy on generated incidents, side by side with baselines from their papers.

Four independent incident generators: ``perfintel.bench.incidents`` with its
``default`` profile and a ``variant`` (other graph shapes, lags with zeros,
heavier and heavy-tailed noise, more background anomalies; ``variant-lagged``
is the variant with every lag at least one step),
``perfintel.bench.incidents_holdout`` (``holdout``: separate code — cluster
labels service/host/container, 30-second steps, other graph shapes, noise,
seasonality, fault shapes and lag law) and ``perfintel.bench.incidents_blind``
(``blind``: a simulated Kubernetes shop written from the issue text by someone
who had not read the ranking); a fifth, ``perfintel.bench.incidents_fresh`` (``fresh``: a
Kubernetes shop as Prometheus scrapes it — histograms and summaries, exporters' names, 15 s
steps, Kafka, caches, a cron job, shared nodes; written blind to the ranking and to the other
generators), is report-only and not in the default ``--generators``. The constants are
chosen by 5-fold cross-validation on seeds 0-199 of ``default``, ``variant``,
``variant-lagged`` and ``blind`` (``--cv`` prints the out-of-fold figures; ``blind`` joined after
its first, blind, run); ``holdout`` is never used for a choice.

Methods: perfintel without the graph, perfintel with the declared service
graph, the largest z-score, ε-Diagnosis (Shan et al., WWW 2019) and BARO
(Pham et al., FSE 2024); see ``perfintel.bench.rca_baselines``. Every method
gets the same window (the 30 minutes before the alert time) and baseline (the
3 hours before the window). Prints top-1 / top-3 accuracy per fault kind.

    .venv/bin/python benchmarks/root_cause.py            # report seeds 1000-1239, every generator
    .venv/bin/python benchmarks/root_cause.py --cv       # out-of-fold figures, the constants
    .venv/bin/python benchmarks/root_cause.py --latency  # 500 candidate series, median of 20 runs
    .venv/bin/python benchmarks/root_cause.py --latency --all-change  # worst case: all 500 changed

``--rename otel`` or ``--rename micrometer`` names every generated series as that convention
does (``perfintel.bench.renamed``: same values, timing and ground truth), to measure that the
accuracy does not depend on the generators' own names. ``--ask`` asks at another time
(``end``, ``onset``, ``+Nm``; ``--after MIN`` gives the in-house generators that much more
data after the alert) and ``--coarsen K`` samples K times less often
(``perfintel.bench.asked``), to measure how much the accuracy depends on being asked at the
alert on the generator's own step:

    .venv/bin/python benchmarks/root_cause.py --first-seed 0 --seeds 200 \\
        --generators default,variant,variant-lagged,blind --ask +10m --after 10

``--perturb NAME[:RATE]`` gives every incident a data fault of real scrapes first (``gaps``:
missed scrapes; ``resets``: counter restarts; ``late``: series born inside the baseline;
``noise``: more background series; ``recent``: collection began part-way into the baseline;
:func:`perfintel.bench.asked.perturbed`, same truth):

    .venv/bin/python benchmarks/root_cause.py --first-seed 0 --seeds 200 --methods perfintel \\
        --generators default,variant,variant-lagged --perturb gaps

With ``--cv``, ``--perturb`` may name several (``none,gaps``: ``none`` the plain incidents),
pooled as the asks are. With ``--cv``, ``--ask`` may name several times
(``--ask at-alert,onset``): the constants are chosen on the incidents of every ask pooled
(one seed's asks in one fold) and the out-of-fold figures printed per ask, per generator and
pooled:

    .venv/bin/python benchmarks/root_cause.py --cv --only symptom_minutes --ask at-alert,onset
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from typing import Any

import numpy as np

from perfintel.analysis.rootcause import DependencyGraph, RootCauseParams, rank_root_causes
from perfintel.analysis.rootcause.changes import Changes
from perfintel.analysis.rootcause.durations import symptom_reach
from perfintel.analysis.rootcause.measure import measure_changes
from perfintel.analysis.signals import Grid, SeriesInput, as_matrix
from perfintel.bench import rca_baselines as baselines
from perfintel.bench.asked import later_profile, transform
from perfintel.bench.incidents import (
    DEFAULT_PROFILE,
    FAULT_KINDS,
    PROFILES,
    VARIANT_LAGGED_PROFILE,
    VARIANT_PROFILE,
    Incident,
    generate_incident,
)
from perfintel.bench.incidents_blind import generate_blind_incident
from perfintel.bench.incidents_fresh import generate_fresh_incident
from perfintel.bench.incidents_holdout import generate_holdout_incident
from perfintel.bench.renamed import CONVENTIONS, renaming
from perfintel.model import metric_name

#: seeds from here on are reported, never looked at to choose anything (tuning: 0-199)
REPORT_SEEDS = 1000
WINDOW = 30
BASELINE = 180
MINUTE = 60_000
METHODS = ("perfintel", "perfintel+graph", "largest z-score", "ε-Diagnosis", "BARO")
#: every generator by name; ``holdout`` is never used to choose anything
GENERATORS: dict[str, Callable[[int], Incident]] = {
    **{name: partial(generate_incident, profile=p) for name, p in PROFILES.items()},
    "holdout": generate_holdout_incident,
    # written blind to the ranking; a tuning generator (seeds 0-199) since its first run
    "blind": generate_blind_incident,
    # written blind to the ranking and to the other generators (a Kubernetes shop as scraped:
    # histograms, exporters' names, 15 s steps); report-only until a later session decides
    # otherwise, so never in TUNING
    "fresh": generate_fresh_incident,
}
#: the generators the constants are chosen on (cross-validated over their seeds)
TUNING = (DEFAULT_PROFILE.name, VARIANT_PROFILE.name, VARIANT_LAGGED_PROFILE.name, "blind")
#: the latency benchmark's incident: 28 services of 3 instances (more than 500 series)
LATENCY_PROFILE = replace(DEFAULT_PROFILE, name="latency", services=(28, 28), instances=(3, 3))


def generated(
    name: str,
    seeds: range,
    rename: str = "",
    ask: str = "at-alert",
    coarsen: int = 1,
    after: int = 0,
    perturb: str = "",
) -> tuple[list[Incident], int]:
    """The incidents of generator ``name`` on ``seeds``, named as ``rename`` says, sampled
    ``coarsen`` times less often and asked as ``ask`` says (:mod:`perfintel.bench.asked`),
    the in-house profiles with ``after`` more minutes of data after the alert; and how many
    of ``seeds`` could not be asked so (their data end before the time asked). ``perturb``
    (``NAME[:rate]``) gives them a data fault of real scrapes first (gaps, counter resets,
    late-born series, more background series: :func:`perfintel.bench.asked.perturbed`)."""
    make = GENERATORS[name]
    if after and name in PROFILES:
        make = partial(generate_incident, profile=later_profile(PROFILES[name], after))
    name_as, ask_as = renaming(rename), transform(ask, coarsen, perturb)
    out = [ask_as(name_as(make(s))) for s in seeds]
    kept = [inc for inc in out if inc is not None]
    return kept, len(out) - len(kept)


def graph_of(inc: Incident) -> DependencyGraph:
    # the service label as the incident's convention names it (``--rename otel``: service_name)
    named = {k for s in inc.series for k, _ in s.labels}
    label = "service" if "service" in named or "service_name" not in named else "service_name"
    return DependencyGraph.from_edges(
        [(inc.services[a], inc.services[b]) for a, cs in enumerate(inc.callees) for b in cs],
        label=label,
    )


def grid_of(inc: Incident) -> Grid:
    return Grid(inc.start_ms, inc.step_ms, len(inc.series[0].values))


def changes_near(inc: Incident, p: RootCauseParams) -> tuple[np.ndarray, int, int, Changes]:
    """What the ranking sees of ``inc`` (for the diagnostic benchmarks): the value matrix,
    the window's first and last-plus-one steps and the changes found in it, with the same
    window, baseline and seasonal periods as ``ours``."""
    grid = grid_of(inc)
    x, usable = as_matrix(inc.series)
    t = min(grid.index(inc.time_ms), grid.size - 1)
    # in steps, as rank_root_causes counts them (blind incidents have steps under a minute)
    ws = t - WINDOW * MINUTE // inc.step_ms
    b0 = max(0, ws - BASELINE * MINUTE // inc.step_ms)
    reach = max(p.onset_slack, symptom_reach(p, inc.step_ms))  # as rank_root_causes reads
    we = min(grid.size, t + 1 + max(reach, (t - ws) // 3))
    days = (3_600_000, 86_400_000, 7 * 86_400_000)
    periods = [c // inc.step_ms for c in days if c % inc.step_ms == 0]
    lead = int(p.lead * (t - ws))
    return x, ws, we, measure_changes(x, usable, ws, we, b0, p, periods, lead)


def ours(inc: Incident, graph: bool, params: RootCauseParams | None = None) -> list[int]:
    causes = rank_root_causes(
        inc.time_ms,
        inc.series,
        grid_of(inc),
        graph_of(inc) if graph else None,
        window_ms=WINDOW * MINUTE,
        baseline_ms=BASELINE * MINUTE,
        params=params,
    )
    return [c.index for c in causes]


def run_method(name: str, inc: Incident, params: RootCauseParams | None = None) -> list[int]:
    if name == "perfintel":
        return ours(inc, False, params)
    if name == "perfintel+graph":
        return ours(inc, True, params)
    x, _ = as_matrix(inc.series)
    t_idx = grid_of(inc).index(inc.time_ms)
    # the same 30 and 180 minutes as perfintel's, in the incident's steps
    window, baseline = WINDOW * MINUTE // inc.step_ms, BASELINE * MINUTE // inc.step_ms
    if name == "largest z-score":
        return baselines.largest_zscore(x, t_idx, window, baseline)
    if name == "ε-Diagnosis":
        return baselines.epsilon_diagnosis(x, t_idx, window, baseline, seed=inc.seed)
    sli = np.array(
        [
            any(k in metric_name(s.labels) for k in ("latency", "duration", "error"))
            for s in inc.series
        ]
    )
    return baselines.baro(x, t_idx, window, baseline, sli)


def evaluate(
    incidents: list[Incident], methods: tuple[str, ...], params: RootCauseParams | None = None
) -> tuple[dict[str, dict[str, list[int]]], dict[str, list[float]]]:
    ranks: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in methods}
    times: dict[str, list[float]] = defaultdict(list)
    for inc in incidents:
        for m in methods:
            t0 = time.perf_counter()
            order = run_method(m, inc, params)
            times[m].append(time.perf_counter() - t0)
            pos = order.index(inc.root) if inc.root in order else len(inc.series)
            ranks[m][inc.kind].append(pos)
            ranks[m]["all"].append(pos)
    return ranks, times


def table(
    name: str,
    seeds: range,
    ranks: dict[str, dict[str, list[int]]],
    times: dict[str, list[float]],
) -> str:
    kinds = [*FAULT_KINDS, "all"]
    counts = {k: len(next(iter(ranks.values()))[k]) for k in kinds}
    head = "| method | " + " | ".join(f"{k} (n={counts[k]})" for k in kinds) + " | ms/incident |"
    lines = [
        f"generator {name!r}, seeds {seeds.start}-{seeds.stop - 1} (top-1 / top-3, %)",
        "",
        head,
        "|" + "---|" * (len(kinds) + 2),
    ]
    for m, per in ranks.items():
        cells = []
        for k in kinds:
            p = np.array(per[k])
            cells.append(f"{100 * np.mean(p == 0):.1f} / {100 * np.mean(p < 3):.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {1000 * np.median(times[m]):.1f} |")
    return "\n".join(lines)


#: the candidates of each constant the cross-validation chooses from
GRID: dict[str, tuple[float, ...]] = {
    "learned_corr": (0.0, 0.1, 0.2),
    "link_fdr": (0.0, 0.05, 0.2, 0.5),
    "credit_margin": (1.0, 0.1, 0.05, 0.0),
    "sharp_tolerance": (0.5, 1.0),
    "seasonal_gain": (0.0, 0.7, 0.85),
    "min_sigma": (5.0, 6.0),
    "explain_corr": (0.6, 0.7),
    "inner_corr": (0.3, 0.7),
    "max_gain": (2.0, 3.0),
    "support_weight": (0.5, 0.8, 1.2),
    "context_weight": (0.3, 1.0),
    "resource_paths": (0.0, 1.0),
    "recency_weight": (0.0, 0.2, 0.4),
    "lead": (0.0, 0.5, 1.0),
    "orphan": (0.0, 1.0, 2.0, 3.0),
    "orphan_corr": (0.8, 0.9, 0.95),
    "orphan_gain": (0.0, 2.0, 10.0),
    "orphan_roles": (0.0, 1.0, 2.0),
    "orphan_quorum": (1.0, 2.0),
    "bygone": (0.0, 0.2, 0.35, 0.5),
    "cycles": (0.0, 1.0, 2.0),
    "little_order": (0.0, 1.0, 2.0),
    "relief": (0.0, 1.0, 3.0, 100.0),
    "exhaustion": (0.0, 0.5, 0.65, 0.8),
    "backdate": (0.0, 0.5, 0.8),
    "filling": (0.0, 0.5, 0.8, 0.9),
    "rise": (0.0, 0.1, 0.3),
    "shared": (0.0, 0.8, 0.9),
    "work_first": (0.0, 1.0, 2.0),
    "shared_size": (0.0, 2.0, 3.0),
    "shared_cover": (0.0, 0.5, 0.8),
    "machine_names": (0.0, 1.0),
    "machine_sums": (0.0, 0.5, 0.8, 1.0),
    "outlive": (0.0, 0.2, 0.35, 0.5),
    "orphan_first": (0.0, 1.0),
    "slack_minutes": (0.0, 1.0, 2.0, 3.0, 5.0, 10.0),
    "tolerance_minutes": (0.0, 1.0),
    "spike_return_minutes": (0.0, 2.0),
    "mute": (0.0, 1.0),
    "after_symptoms": (0.0, 1.0),
    "symptom_minutes": (0.0, 3.0, 5.0, 10.0),
    "story": (0.0, 0.5, 1.0),
    "gap_onsets": (0.0, 1.0, 2.0),
    "counter_gaps": (0.0, 1.0),
    "wander": (0.0, 0.25, 0.5, 1.0, 2.0),
}
#: constants that restrict another and act only with it on: while that one is off, each of
#: their values is also tried with it at each of its values on (one constant at a time, a
#: restriction of an option that is off changes nothing and is never chosen)
RESTRICTS: dict[str, str] = {
    "shared_size": "shared",
    "shared_cover": "shared",
    "machine_sums": "machine_names",
}


class _Scorer:
    """Rank of the root per (constants, incident), computed once and shared by every fold."""

    def __init__(self, incidents: list[Incident]) -> None:
        self.incidents = incidents
        self.cache: dict[RootCauseParams, np.ndarray] = {}

    def ranks(self, params: RootCauseParams) -> np.ndarray:
        if params not in self.cache:
            pos = []
            for inc in self.incidents:
                order = ours(inc, False, params)
                pos.append(order.index(inc.root) if inc.root in order else 999)
            self.cache[params] = np.array(pos)
        return self.cache[params]

    def choose(
        self,
        rows: np.ndarray,
        verbose: bool = False,
        only: tuple[str, ...] = (),
        start: RootCauseParams | None = None,
    ) -> RootCauseParams:
        """Coordinate search on ``rows`` (two rounds, one constant at a time) of top-1 + top-3
        (only the constants named in ``only``, when given; the others keep their values in
        ``start``, the defaults when ``None``)."""

        def objective(q: RootCauseParams) -> float:
            r = self.ranks(q)[rows]
            return float(np.mean(r == 0) + np.mean(r < 3))

        best = start or RootCauseParams()
        for _ in range(2):
            for name, values in GRID.items():
                if only and name not in only:
                    continue
                options = [replace(best, **_one(name, v)) for v in values]
                of = RESTRICTS.get(name, "")
                if of and getattr(best, of) == 0 and (not only or of in only):
                    on = [u for u in GRID[of] if u != 0]
                    both: list[dict[str, Any]] = [{name: v, of: u} for v in values for u in on]
                    options += [replace(best, **b) for b in both]
                best = max(options, key=lambda q: (objective(q), q == best))
                if verbose:
                    print(f"  {name} -> {getattr(best, name)} ({objective(best):.3f})", flush=True)
        return best


def cross_validate(
    seeds: range,
    folds: int = 5,
    tuning: tuple[str, ...] = TUNING,
    only: tuple[str, ...] = (),
    start: RootCauseParams | None = None,
    rename: str = "",
    ask: str = "at-alert",
    coarsen: int = 1,
    after: int = 0,
    perturb: str = "",
) -> None:
    """Out-of-fold accuracy of choosing the constants on the tuning generators' seeds.

    The incidents of ``seeds`` from every tuning generator are split into
    ``folds`` by seed; each fold is ranked with the constants chosen on the
    others. Prints the out-of-fold figures per generator and the constants
    chosen on all of them (those are the defaults of ``RootCauseParams``).
    ``start`` (``--set``) fixes the constants not searched, to cross-validate a
    variant; the paired counts compare with it. ``rename`` (``--rename``) names every
    incident's series as another convention does (:mod:`perfintel.bench.renamed`).
    ``ask`` may name several times, comma-separated (``at-alert,onset``): the incidents of
    every ask are pooled (one choice for all of them), one seed's asks in one fold, and the
    figures are printed per ask and per generator, then pooled. ``perturb`` may also name
    several data faults (``none,gaps,resets``: ``none`` the plain incidents), pooled as the
    asks are (every ask with every fault, one seed's incidents in one fold).
    """
    start = start or RootCauseParams()
    if "holdout" in tuning:
        raise SystemExit("the holdout generator is for reporting only")
    faults = tuple(perturb.split(",")) if perturb else ("",)
    # every ask with every data fault: a setting, named as the ask (and the fault, when several)
    settings = {
        (f"{a} {f or 'none'}" if len(faults) > 1 else a): (a, f)
        for a in ask.split(",")
        if a
        for f in faults
    }
    asks = tuple(settings)
    incidents = []
    blocks: list[tuple[str, str]] = []  # (setting, generator), len(seeds) incidents each
    for a, (how, fault) in settings.items():
        for g in tuning:
            some, missed = generated(g, seeds, rename, how, coarsen, after, fault)
            if missed:
                raise SystemExit(f"{g}: {missed} seeds cannot be asked {how} (more --after?)")
            incidents += some
            blocks.append((a, g))
    scorer = _Scorer(incidents)
    fold = np.array([(s - seeds.start) % folds for _ in blocks for s in seeds])
    oof = np.zeros(len(incidents), dtype=np.int64)
    for k in range(folds):
        chosen = scorer.choose(np.flatnonzero(fold != k), only=only, start=start)
        test = np.flatnonzero(fold == k)
        oof[test] = scorer.ranks(chosen)[test]
        print(f"fold {k}: {_constants(chosen)}", flush=True)
    per = len(seeds)
    r0 = scorer.ranks(start)
    part = {b: slice(i * per, (i + 1) * per) for i, b in enumerate(blocks)}
    by_ask = {
        a: np.concatenate([np.arange(len(incidents))[part[a, g]] for g in tuning]) for a in asks
    }
    for a in asks:
        where = f"asked {a}, " if len(asks) > 1 else ""
        for g in tuning:
            r = oof[part[a, g]]
            print(
                f"out-of-fold {where}{g} (seeds {seeds.start}-{seeds.stop - 1}): "
                f"top-1 {100 * np.mean(r == 0):.1f} %, top-3 {100 * np.mean(r < 3):.1f} %"
            )
        r = oof[by_ask[a]]
        print(
            f"out-of-fold, {where}all tuning generators: top-1 {100 * np.mean(r == 0):.1f} %, "
            f"top-3 {100 * np.mean(r < 3):.1f} %"
        )
        print(
            f"out-of-fold {where}against the start's: "
            + ", ".join(f"{g} {_paired(oof[part[a, g]], r0[part[a, g]])}" for g in tuning)
            + f", all {_paired(oof[by_ask[a]], r0[by_ask[a]])}"
        )
    if len(asks) > 1:
        print(
            f"out-of-fold, pooled over {len(asks)} asks: top-1 {100 * np.mean(oof == 0):.1f} %, "
            f"top-3 {100 * np.mean(oof < 3):.1f} %; against the start's {_paired(oof, r0)}"
        )
    for name, values in GRID.items():
        if only and name not in only:
            continue
        for v in values:  # every candidate on all tuning seeds, for the record
            r = scorer.ranks(replace(start, **_one(name, v)))
            for a in asks:
                per_gen = ", ".join(
                    f"{g} {100 * np.mean(r[part[a, g]] == 0):.1f}"
                    f"/{100 * np.mean(r[part[a, g]] < 3):.1f}"
                    f" ({_paired(r[part[a, g]], r0[part[a, g]])})"
                    for g in tuning
                )
                where = f" asked {a}" if len(asks) > 1 else ""
                print(f"  all seeds{where}, {name}={v}: {per_gen}", flush=True)
    final = scorer.choose(np.arange(len(incidents)), verbose=True, only=only, start=start)
    print("chosen on all tuning seeds:", _constants(final))


def _paired(r: np.ndarray, r0: np.ndarray) -> str:
    """Incidents won / lost at top-1 and at top-3 by ranks ``r`` against the defaults' ``r0``."""
    won, lost = np.sum((r == 0) & (r0 != 0)), np.sum((r != 0) & (r0 == 0))
    won3, lost3 = np.sum((r < 3) & (r0 >= 3)), np.sum((r >= 3) & (r0 < 3))
    return f"+{won}/-{lost}, top-3 +{won3}/-{lost3}"


def _one(name: str, value: float) -> dict[str, Any]:
    return {name: value}


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` pairs as ``RootCauseParams`` fields, each value read as its field's
    type (``onset_slack=5`` an int: it counts steps and indexes arrays)."""
    kinds = {f.name: str(f.type) for f in fields(RootCauseParams)}
    out: dict[str, Any] = {}
    for k, v in (a.split("=", 1) for a in pairs):
        if k not in kinds:
            raise SystemExit(f"--set: RootCauseParams has no constant {k!r}")
        kind = kinds[k]
        if kind == "int":
            out[k] = int(float(v))
        elif kind == "bool":
            out[k] = v.strip().lower() not in ("0", "0.0", "false", "no", "off", "")
        else:
            out[k] = float(v)
    return out


def _constants(p: RootCauseParams) -> dict[str, float]:
    return {k: getattr(p, k) for k in GRID}


def latency(runs: int = 20, params: RootCauseParams | None = None) -> None:
    """rank_root_causes over 500 candidate series (a large generated incident), in-process (with
    ``params``, ``--set``) and through the HTTP API over a real DuckDB store (the in-process ASGI
    app, with the defaults)."""
    inc = generate_incident(7, LATENCY_PROFILE)
    series = inc.series[:500]
    grid = grid_of(inc)
    median, most, _ = _in_process(inc, series, runs, params)
    print(
        f"root cause over {len(series)} candidate series × {grid.size} steps, in-process: "
        f"median {median:.1f} ms, max {most:.1f} ms ({runs} runs)"
    )
    if params is not None and params.lead:
        _lead_cost(inc, series, params, runs)
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient

    from perfintel.api.app import create_app
    from perfintel.batch import SampleBatch
    from perfintel.config import load_settings

    now = (int(time.time() * 1000) // MINUTE) * MINUTE
    shift = now - int(inc.timestamps[-1])
    ts = inc.timestamps + shift
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            overrides={"data_dir": Path(tmp), "anomaly": {"enabled": False}}, env={}
        )
        with TestClient(create_app(settings, collectors=False)) as client:
            store = client.app.state.store  # type: ignore[attr-defined]
            for s in series:
                ok = np.isfinite(s.values)
                store.append(SampleBatch.from_arrays(s.labels, ts[ok], s.values[ok]))
            body = {
                "selector": '{service=~".+",__name__=~".+"}',
                "time": (inc.time_ms + shift) / 1000,
                "limit": 10,
            }
            r = client.post("/api/v1/performance/analyze/root-cause", json=body)
            r.raise_for_status()
            api = []
            for _ in range(runs):
                t0 = time.perf_counter()
                client.post("/api/v1/performance/analyze/root-cause", json=body).raise_for_status()
                api.append(time.perf_counter() - t0)
            n = r.json()["data"]["candidates"]
    print(
        f"root cause through the HTTP API ({n} series read from DuckDB): median "
        f"{1000 * statistics.median(api):.1f} ms, max {1000 * max(api):.1f} ms ({runs} runs)"
    )


def all_change_incident(seed: int = 7) -> tuple[Incident, list[SeriesInput]]:
    """The latency benchmark's 500 candidates with every series changed inside the window (a
    deploy that moves everything): each gets a step or a ramp (half each) of 5 to 50 times its
    baseline's spread, begun at a random step of the window, up to the incident time."""
    inc = generate_incident(seed, LATENCY_PROFILE)
    grid = grid_of(inc)
    t = grid.index(inc.time_ms)
    rng = np.random.default_rng(seed)
    steps = np.arange(grid.size)
    out = []
    for s in inc.series[:500]:
        base = s.values[t - WINDOW - BASELINE : t - WINDOW]
        if s.counter:
            base = np.diff(base)
        spread = float(np.nanstd(np.diff(base))) + 1e-3
        onset = int(rng.integers(t - WINDOW, t + 1))
        size = float(rng.uniform(5.0, 50.0)) * spread * float(rng.choice([-1.0, 1.0]))
        if rng.random() < 0.5:
            bump = np.where(steps >= onset, size, 0.0)
        else:
            bump = np.clip((steps - onset) / float(rng.integers(3, 15)), 0.0, 1.0) * size
        if s.counter:  # a counter's increase per step moves: integrate the bump
            bump = np.cumsum(bump)
        out.append(replace(s, values=s.values + bump))
    return inc, out


def latency_all_change(runs: int = 10, params: RootCauseParams | None = None) -> None:
    """The worst case of rank_root_causes: :func:`all_change_incident`, in process."""
    typical = generate_incident(7, LATENCY_PROFILE)
    median, most, n = _in_process(typical, typical.series[:500], runs, params)
    print(
        f"root cause over 500 candidate series, a typical incident ({n} changed), in-process: "
        f"median {median:.1f} ms, max {most:.1f} ms ({runs} runs)"
    )
    inc, series = all_change_incident()
    median, most, n = _in_process(inc, series, runs, params)
    print(
        f"root cause over {len(series)} candidate series × {grid_of(inc).size} steps, every one "
        f"given a change in the window ({n} changed), in-process: median {median:.1f} ms, "
        f"max {most:.1f} ms ({runs} runs)"
    )


def _in_process(
    inc: Incident, series: list[SeriesInput], runs: int, params: RootCauseParams | None
) -> tuple[float, float, int]:
    """Median and largest time of ``rank_root_causes`` over ``series`` (ms) and how many changed."""
    times, n = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        n = len(ours(replace(inc, series=series), False, params))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), 1000 * max(times), n


def _lead_cost(inc: Incident, series: list[SeriesInput], p: RootCauseParams, runs: int) -> None:
    """What ``lead`` adds in its worst case: the change profiles (``measure_changes``) of ``series``
    each given a ramp begun 15 minutes before the window, so that every changed series is
    re-measured (the ranking after it depends on how many changed, not on ``lead``)."""
    grid = grid_of(inc)
    t = grid.index(inc.time_ms)
    ramp = np.clip(np.arange(grid.size) - (t - WINDOW - 15), 0, None)
    x, usable = as_matrix(
        [replace(s, values=s.values + ramp * 0.1 * (np.nanstd(s.values) + 1e-3)) for s in series]
    )
    ws, we = t - WINDOW, min(grid.size, t + 1 + max(p.onset_slack, WINDOW // 3))
    for lead in (0, int(p.lead * WINDOW)):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            ch = measure_changes(x, usable, ws, we, ws - BASELINE, p, [60], lead)
            times.append(time.perf_counter() - t0)
        print(
            f"change profiles of {len(series)} series each a leak begun 15 min before the window "
            f"({ch.changed.sum()} changed, {len(ch.early)} dated before it), lead {lead} steps: "
            f"median {1000 * statistics.median(times):.1f} ms ({runs} runs)"
        )


def main(argv: list[str] | None = None) -> int:
    global WINDOW, BASELINE  # what every method is asked with, in this run
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first-seed", type=int, default=REPORT_SEEDS)
    ap.add_argument("--seeds", type=int, default=240)
    ap.add_argument(
        "--cv", action="store_true", help="cross-validate the constants on tuning seeds 0-199"
    )
    ap.add_argument(
        "--tuning", default=",".join(TUNING), help="generators the --cv chooses on (never holdout)"
    )
    ap.add_argument("--only", default="", help="--cv searches only these constants (comma list)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a constant of RootCauseParams other than its default, for perfintel's rows (with "
        "--cv: the start of the search, a variant cross-validated)",
    )
    ap.add_argument(
        "--rename",
        default="",
        choices=("", *CONVENTIONS),
        help="name the generated series as another convention does (same values and truth)",
    )
    ap.add_argument(
        "--ask",
        default="at-alert",
        help="the time asked: at-alert, end (last sample), onset (the root's fault onset) or "
        "+Nm (N minutes after the alert; incidents whose data end sooner are left out); with "
        "--cv a comma list (at-alert,onset): the asks' incidents pooled, one choice for all",
    )
    ap.add_argument(
        "--coarsen",
        type=int,
        default=1,
        metavar="K",
        help="every K samples as one (gauges: their mean; counters: the last)",
    )
    ap.add_argument(
        "--after",
        type=int,
        default=0,
        metavar="MIN",
        help="the in-house profiles with MIN more minutes of data after the alert",
    )
    ap.add_argument(
        "--perturb",
        default="",
        metavar="NAME[:RATE]",
        help="a data fault of real scrapes first: gaps, resets, late, noise or recent, at RATE (the "
        "default rate without it); with --cv a comma list, none for the plain incidents, "
        "pooled as --ask's are",
    )
    ap.add_argument(
        "--window",
        type=int,
        default=WINDOW,
        metavar="MIN",
        help=f"the window every method is given, minutes before the time asked ({WINDOW})",
    )
    ap.add_argument(
        "--baseline",
        type=int,
        default=BASELINE,
        metavar="MIN",
        help=f"the baseline every method is given, minutes before the window ({BASELINE})",
    )
    ap.add_argument("--latency", action="store_true")
    ap.add_argument(
        "--all-change",
        action="store_true",
        help="with --latency: only the worst case, every candidate changed in the window",
    )
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--generators", default="default,variant,variant-lagged,holdout,blind")
    args = ap.parse_args(argv)
    WINDOW, BASELINE = args.window, args.baseline
    params = replace(RootCauseParams(), **overrides(args.set))
    if args.cv:
        only = tuple(n for n in args.only.split(",") if n)
        tuning = tuple(args.tuning.split(","))
        cross_validate(
            range(0, 200),
            tuning=tuning,
            only=only,
            start=params,
            rename=args.rename,
            ask=args.ask,
            coarsen=args.coarsen,
            after=args.after,
            perturb=args.perturb,
        )
        return 0
    if args.latency and args.all_change:
        latency_all_change(params=params)
        return 0
    if args.latency:
        latency(params=params)
        return 0
    methods = tuple(m for m in args.methods.split(",") if m)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if seeds.stop > REPORT_SEEDS:  # the default: said, so that nobody tunes on them unawares
        print(
            f"(seeds {REPORT_SEEDS} and up are the report seeds: figures to report, never to "
            "look at misses or choose on; --first-seed 0 for the tuning seeds 0-199)\n"
        )
    for ask in args.ask.split(","):
        for name in args.generators.split(","):
            incidents, missed = generated(
                name, seeds, args.rename, ask, args.coarsen, args.after, args.perturb
            )
            setting = f"asked {ask}, coarsened ×{args.coarsen}, {args.after} min more after"
            setting += f", perturbed {args.perturb}" if args.perturb else ""
            if (ap.get_default("window"), ap.get_default("baseline")) != (WINDOW, BASELINE):
                setting += f", window {WINDOW} min, baseline {BASELINE} min"
            if incidents:
                ranks, times = evaluate(incidents, methods, params)
                print(table(name, seeds, ranks, times), flush=True)
            print(f"({setting}: {len(incidents)} asked, {missed} not reaching)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
