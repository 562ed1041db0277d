"""Why root-cause guesses miss, and what is reachable, on the tuning generators' seeds.

For each generated incident whose root is not ranked first, the top-ranked
series is put in one class by comparing it with the ground truth:

* ``root not changed`` — the root never passed ``min_sigma`` (or its own tail);
* ``background outranks`` — a planted unrelated anomaly ranks first;
* ``same-step tie`` / ``effect dated earlier`` / ``effect later but outranks`` — a series of
  the root's service or the latency of a service the fault reached ranks first, its onset in
  the same step as the root's, before it, or after it;
* ``unrelated outranks`` — any other series (a noise excursion, a surge of traffic that
  spread downstream in the same minute).

Then the identifiability figures: the share of incidents where the root never passes
``min_sigma``, and where it begins within the onset tolerance of a true effect that nothing
in the labels orders (another entity without a graph, or an occupancy beside latency), and
among those where that effect is the larger one (a method relying on attenuation cannot
get those). Use on tuning seeds only (never on ``holdout``, which is for reporting).
``--show CLASS,...`` lists the misses of those classes one by one: the top change against
the root (name and entity, role, peak σ, shape, onset in steps from the incident time,
the symptoms each reaches through what it explains, the z-score at the incident time; the
root's true onset; for a root that did not change, its peak and z at the incident time).

    .venv/bin/python benchmarks/root_cause_misses.py --generators variant,variant-lagged
    .venv/bin/python benchmarks/root_cause_misses.py --generators blind --show "background outranks"
    .venv/bin/python benchmarks/root_cause_misses.py --generators blind --deep 4
    .venv/bin/python benchmarks/root_cause_misses.py --generators blind --rename otel
    .venv/bin/python benchmarks/root_cause_misses.py --generators default --coarsen 5
    .venv/bin/python benchmarks/root_cause_misses.py --generators default --ask +10m --after 10
    .venv/bin/python benchmarks/root_cause_misses.py --generators default --perturb gaps

``--deep N`` lists every incident whose root ranks N-th or lower: the fault kind, the
root (with its score parts: strength ``log(1 + |σ|)``, the rest of its score, and the
penalties it took — relief, bygone, late) and what ranks above it, 1 to 3, each marked as
the root's effect (a series the fault reached), a planted background change or unrelated.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from root_cause import BASELINE, WINDOW, changes_near, generated, grid_of

from perfintel.analysis.rootcause import ranking as rc
from perfintel.bench.incidents import Incident
from perfintel.bench.renamed import CONVENTIONS
from perfintel.model import metric_name

MINUTE = 60_000


def _service(inc: Incident, i: int) -> str:
    d = dict(inc.series[i].labels)
    return d.get("service") or d.get("service_name", "")


def _rank(inc: Incident) -> list[rc.Cause]:
    return rc.rank_root_causes(
        inc.time_ms,
        inc.series,
        grid_of(inc),
        window_ms=WINDOW * MINUTE,
        baseline_ms=BASELINE * MINUTE,
    )


def classify(inc: Incident, causes: list[rc.Cause] | None = None) -> str:
    """The class of this incident's miss (``""`` when the root ranks first)."""
    causes = _rank(inc) if causes is None else causes
    by = {c.index: c for c in causes}
    if causes and causes[0].index == inc.root:
        return ""
    if inc.root not in by:
        return "root not changed"
    top, root = causes[0], by[inc.root]
    if top.index in inc.background:
        return "background outranks"
    if top.index in inc.affected or _service(inc, top.index) == _service(inc, inc.root):
        d = (top.onset_ms - root.onset_ms) // inc.step_ms
        return (
            "effect dated earlier"
            if d < 0
            else "same-step tie"
            if d == 0
            else "effect later but outranks"
        )
    return "unrelated outranks"


def describe(inc: Incident, causes: list[rc.Cause], i: int) -> str:
    """One line on change ``i``: what, how large, when, what symptoms it reaches."""
    by = {c.index: c for c in causes}
    c = by[i]
    symptom = {rc.ROLE_ORDER["latency"], rc.ROLE_ORDER["errors"]}
    seen, todo = {i}, [i]
    while todo:
        for f in by[todo.pop()].followers:
            if f.index not in seen:
                seen.add(f.index)
                todo.append(f.index)
    reached = [j for j in seen - {i} if rc.ROLE_ORDER.get(rc.role_of(by[j].labels), -1) in symptom]
    at = min((inc.time_ms - c.window_start_ms) // inc.step_ms, c.z.size - 1)
    return (
        f"{metric_name(c.labels)} of {rc.entity_of(c.labels)} "
        f"({rc.role_of(c.labels) or '?'}): {c.sigma:+.1f}σ {c.shape}, onset "
        f"{(c.onset_ms - inc.time_ms) // inc.step_ms:+d} steps, {len(c.followers)} followers, "
        f"{len(reached)} symptoms reached, z at the incident {c.z[at]:+.1f}"
    )


def _unchanged(inc: Incident, p: rc.RootCauseParams) -> str:
    """Why the root is no change: its peak z against ``min_sigma`` and its own baseline tail."""
    _x, _ws, _we, ch = changes_near(inc, p)
    r = inc.root
    return (
        f"{metric_name(inc.series[r].labels)} of {rc.entity_of(inc.series[r].labels)}: "
        f"peak {ch.peak[r]:+.1f}σ at {int(ch.peak_at[r]) - WINDOW * MINUTE // inc.step_ms:+d} "
        f"steps, z at the incident {ch.z[r, WINDOW * MINUTE // inc.step_ms]:+.1f}"
    )


def _relation(inc: Incident, i: int) -> str:
    if i == inc.root:
        return "root"
    if i in inc.affected:
        return "effect"
    if i in inc.background:
        return "background"
    return "same service" if _service(inc, i) == _service(inc, inc.root) else "unrelated"


def score_parts(c: rc.Cause, p: rc.RootCauseParams) -> str:
    """The parts of a cause's score: strength, the rest (support), the penalties it took."""
    strength = float(np.log1p(abs(c.sigma)))
    s, pen = c.score, list[str]()
    if s < -rc._LATE / 2:
        s, pen = s + rc._LATE, [*pen, "late"]
    if s < -rc._BYGONE / 2:
        s, pen = s + rc._BYGONE, [*pen, "bygone"]
    if p.relief and rc.relieved(c.labels, c.sigma):
        s, pen = s + p.relief, [*pen, "relief"]
    return f"score {c.score:+.2f} = strength {strength:.2f} + support {s - strength:+.2f}" + (
        f" - {'/'.join(pen)}" if pen else ""
    )


def deep(inc: Incident, causes: list[rc.Cause], name: str, p: rc.RootCauseParams) -> None:
    """Print one incident whose root ranks low: the root and what ranks 1 to 3."""
    order = [c.index for c in causes]
    rank = order.index(inc.root) + 1 if inc.root in order else 0
    by = {c.index: c for c in causes}
    print(f"{name} {inc.seed} ({inc.kind}): root ranked {rank or 'unchanged'}")
    if rank:
        root = by[inc.root]
        print(f"  root: {describe(inc, causes, inc.root)}; {score_parts(root, p)}")
        ex = root.explained_by
        if ex is not None:
            print(
                f"        explained by {metric_name(by[ex].labels)} of {rc.entity_of(by[ex].labels)}"
            )
    for k, c in enumerate(causes[:3]):
        print(
            f"  {k + 1} [{_relation(inc, c.index)}]: {describe(inc, causes, c.index)}; "
            f"{score_parts(c, p)}"
        )


def identifiability(inc: Incident, p: rc.RootCauseParams) -> tuple[bool, bool, bool]:
    """``(root below min_sigma, root tied with an unordered effect, that effect larger)``."""
    x, ws, we, ch = changes_near(inc, p)
    r = inc.root
    if not ch.changed[r]:
        return True, False, False
    values = x[:, ws:we]

    def tol(i: int) -> float:
        shape = rc._shape_of(ch, i, values, inc.step_ms)
        return rc._tolerance(ch, i, shape, p.sharp_tolerance)

    def role(i: int) -> int:
        return rc.ROLE_ORDER.get(rc.role_of(inc.series[i].labels), -1)

    reached = {_service(inc, a) for a in inc.affected}
    tied = larger = False
    for j in (int(j) for j in np.flatnonzero(ch.changed)):
        if j == r or _service(inc, j) not in reached:
            continue
        if abs(ch.onset[j] - ch.onset[r]) >= tol(r) + tol(j):
            continue
        same = rc.entity_of(inc.series[j].labels) == rc.entity_of(inc.series[r].labels)
        if same and min(role(r), role(j)) >= 0 and role(r) != role(j):
            occupancy = any(rc.is_occupancy(inc.series[a].labels) for a in (r, j))
            latency = rc.ROLE_ORDER["latency"] in (role(r), role(j))
            if not (occupancy and latency):
                continue  # the role order inside one workload decides
        tied = True
        larger = larger or abs(ch.peak[j]) > abs(ch.peak[r])
    return False, tied, larger


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generators", default="variant,variant-lagged")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--show", default="", help="list the misses of these classes (comma list)")
    ap.add_argument("--deep", type=int, default=0, help="list every root ranked this or lower")
    ap.add_argument(
        "--rename",
        default="",
        choices=("", *CONVENTIONS),
        help="name the generated series as another convention does (same values and truth)",
    )
    ap.add_argument("--ask", default="at-alert", help="the time asked: at-alert, end, onset or +Nm")
    ap.add_argument("--coarsen", type=int, default=1, metavar="K", help="K samples as one")
    ap.add_argument(
        "--after", type=int, default=0, metavar="MIN", help="MIN more minutes after the alert"
    )
    ap.add_argument(
        "--perturb", default="", metavar="NAME[:RATE]", help="gaps, resets, late or noise first"
    )
    args = ap.parse_args(argv)
    p = rc.RootCauseParams()
    for name in args.generators.split(","):
        if name == "holdout":
            raise SystemExit("the holdout generator is for reporting only")
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        classes: Counter[str] = Counter()
        below = tied = larger = 0
        incidents, missed = generated(
            name, seeds, args.rename, args.ask, args.coarsen, args.after, args.perturb
        )
        for inc in incidents:
            s = inc.seed
            causes = _rank(inc)
            miss = classify(inc, causes)
            classes[miss or "root first"] += 1
            if miss and miss in args.show.split(","):
                ranked = [c.index for c in causes]
                rank = ranked.index(inc.root) + 1 if inc.root in ranked else 0
                true = (inc.onset_ms - inc.time_ms) // inc.step_ms
                print(f"{name} {s} ({inc.kind}), {miss}, root ranked {rank or '-'}:")
                print(f"  top:  {describe(inc, causes, causes[0].index)}")
                if rank:
                    print(f"  root: {describe(inc, causes, inc.root)}, true onset {true:+d}")
                else:
                    print(f"  root: {_unchanged(inc, p)}, true onset {true:+d}")
            if args.deep:
                order = [c.index for c in causes]
                if inc.root not in order or order.index(inc.root) + 1 >= args.deep:
                    deep(inc, causes, name, p)
            b, t, big = identifiability(inc, p)
            below, tied, larger = below + b, tied + t, larger + big
        n = max(1, len(incidents))
        print(f"{name}, seeds {seeds.start}-{seeds.stop - 1} ({missed} not reaching the time):")
        for k, v in classes.most_common():
            print(f"  {k}: {v}")
        print(
            f"  root below min_sigma {100 * below / n:.1f} %, tied with an effect the labels "
            f"cannot order {100 * tied / n:.1f} %, that effect larger {100 * larger / n:.1f} % "
            f"(top-1 ceiling without a graph about {100 - 100 * (below + larger) / n:.0f} %)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
