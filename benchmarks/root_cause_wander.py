"""How many series read as changes that are none, over a short or a slowly wandering baseline:
the ``wander`` option's diagnostic, on the tuning generators' seeds (never on ``holdout``).

For each generated incident, every series is put in one class by the ground truth: the
*root*, a planted *background* anomaly, a series of a service the fault reached (*reached*),
or *noise* (a series of a service the fault did not reach: nothing happened to it). For
each class it prints the share that the ranking's first step calls a change (peak |z| past
``min_sigma`` and past the baseline's own largest |z|), with ``wander`` off and at the
values given, the median lag-1 autocorrelation of the baseline's residuals and the median
factor the option multiplies ``min_sigma`` by. With ``--perturb recent`` the baseline is what
was recorded (collection began two thirds into it: an hour), as the ranking reads it.

    .venv/bin/python benchmarks/root_cause_wander.py --generators variant --perturb recent
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from root_cause import BASELINE, MINUTE, WINDOW, generated, grid_of

from perfintel.analysis.rootcause import RootCauseParams
from perfintel.analysis.rootcause.baseline import baseline_line, wander_factor
from perfintel.analysis.rootcause.durations import symptom_reach
from perfintel.analysis.rootcause.measure import measure_changes
from perfintel.analysis.signals import as_matrix
from perfintel.bench.incidents import Incident

KINDS = ("root", "background", "reached", "noise")


def _kinds(inc: Incident) -> np.ndarray:
    def service(i: int) -> str:
        d = dict(inc.series[i].labels)
        return d.get("service") or d.get("service_name", "")

    reached = {service(a) for a in inc.affected}
    out = np.full(len(inc.series), "noise", dtype=object)
    for i in range(len(inc.series)):
        if i == inc.root:
            out[i] = "root"
        elif i in inc.background:
            out[i] = "background"
        elif service(i) in reached:
            out[i] = "reached"
    return out


def _measured(inc: Incident, p: RootCauseParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which series change, the residuals' lag-1 autocorrelation and the factor of ``wander``
    at 1, with the ranking's window and its baseline cut to the data's start."""
    x, usable = as_matrix(inc.series)
    t = min(grid_of(inc).index(inc.time_ms), x.shape[1] - 1)
    ws = t - WINDOW * MINUTE // inc.step_ms
    b0 = max(0, ws - BASELINE * MINUTE // inc.step_ms)
    begin = min(int(np.argmax(np.isfinite(np.asarray(s.values, float)))) for s in inc.series)
    if b0 + (ws - b0) // 2 < begin <= ws - 4:
        b0 = begin  # as window.from_data_start reads it
    reach = max(p.onset_slack, symptom_reach(p, inc.step_ms))
    we = min(x.shape[1], t + 1 + max(reach, (t - ws) // 3))
    ch = measure_changes(x, usable, ws, we, b0, p, (), int(p.lead * (t - ws)))
    base = x[:, b0:ws]
    level, slope, _ = baseline_line(base)
    tb = np.arange(b0 - ws, 0)
    resid = base - level[:, None] - slope[:, None] * tb[None, :]
    d = resid - resid.mean(axis=1, keepdims=True)
    var = np.sum(d * d, axis=1)
    phi = np.divide(
        np.sum(d[:, 1:] * d[:, :-1], axis=1), var, out=np.zeros(len(var)), where=var > 0
    )
    return ch.changed & usable, phi, wander_factor(resid, we - ws)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generators", default="default,variant,variant-lagged,blind")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--perturb", default="", help="a data fault first (recent: a short baseline)")
    ap.add_argument("--wander", default="1", help="values of wander to compare with off")
    args = ap.parse_args(argv)
    values = [float(v) for v in args.wander.split(",")]
    for name in args.generators.split(","):
        if name == "holdout":
            raise SystemExit("the holdout generator is for reporting only")
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        incidents, _ = generated(name, seeds, perturb=args.perturb)
        kinds, phis, factors = [], [], []
        changed: dict[float, list[np.ndarray]] = {v: [] for v in [0.0, *values]}
        for inc in incidents:
            kinds.append(_kinds(inc))
            for v in changed:
                ch, phi, factor = _measured(inc, replace(RootCauseParams(), wander=v))
                changed[v].append(ch)
            phis.append(phi)
            factors.append(factor)
        k, phi, factor = (np.concatenate(a) for a in (kinds, phis, factors))
        flags = {v: np.concatenate(a) for v, a in changed.items()}
        print(f"{name}, seeds {seeds.start}-{seeds.stop - 1}, {args.perturb or 'plain'}:")
        for kind in KINDS:
            m = k == kind
            shares = ", ".join(f"wander {v:g} {100 * np.mean(flags[v][m]):.1f} %" for v in flags)
            print(
                f"  {kind:10s} {m.sum():6d} series, changed: {shares}; median phi "
                f"{np.median(phi[m]):.2f}, factor at 1 {np.median(factor[m]):.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
