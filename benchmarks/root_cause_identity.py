"""Rankings before and after a change that must not move them: dump, then compare.

Ranks every incident of seeds 0-199 of the tuning generators (``default``,
``variant``, ``variant-lagged``, ``blind``) and seeds 0-99 of ``holdout``,
without and with the declared graph, and writes the top-10 series indices of
each (in order) to a JSON file; ``--compare A B`` reports every incident whose
ranking differs.

    .venv/bin/python benchmarks/root_cause_identity.py --out before.json  # unchanged checkout
    .venv/bin/python benchmarks/root_cause_identity.py --out after.json
    .venv/bin/python benchmarks/root_cause_identity.py --compare before.json after.json

``--set NAME=VALUE`` ranks with a constant of ``RootCauseParams`` other than its default (the
options the cross-validation explores), ``--seeds N`` only the first ``N`` seeds of each
generator, and ``--all-change`` adds the full ranking of the worst-case latency incident
(``root_cause.all_change_incident``: every candidate changed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataclasses import replace

from root_cause import (
    GENERATORS,
    TUNING,
    all_change_incident,
    ours,
    overrides,
)

from perfintel.analysis.rootcause import RootCauseParams

#: generator -> seeds ranked
SEEDS: dict[str, range] = {**{g: range(0, 200) for g in TUNING}, "holdout": range(0, 100)}


def dump(
    out: Path, params: RootCauseParams, first: int | None, all_change: bool, top: int = 10
) -> None:
    rankings: dict[str, list[int]] = {}
    t0 = time.perf_counter()
    if all_change:
        inc, series = all_change_incident()
        rankings["all-change/7/plain"] = ours(replace(inc, series=series), False, params)
    for name, every in SEEDS.items():
        seeds = every[:first]
        for s in seeds:
            inc = GENERATORS[name](s)
            for graph in (False, True):
                order = ours(inc, graph, params)[:top]
                rankings[f"{name}/{s}/{'graph' if graph else 'plain'}"] = order
        print(f"{name}: {len(seeds)} incidents ({time.perf_counter() - t0:.0f} s)", flush=True)
    out.write_text(json.dumps(rankings, indent=0, sort_keys=True))
    print(f"{len(rankings)} rankings -> {out}")


def compare(a: Path, b: Path) -> int:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    keys = sorted(set(ra) | set(rb))
    diff = [k for k in keys if ra.get(k) != rb.get(k)]
    for k in diff[:20]:
        print(f"{k}: {ra.get(k)} != {rb.get(k)}")
    print(f"{len(keys)} rankings compared, {len(diff)} differ")
    return 1 if diff else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--seeds", type=int, default=None, help="only the first N seeds of each")
    ap.add_argument("--all-change", action="store_true")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        ap.error("--out or --compare")
    params = replace(RootCauseParams(), **overrides(args.set))
    dump(args.out, params, args.seeds, args.all_change)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
