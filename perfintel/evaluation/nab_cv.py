"""Cross-validated NAB evaluation: how well a detector's fitted constants carry over.

A detector *family* names the constants that are chosen by looking at scores,
a short list of candidate values for each, and how to run the detector with a
given choice (``Family``). ``cross_validate`` then measures, on the NAB
development half, the score of the *procedure* "choose the constants, then
score", not of one lucky choice:

* every fold splits the files into training and test files; the constants are
  chosen by a coordinate search over the candidate lists that maximises NAB
  standard on the training files only, and the alarm threshold of every
  profile (NAB's optimiser, itself a fitted constant) is chosen on the
  training files too;
* the test files are then scored with those constants and thresholds: the
  *out-of-fold* score; the training files' score is the *in-fold* score; the
  difference is the generalisation gap;
* folds: leave one category out (the seven test parts cover the corpus once:
  their raw scores are pooled into one out-of-fold score over all files) and
  ``repeats`` random halves stratified by category (like the split into the
  development and the held-out half: 15 files to fit, 16 to test; mean and
  spread over repeats);
* finally the same procedure on all files gives the configuration to ship and
  its in-sample score.

Scoring is NAB's, through the shared scorer (``../shared/tools/nab_score.py``,
imported, not copied): its per-file row values, window ids and probation
(``load_file``), its exact threshold sweep (``sweep``), its normalisation.
Event-level precision and recall are reported beside it: an alarm (a scored row
at or above the threshold) inside a labelled window is one true positive per
window, each alarm outside every window is a false positive (alarms closer
than ``rest`` rows to the previous counted one are one alarm).

Detector runs are cached per configuration (one run serves every fold), so a
whole cross-validation runs in one process in minutes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from perfintel.errors import BadInputError
from perfintel.evaluation.nab import read_series

Params = dict[str, float]
Series = tuple[np.ndarray, np.ndarray]
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class Family:
    """A detector and its constants that are chosen by looking at scores.

    ``space`` lists, per constant, the short list of candidate values the
    search may choose from (searched in this order); ``defaults`` is where the
    search starts; ``run`` scores each series (one ``score`` array per series,
    same length) for a choice of constants.
    """

    name: str
    defaults: Mapping[str, float]
    space: Mapping[str, Sequence[float]]
    run: Callable[[Mapping[str, float], Sequence[Series]], list[np.ndarray]]
    #: rows after an alarm that count as the same alarm (event-level figures)
    rest: int = 0


def load_scorer(path: Path) -> ModuleType:
    """Import the shared NAB scorer from its file."""
    if not Path(path).is_file():
        raise BadInputError(f"NAB scorer not found at {path}")
    spec = importlib.util.spec_from_file_location("nab_score", path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"cannot import the NAB scorer at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nab_score", module)
    spec.loader.exec_module(module)
    return module


@dataclass
class Corpus:
    """The labelled files, their series and the scorer's per-file templates."""

    names: list[str]
    categories: list[str]
    series: list[Series]
    templates: list[Any]  # the scorer's ScoredFile per file (its score replaced per run)
    profiles: dict[str, dict[str, float]]
    scorer: ModuleType

    @property
    def probation(self) -> list[int]:
        return [int(t.probation) for t in self.templates]


def load_corpus(nab_dir: Path, scorer_path: Path | None = None) -> Corpus:
    """``nab_dir`` holds ``data/``, ``labels/combined_windows.json`` and ``profiles.json``."""
    nab_dir = Path(nab_dir)
    scorer = load_scorer(scorer_path or nab_dir.parent.parent / "tools" / "nab_score.py")
    labels_path = nab_dir / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise BadInputError(f"no labels/combined_windows.json under {nab_dir}")
    labels = json.loads(labels_path.read_text())
    profiles_path = nab_dir / "profiles.json"
    profiles = scorer.read_profiles(str(profiles_path) if profiles_path.is_file() else None)
    names = sorted(labels)
    data_dir = nab_dir / "data"
    series = []
    for rel in names:
        _, ts, values = read_series(data_dir / rel)
        series.append((ts, values))
    templates = []
    with tempfile.TemporaryDirectory() as tmp:
        # the scorer builds each file's row values and windows from a results file
        next_window = 0
        for rel, (ts, _) in zip(names, series, strict=True):
            dest = Path(tmp) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("anomaly_score\n" + "0\n" * len(ts))
            f = scorer.load_file(
                data_dir,
                Path(tmp),
                rel,
                labels[rel],
                "",
                next_window,
                scorer.PROBATION_FRACTION,
                False,
            )
            next_window += f.windows
            templates.append(f)
    categories = [rel.split("/", 1)[0] for rel in names]
    return Corpus(names, categories, series, templates, profiles, scorer)


# -- scoring ------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """NAB score of a set of files for one profile."""

    raw: float
    null: float
    perfect: float
    threshold: float

    @property
    def normalized(self) -> float:
        if self.perfect == self.null:
            return float("nan")
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)

    def __add__(self, other: Score) -> Score:
        return Score(
            self.raw + other.raw, self.null + other.null, self.perfect + other.perfect, np.nan
        )


def _files(corpus: Corpus, scores: Sequence[np.ndarray], idx: Sequence[int]) -> list[Any]:
    out = []
    for i in idx:
        t = corpus.templates[i]
        out.append(dataclasses.replace(t, score=np.asarray(scores[i], dtype=float)[t.probation :]))
    return out


def nab_score(
    corpus: Corpus,
    scores: Sequence[np.ndarray],
    idx: Sequence[int],
    profile: str,
    threshold: float | None = None,
) -> Score:
    """The scorer's corpus score of files ``idx``: at its best threshold, or at ``threshold``."""
    weights = corpus.profiles[profile]
    files = _files(corpus, scores, idx)
    thresholds, totals = corpus.scorer.sweep(files, weights)
    if threshold is None:
        best = int(np.argmax(totals))  # ties: the highest threshold, as the scorer does
        thr, raw = float(thresholds[best]), float(totals[best])
    else:
        thr = float(threshold)
        raw = float(totals[np.flatnonzero(thresholds >= thr)[-1]])
    null = -weights["fnWeight"] * sum(f.scorable_windows for f in files)
    perfect = weights["tpWeight"] * sum(f.windows for f in files)
    return Score(raw, null, perfect, thr)


@dataclass(frozen=True)
class Events:
    """Event-level counts: windows hit (one true positive each), windows, false alarms."""

    hit: int = 0
    windows: int = 0
    false_alarms: int = 0

    @property
    def precision(self) -> float:
        n = self.hit + self.false_alarms
        return self.hit / n if n else float("nan")

    @property
    def recall(self) -> float:
        return self.hit / self.windows if self.windows else float("nan")

    def __add__(self, other: Events) -> Events:
        return Events(
            self.hit + other.hit,
            self.windows + other.windows,
            self.false_alarms + other.false_alarms,
        )


def events(
    corpus: Corpus, scores: Sequence[np.ndarray], idx: Sequence[int], threshold: float, rest: int
) -> Events:
    """Event-level counts over the scored rows (after probation) of files ``idx``."""
    total = Events()
    for f in _files(corpus, scores, idx):
        alarm = np.flatnonzero(f.score >= threshold)
        window = f.window[alarm]
        hit = int(np.unique(window[window >= 0]).size)
        false_alarms = 0
        last = -(10**12)
        for row in alarm[window < 0]:
            if row - last > rest:
                false_alarms += 1
                last = row
        total = total + Events(hit, int(f.scorable_windows), false_alarms)
    return total


# -- fitting ------------------------------------------------------------------------


def _key(params: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in params.items()))


class Runs:
    """Detector outputs per configuration, computed once (LRU-bounded) for every fold."""

    def __init__(self, family: Family, corpus: Corpus, keep: int = 160) -> None:
        self.family = family
        self.corpus = corpus
        self.keep = keep
        self.cache: OrderedDict[tuple[tuple[str, float], ...], list[np.ndarray]] = OrderedDict()
        self.runs = 0
        self.seconds = 0.0

    def scores(self, params: Mapping[str, float]) -> list[np.ndarray]:
        key = _key(params)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        started = time.perf_counter()
        out = self.family.run(params, self.corpus.series)
        self.seconds += time.perf_counter() - started
        self.runs += 1
        self.cache[key] = out
        while len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return out


@dataclass
class Fit:
    params: Params
    thresholds: dict[str, float]
    in_fold: dict[str, Score]
    evaluations: int


def fit(
    runs: Runs, idx: Sequence[int], search: bool = True, passes: int = 2, margin: float = 0.0
) -> Fit:
    """Choose the constants (coordinate search, NAB standard) and thresholds on files ``idx``.

    A candidate replaces the current value only if it raises the normalised
    standard score on ``idx`` by more than ``margin`` points (a guard against
    chasing noise: on a dozen files single windows move the score by points).
    """
    family = runs.family
    current: Params = {k: float(v) for k, v in family.defaults.items()}

    def value(params: Params) -> float:
        return nab_score(runs.corpus, runs.scores(params), idx, "standard").normalized

    best = value(current)
    evaluations = 1
    for _ in range(passes if search else 0):
        changed = False
        for name, candidates in family.space.items():
            pick = current[name]
            for c in candidates:
                if float(c) == current[name]:
                    continue
                v = value({**current, name: float(c)})
                evaluations += 1
                if v > best + margin + 1e-9:
                    best, pick = v, float(c)
            if pick != current[name]:
                current[name] = pick
                changed = True
        if not changed:
            break
    scores = runs.scores(current)
    in_fold = {p: nab_score(runs.corpus, scores, idx, p) for p in PROFILES}
    return Fit(current, {p: s.threshold for p, s in in_fold.items()}, in_fold, evaluations)


@dataclass
class Fold:
    kind: str  # "category", "half" or "all"
    label: str
    train: list[int]
    test: list[int]
    fit: Fit
    out_of_fold: dict[str, Score] = field(default_factory=dict)
    #: the test files at their own best threshold (how a held-out half is scored by NAB)
    test_threshold: dict[str, Score] = field(default_factory=dict)
    events: Events = field(default_factory=Events)


def _assess(runs: Runs, fold: Fold) -> None:
    scores = runs.scores(fold.fit.params)
    if not fold.test:
        return
    for p in PROFILES:
        fold.out_of_fold[p] = nab_score(runs.corpus, scores, fold.test, p, fold.fit.thresholds[p])
        fold.test_threshold[p] = nab_score(runs.corpus, scores, fold.test, p)
    fold.events = events(
        runs.corpus, scores, fold.test, fold.fit.thresholds["standard"], runs.family.rest
    )


def stratified_halves(categories: Sequence[str], repeats: int, seed: int) -> list[list[int]]:
    """``repeats`` random halves (the fitting side), every category split as evenly as it goes."""
    out = []
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        side: list[int] = []
        flip = int(rng.integers(2))
        for cat in sorted(set(categories)):
            members = [i for i, c in enumerate(categories) if c == cat]
            rng.shuffle(members)
            side.extend(members[flip::2])
            flip ^= len(members) % 2  # odd categories alternate which side gets the extra file
        out.append(sorted(side))
    return out


def cross_validate(
    family: Family,
    corpus: Corpus,
    repeats: int = 10,
    seed: int = 0,
    search: bool = True,
    categories: bool = True,
    margin: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Leave-one-category-out and repeated-halves cross-validation; a JSON-ready report."""
    started = time.perf_counter()
    runs = Runs(family, corpus)
    everyone = list(range(len(corpus.names)))
    plan: list[tuple[str, str, list[int]]] = []
    if categories:
        for cat in sorted(set(corpus.categories)):
            plan.append(("category", cat, [i for i in everyone if corpus.categories[i] != cat]))
    for r, side in enumerate(stratified_halves(corpus.categories, repeats, seed)):
        plan.append(("half", f"half {r}", side))
    plan.append(("all", "all files", everyone))
    folds = []
    for kind, label, train in plan:
        test = [i for i in everyone if i not in set(train)]
        fold = Fold(kind, label, train, test, fit(runs, train, search=search, margin=margin))
        _assess(runs, fold)
        folds.append(fold)
        if progress is not None:
            progress(_fold_line(fold))
    report = _summary(family, corpus, folds)
    report["search"] = search
    report["margin"] = margin
    report["detector_runs"] = runs.runs
    report["detector_seconds"] = round(runs.seconds, 1)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


# -- reporting ------------------------------------------------------------------------


def _norm(scores: Mapping[str, Score]) -> dict[str, float]:
    return {p: round(s.normalized, 2) for p, s in scores.items()}


def _fold_line(f: Fold) -> str:
    ins = f.fit.in_fold["standard"].normalized
    if f.out_of_fold:
        oof = f.out_of_fold["standard"]
        tail = (
            f"out-of-fold {oof.normalized:6.2f}" if oof.perfect != oof.null else "out-of-fold   n/a"
        )
        tail += f" (raw {oof.raw:+7.2f})  P {f.events.precision:.2f} R {f.events.recall:.2f}"
    else:
        tail = ""
    return f"{f.label:<24} in-fold {ins:6.2f}  {tail}  [{f.fit.evaluations} evaluations]"


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    sd = float(a.std(ddof=1)) if len(a) > 1 else float("nan")
    return {"mean": round(float(a.mean()), 2), "sd": round(sd, 2)}


def _summary(family: Family, corpus: Corpus, folds: list[Fold]) -> dict[str, Any]:
    out: dict[str, Any] = {"family": family.name, "files": len(corpus.names)}
    cats = [f for f in folds if f.kind == "category"]
    if cats:
        pooled: dict[str, Score] = {}
        for p in PROFILES:
            total = cats[0].out_of_fold[p]
            for f in cats[1:]:
                total = total + f.out_of_fold[p]
            pooled[p] = total
        ev = sum((f.events for f in cats), Events())
        out["leave_one_category_out"] = {
            "out_of_fold": _norm(pooled),
            "in_fold_mean": {
                p: round(float(np.mean([f.fit.in_fold[p].normalized for f in cats])), 2)
                for p in PROFILES
            },
            "precision": round(ev.precision, 3),
            "recall": round(ev.recall, 3),
            "events": dataclasses.asdict(ev),
        }
    halves = [f for f in folds if f.kind == "half"]
    if halves:
        ev = sum((f.events for f in halves), Events())
        out["halves"] = {
            "repeats": len(halves),
            "out_of_fold": {
                p: _mean_sd([f.out_of_fold[p].normalized for f in halves]) for p in PROFILES
            },
            "in_fold": {
                p: _mean_sd([f.fit.in_fold[p].normalized for f in halves]) for p in PROFILES
            },
            "gap": {
                p: _mean_sd(
                    [f.fit.in_fold[p].normalized - f.out_of_fold[p].normalized for f in halves]
                )
                for p in PROFILES
            },
            "test_threshold": {
                p: _mean_sd([f.test_threshold[p].normalized for f in halves]) for p in PROFILES
            },
            "precision": round(ev.precision, 3),
            "recall": round(ev.recall, 3),
            "events": dataclasses.asdict(ev),
        }
    every = [f for f in folds if f.kind == "all"]
    if every:
        f = every[0]
        out["all_files"] = {
            "params": f.fit.params,
            "thresholds": f.fit.thresholds,
            "in_sample": _norm(f.fit.in_fold),
        }
    out["folds"] = [
        {
            "kind": f.kind,
            "label": f.label,
            "test": [corpus.names[i] for i in f.test],
            "params": f.fit.params,
            "thresholds": f.fit.thresholds,
            "in_fold": _norm(f.fit.in_fold),
            "out_of_fold": _norm(f.out_of_fold),
            "test_threshold": _norm(f.test_threshold),
            "events": dataclasses.asdict(f.events),
            "evaluations": f.fit.evaluations,
        }
        for f in folds
    ]
    return out


def format_report(report: Mapping[str, Any]) -> str:
    """The headline figures of a ``cross_validate`` report, as text."""
    lines = [
        f"detector family {report['family']}, {report['files']} files, in-fold search "
        + (
            f"with a {report['margin']}-point margin"
            if report["search"]
            else "off (thresholds only)"
        )
    ]
    short = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}
    if "halves" in report:
        h = report["halves"]
        lines.append(f"repeated halves ({h['repeats']} repeats, fit on one half, test the other):")
        for p in PROFILES:
            o, i, g, t = h["out_of_fold"][p], h["in_fold"][p], h["gap"][p], h["test_threshold"][p]
            lines.append(
                f"  {short[p]:<9} out-of-fold {o['mean']:6.2f} ± {o['sd']:4.2f}   in-fold "
                f"{i['mean']:6.2f} ± {i['sd']:4.2f}   gap {g['mean']:5.2f} ± {g['sd']:4.2f}   "
                f"(test at its own threshold {t['mean']:6.2f})"
            )
        lines.append(
            f"  events out-of-fold: precision {h['precision']:.3f}, recall {h['recall']:.3f}"
        )
    if "leave_one_category_out" in report:
        c = report["leave_one_category_out"]
        lines.append("leave one category out (pooled over the 7 held-out categories):")
        for p in PROFILES:
            lines.append(
                f"  {short[p]:<9} out-of-fold {c['out_of_fold'][p]:6.2f}   in-fold mean "
                f"{c['in_fold_mean'][p]:6.2f}"
            )
        lines.append(
            f"  events out-of-fold: precision {c['precision']:.3f}, recall {c['recall']:.3f}"
        )
    if "all_files" in report:
        a = report["all_files"]
        ins = ", ".join(f"{short[p]} {a['in_sample'][p]:.2f}" for p in PROFILES)
        lines.append(f"fitted on all files (the configuration to ship): in-sample {ins}")
        lines.append(f"  constants: {json.dumps(a['params'])}")
        lines.append(
            f"  thresholds: {json.dumps({k: round(v, 4) for k, v in a['thresholds'].items()})}"
        )
    lines.append(
        f"{report['detector_runs']} detector runs ({report['detector_seconds']} s), "
        f"{report['seconds']} s in all"
    )
    return "\n".join(lines)
