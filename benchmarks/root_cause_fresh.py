"""perfintel's root-cause accuracy on the ``fresh`` generator, split by how each incident was made.

Per fault mechanism (a CPU hog, a GC storm, a connection leak, ...), by what paged (the
user-facing signal, the root's own alert, or neither) and by scrape step; and, for each miss,
what ranked first: an effect of the fault (``affected``), a planted background anomaly or
something else, in the root's pod or not. Tuning seeds only (``fresh`` is report-only: its
report seeds 1000-1239 are for ``root_cause.py``'s table, never for looking at misses).

    .venv/bin/python benchmarks/root_cause_fresh.py --first-seed 0 --seeds 200
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
from root_cause import ours

from perfintel.bench.incidents_fresh import fresh_case
from perfintel.model import metric_name


def _row(name: str, ranks: list[int]) -> str:
    r = np.array(ranks)
    return f"| {name} | {len(r)} | {100 * np.mean(r == 0):.1f} / {100 * np.mean(r < 3):.1f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=200)
    args = ap.parse_args(argv)
    if args.first_seed + args.seeds > 1000:
        raise SystemExit("seeds from 1000 are report seeds: do not look at their misses")
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    firsts: Counter[str] = Counter()
    names: Counter[str] = Counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        case = fresh_case(seed)
        inc = case.incident
        order = ours(inc, False)
        pos = order.index(inc.root) if inc.root in order else len(inc.series)
        groups["mechanism"][f"{inc.kind} {case.mechanism}"].append(pos)
        groups["paged by"][case.paged_by].append(pos)
        groups["step"][f"{inc.step_ms // 1000} s"].append(pos)
        if pos == 0 or not order:
            continue
        top = order[0]
        what = (
            "effect" if top in inc.affected else "background" if top in inc.background else "other"
        )
        pod = dict(inc.series[top].labels).get("pod")
        same = pod is not None and pod == dict(inc.series[inc.root].labels).get("pod")
        firsts[f"{what}, {'the root pod' if same else 'elsewhere'}"] += 1
        names[metric_name(inc.series[top].labels)] += 1
    for title, per in groups.items():
        print(f"\n| {title} | n | top-1 / top-3 % |\n|---|---|---|")
        for key in sorted(per):
            print(_row(key, per[key]))
    print("\nmisses, what ranked first:", dict(firsts.most_common()))
    print("misses, its metric:", dict(names.most_common(8)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
