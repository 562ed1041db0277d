"""Root-cause accuracy at the data's own resolution versus a 1-minute grid.

The ``default`` incident generator is run at finer steps (60 s / ``--fine``: every
duration of the profile — history, lead, noise memory, and with ``--same-lags`` also the
propagation lags — scaled so the incident is the same one sampled more often), and each
incident is ranked twice: on its own grid (what ``step: auto`` gives through the API) and
on a 1-minute grid (every ``--fine``-th sample, the old default). Tuning seeds 0-199 only.

    .venv/bin/python benchmarks/root_cause_step.py --fine 2 4
    .venv/bin/python benchmarks/root_cause_step.py --fine 2 4 --same-lags
    .venv/bin/python benchmarks/root_cause_step.py --latency   # 500 candidates at 60, 30, 15 s
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from root_cause import BASELINE, WINDOW

from perfintel.analysis.rootcause import rank_root_causes
from perfintel.analysis.signals import Grid, SeriesInput
from perfintel.bench.incidents import DEFAULT_PROFILE, Incident, generate_incident

MINUTE = 60_000


def _rank(inc: Incident, start_ms: int, step_ms: int, series: list[SeriesInput]) -> list[int]:
    grid = Grid(start_ms, step_ms, len(series[0].values))
    causes = rank_root_causes(
        inc.time_ms, series, grid, window_ms=WINDOW * MINUTE, baseline_ms=BASELINE * MINUTE
    )
    return [c.index for c in causes]


def latency(runs: int = 9) -> None:
    """In-process ranking time of 500 candidates over the 3 h 30 min of one incident at 60,
    30 and 15 s steps (the grid ``step: auto`` gives for such data)."""
    for f in (1, 2, 4):
        p = DEFAULT_PROFILE
        big = replace(
            p,
            name="latency",
            services=(28, 28),
            instances=(3, 3),
            step_s=60 // f,
            span_steps=p.span_steps * f,
            noise_tau=(p.noise_tau[0] * f, p.noise_tau[1] * f),
            lead_steps=(p.lead_steps[0] * f, p.lead_steps[1] * f),
        )
        inc = generate_incident(7, big)
        series = inc.series[:500]
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            _rank(inc, inc.start_ms, inc.step_ms, series)
            times.append(time.perf_counter() - t0)
        print(
            f"{big.step_s} s steps, {len(series)} candidates × {len(series[0].values)} steps: "
            f"median {1000 * statistics.median(times):.0f} ms, max {1000 * max(times):.0f} ms "
            f"({runs} runs)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fine", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--same-lags", action="store_true", help="scale the lags too")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--latency", action="store_true", help="time 500 candidates per step")
    args = ap.parse_args(argv)
    if args.latency:
        latency()
        return 0
    for f in args.fine:
        p = DEFAULT_PROFILE
        lag = f if args.same_lags else 1
        prof = replace(
            p,
            name=f"{p.name}-fine{f}",
            step_s=60 // f,
            span_steps=p.span_steps * f,
            noise_tau=(p.noise_tau[0] * f, p.noise_tau[1] * f),
            lead_steps=(p.lead_steps[0] * f, p.lead_steps[1] * f),
            after_steps=(p.after_steps[0] * f, p.after_steps[1] * f),
            edge_lag=(p.edge_lag[0] * lag, p.edge_lag[1] * lag),
            inner_lag=(p.inner_lag[0] * lag, p.inner_lag[1] * lag),
        )
        hits = {"own grid": [0, 0], "1-minute grid": [0, 0]}
        for s in range(args.seeds):
            inc = generate_incident(s, prof)
            off = ((inc.time_ms - inc.start_ms) // inc.step_ms) % f
            coarse = [SeriesInput(x.labels, x.values[off::f], x.counter) for x in inc.series]
            for name, ranked in (
                ("own grid", _rank(inc, inc.start_ms, inc.step_ms, inc.series)),
                ("1-minute grid", _rank(inc, inc.start_ms + off * inc.step_ms, MINUTE, coarse)),
            ):
                hits[name][0] += ranked[:1] == [inc.root]
                hits[name][1] += inc.root in ranked[:3]
        for name, (t1, t3) in hits.items():
            print(
                f"{prof.step_s} s steps, lags ×{lag}, seeds 0-{args.seeds - 1}, {name}: "
                f"top-1 {100 * t1 / args.seeds:.1f} %, top-3 {100 * t3 / args.seeds:.1f} %",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
