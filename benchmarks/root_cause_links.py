"""Can a dependency learned from the baseline tell a root's effects from a background anomaly's
coincidences? Measured on the tuning generators' seeds (never on ``holdout``).

For each generated incident, the pairs ``(source, j)`` across entities where ``j`` changed
(past ``min_sigma``) no earlier than ``source``: ``source`` the root and ``j`` a series the
fault reached (*true*), or ``source`` a planted background anomaly and ``j`` any changed
series (*spurious*: a background anomaly propagates nowhere). For two dependency statistics
over the 3-hour baseline — the learned link (:func:`~perfintel.analysis.rootcause.links.learned_links`,
largest step-change correlation with the source ahead by 0-5 steps) and the significance test
(:func:`~perfintel.analysis.correlation.link_p_values`: high-passed, prewhitened, Bartlett +
Šidák) — it prints the AUC of true against spurious pairs (0.5: no information) and the share
of each kind that passes the tests the method can use (the threshold ``learned_corr``,
Benjamini–Hochberg over the changed series' pairs at ``link_fdr``).

    .venv/bin/python benchmarks/root_cause_links.py --generators default,variant,variant-lagged
"""

from __future__ import annotations

import argparse

import numpy as np
from root_cause import BASELINE, GENERATORS, changes_near

from perfintel.analysis.correlation import benjamini_hochberg, link_p_values
from perfintel.analysis.rootcause import ranking as rc

MAX_LAG = 5


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a true pair's statistic > a spurious pair's), ties counted half."""
    allv = np.r_[pos, neg]
    order = np.argsort(allv, kind="stable")
    ranks = np.empty(allv.size)
    ranks[order] = np.arange(1, allv.size + 1)
    for v in np.unique(allv):  # average ranks of ties
        same = allv == v
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def pairs(name: str, seeds: range, fdrs: tuple[float, ...]) -> dict[str, list[np.ndarray]]:
    """Per kind (``true``/``spurious``): rows of (corr, -log10 p, passes BH at each fdr)."""
    p = rc.RootCauseParams()
    out: dict[str, list[np.ndarray]] = {"true": [], "spurious": []}
    for s in seeds:
        inc = GENERATORS[name](s)
        x, ws, _, ch = changes_near(inc, p)
        cands = [int(i) for i in np.flatnonzero(ch.changed)]
        if len(cands) < 2:
            continue
        at = {i: k for k, i in enumerate(cands)}
        base = x[cands, ws - BASELINE : ws]
        corr = rc.learned_links(base, MAX_LAG)
        pv = link_p_values(base, MAX_LAG)
        off = ~np.eye(len(cands), dtype=bool)
        passes = []
        for f in fdrs:
            m = np.eye(len(cands), dtype=bool)
            m[off] = benjamini_hochberg(pv[off]) <= f
            passes.append(m)
        ent = {i: rc.entity_of(inc.series[i].labels) for i in cands}
        reached = set(inc.affected)
        sources = [(inc.root, "true")] + [(b, "spurious") for b in inc.background]
        for src, kind in sources:
            if src not in at:
                continue
            for j in cands:
                if j == src or ent[j] == ent[src] or ch.onset[j] < ch.onset[src]:
                    continue
                if kind == "true" and j not in reached:
                    continue
                a, b = at[src], at[j]
                row = [corr[a, b], -np.log10(max(pv[a, b], 1e-300))]
                out[kind].append(np.array(row + [float(m[a, b]) for m in passes]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generators", default="default,variant,variant-lagged")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=200)
    args = ap.parse_args(argv)
    fdrs = (0.05, 0.2, 0.5)
    lc = rc.RootCauseParams().learned_corr
    for name in args.generators.split(","):
        if name == "holdout":
            raise SystemExit("the holdout generator is for reporting only")
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        got = pairs(name, seeds, fdrs)
        tr, sp = np.array(got["true"]), np.array(got["spurious"])
        print(f"{name}, seeds {seeds.start}-{seeds.stop - 1}: {len(tr)} true, {len(sp)} spurious")
        print(
            f"  AUC learned link {_auc(tr[:, 0], sp[:, 0]):.3f}, "
            f"significance test {_auc(tr[:, 1], sp[:, 1]):.3f}"
        )
        cells = [
            f"corr ≥ {lc}: {100 * np.mean(tr[:, 0] >= lc):.0f} / {100 * np.mean(sp[:, 0] >= lc):.0f}"
        ]
        cells += [
            f"BH {f}: {100 * np.mean(tr[:, 2 + k]):.0f} / {100 * np.mean(sp[:, 2 + k]):.0f}"
            for k, f in enumerate(fdrs)
        ]
        print("  % passing, true / spurious: " + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
