"""The NAB cross-validation runner: faithful scoring, honest folds, event counts.

Runs on the NAB development half beside the repository (``../shared/data/nab``,
or ``PERFINTEL_NAB`` — a failure when absent) and imports its scorer from
``../shared/tools/nab_score.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from perfintel.cli import app
from perfintel.evaluation.families import FAMILIES
from perfintel.evaluation.nab_cv import (
    PROFILES,
    Corpus,
    Family,
    Runs,
    Series,
    cross_validate,
    events,
    fit,
    load_corpus,
    nab_score,
    stratified_halves,
)

ROOT = Path(__file__).resolve().parents[2]


def _nab() -> Path:
    for cand in (os.environ.get("PERFINTEL_NAB"), ROOT.parent / "shared/data/nab"):
        if cand and (Path(cand) / "data").is_dir():
            return Path(cand)
    pytest.fail("NAB development half not found beside the repository (or set PERFINTEL_NAB)")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(_nab())


def _zscore(params: Mapping[str, float], series: Sequence[Series]) -> list[np.ndarray]:
    """A toy detector with one constant: |x - running mean| / running sd, squashed."""
    out = []
    for _, x in series:
        v = pd.Series(x)
        m = v.rolling(int(params["window"]), min_periods=2).mean().shift(1)
        s = v.rolling(int(params["window"]), min_periods=2).std().shift(1)
        z = ((v - m).abs() / s).fillna(0.0).to_numpy()
        out.append(1.0 - np.exp(-z / 10.0))
    return out


TOY = Family("toy", {"window": 50}, {"window": (20, 50, 200)}, _zscore, rest=10)


def test_in_memory_scores_equal_the_scorer_run_on_result_files(
    corpus: Corpus, tmp_path: Path
) -> None:
    fam = FAMILIES["default"]
    scores = fam.run(fam.defaults, corpus.series)
    for rel, s in zip(corpus.names, scores, strict=True):
        dest = tmp_path / "results" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"anomaly_score": s}).to_csv(dest, index=False)
    nab = _nab()
    argv = [
        "--data",
        str(nab / "data"),
        "--labels",
        str(nab / "labels/combined_windows.json"),
        "--profiles",
        str(nab / "profiles.json"),
        "--results",
        str(tmp_path / "results"),
        "--prefix",
        "",
        "--json",
        str(tmp_path / "summary.json"),
    ]
    assert corpus.scorer.main(argv) == 0
    want = json.loads((tmp_path / "summary.json").read_text())["profiles"]
    everyone = range(len(corpus.names))
    for p in PROFILES:
        got = nab_score(corpus, scores, everyone, p)
        # the CSV keeps 16 significant digits: thresholds agree to that
        assert got.normalized == pytest.approx(want[p]["normalized_score"], abs=1e-9)
        assert got.threshold == pytest.approx(want[p]["threshold"], rel=1e-12)
        fixed = nab_score(corpus, scores, everyone, p, threshold=got.threshold)
        assert fixed.raw == pytest.approx(got.raw)


def test_halves_are_stratified_and_differ(corpus: Corpus) -> None:
    halves = stratified_halves(corpus.categories, 6, seed=3)
    assert len({tuple(h) for h in halves}) == 6
    for side in halves:
        assert len(side) in (15, 16)
        for cat in set(corpus.categories):
            members = [i for i, c in enumerate(corpus.categories) if c == cat]
            inside = sum(i in side for i in members)
            assert abs(2 * inside - len(members)) <= 1  # an even split of every category


def test_constants_are_chosen_on_training_files_only(corpus: Corpus) -> None:
    runs = Runs(TOY, corpus)
    train = [i for i, c in enumerate(corpus.categories) if c != "realTweets"]
    chosen = fit(runs, train)
    best = max(
        TOY.space["window"],
        key=lambda w: nab_score(corpus, runs.scores({"window": w}), train, "standard").normalized,
    )
    assert chosen.params == {"window": float(best)}
    # the thresholds are the training files' best ones, not the test files'
    scores = runs.scores(chosen.params)
    assert chosen.thresholds["standard"] == nab_score(corpus, scores, train, "standard").threshold
    assert runs.runs == 3  # one detector run per configuration, shared by every fold


def test_report_pools_categories_and_summarises_halves(corpus: Corpus) -> None:
    report = cross_validate(TOY, corpus, repeats=2, seed=1)
    folds = report["folds"]
    cats = [f for f in folds if f["kind"] == "category"]
    assert sorted(f["label"] for f in cats) == sorted(set(corpus.categories))
    assert sorted(n for f in cats for n in f["test"]) == corpus.names  # each file tested once
    halves = [f for f in folds if f["kind"] == "half"]
    assert len(halves) == 2 and all(15 <= len(f["test"]) <= 16 for f in halves)
    h = report["halves"]["out_of_fold"]["standard"]
    assert h["mean"] == pytest.approx(
        np.mean([f["out_of_fold"]["standard"] for f in halves]), abs=0.01
    )
    assert report["all_files"]["params"]["window"] in TOY.space["window"]
    loco = report["leave_one_category_out"]
    assert 0 <= loco["recall"] <= 1 and 0 <= loco["precision"] <= 1
    # without a search the defaults stay
    plain = cross_validate(TOY, corpus, repeats=1, search=False, categories=False)
    assert all(f["params"] == {"window": 50.0} for f in plain["folds"])


def test_event_counts(corpus: Corpus) -> None:
    i = corpus.names.index("realKnownCause/nyc_taxi.csv")
    t = corpus.templates[i]
    scores = [np.zeros(len(x)) for _, x in corpus.series]
    inside = np.flatnonzero(t.window >= 0) + t.probation
    outside = np.flatnonzero(t.window < 0) + t.probation
    first = int(np.flatnonzero(t.window == t.window[t.window >= 0][0])[0]) + t.probation
    scores[i][[first, first + 1, first + 2]] = 1.0  # three alarms in one window: one hit
    scores[i][outside[-30:-25]] = 1.0  # five consecutive false alarms: one within a rest of 10
    scores[i][outside[-1]] = 1.0  # and one more, far enough away
    scores[i][: t.probation] = 1.0  # probation: not scored
    ev = events(corpus, scores, [i], 0.5, rest=10)
    assert (ev.hit, ev.windows, ev.false_alarms) == (1, 5, 2)
    assert ev.precision == pytest.approx(1 / 3) and ev.recall == pytest.approx(1 / 5)
    assert len(inside) > 0
    assert events(corpus, scores, [i], 0.5, rest=0).false_alarms == 6


def test_cli_runs_the_cross_validation(tmp_path: Path) -> None:
    out = tmp_path / "cv.json"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "nab-cv",
            "--nab",
            str(_nab()),
            "--repeats",
            "1",
            "--no-search",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "leave one category out" in res.output and "fitted on all files" in res.output
    report = json.loads(out.read_text())
    assert report["family"] == "ensemble" and report["search"] is False
    assert report["all_files"]["in_sample"]["standard"] > 50
