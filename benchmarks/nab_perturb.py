"""How sharp is the shipped detector's optimum: single-constant moves on the NAB development half.

    .venv/bin/python benchmarks/nab_perturb.py [--nab ../shared/data/nab]

Scores the default ensemble on the 31 files (NAB standard, the scorer's best
threshold), then every constant moved alone to half and to twice its value (or
the neighbouring choice), and prints each score and their mean and minimum.
In-sample figures: a sharp drop says the value fits these files rather than
anomalies in general. No assertions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from perfintel.analysis.anomaly import (
    ContextNovelty,
    Ensemble,
    EnsembleConfig,
    LevelShift,
    SeasonalBaseline,
)
from perfintel.evaluation.nab import stream_series
from perfintel.evaluation.nab_cv import Corpus, load_corpus, nab_score

BASE: dict[str, Any] = {
    "alarm": 0.6,
    "rest": 120,
    "lik_short_alpha": 0.2,
    "lik_decay": 1 / 8000,
    "lik_warmup": 200,
    "bins": 6,
    "grids": 3,
    "novelty_warmup": 250,
    "shift_short": 0.1,
    "shift_long": 0.005,
    "slow_alpha": 0.03,
    "profile_alpha": 0.15,
    "fast_alpha": 0.1,
}
MOVES: dict[str, tuple[Any, Any]] = {
    "alarm": (0.5, 0.7),
    "rest": (60, 240),
    "lik_short_alpha": (0.1, 0.4),
    "lik_decay": (1 / 4000, 1 / 16000),
    "lik_warmup": (100, 400),
    "bins": (5, 7),
    "grids": (1, 2),
    "novelty_warmup": (150, 400),
    "shift_short": (0.05, 0.2),
    "shift_long": (0.0025, 0.01),
    "slow_alpha": (0.015, 0.06),
    "profile_alpha": (0.075, 0.3),
    "fast_alpha": (0.05, 0.2),
}


def build(p: dict[str, Any]) -> Ensemble:
    cfg = EnsembleConfig(
        alarm=p["alarm"],
        rest=int(p["rest"]),
        lik_short_alpha=p["lik_short_alpha"],
        lik_decay=p["lik_decay"],
        lik_warmup=int(p["lik_warmup"]),
    )
    return Ensemble(
        0,
        cfg,
        seasonal=SeasonalBaseline(
            0,
            fast_alpha=p["fast_alpha"],
            slow_alpha=p["slow_alpha"],
            profile_alpha=p["profile_alpha"],
        ),
        shift=LevelShift(0, short_alpha=p["shift_short"], long_alpha=p["shift_long"]),
        novelty=ContextNovelty(
            0, bins=int(p["bins"]), grids=int(p["grids"]), warmup=int(p["novelty_warmup"])
        ),
    )


def score(corpus: Corpus, p: dict[str, Any]) -> float:
    s = [o["score"] for o in stream_series(build(p), corpus.series)]
    return nab_score(corpus, s, range(len(s)), "standard").normalized


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nab", type=Path, default=Path("../shared/data/nab"))
    args = ap.parse_args()
    corpus = load_corpus(args.nab)
    print(f"shipped configuration: NAB standard {score(corpus, BASE):.2f}")
    moved = []
    for name, (lo, hi) in MOVES.items():
        pair = [score(corpus, {**BASE, name: v}) for v in (lo, hi)]
        moved += pair
        print(f"  {name:<16} {lo:<10.6g} {pair[0]:6.2f}   {hi:<10.6g} {pair[1]:6.2f}")
    print(
        f"single moves: mean {np.mean(moved):.2f}, min {np.min(moved):.2f}, max {np.max(moved):.2f}"
    )


if __name__ == "__main__":
    main()
