"""Anomaly detection over stored history (the detect API's orchestration).

``detect`` loads every series matching a selector over ``[start - warmup, end]``
from any ``SampleReader`` (or, for any other PromQL expression such as
``rate(x[5m])``, evaluates it over that range at the step, one minute by
default: ``perfintel.performance.expression``), puts each on its grid (raw samples, or the mean per
``step`` bucket; raw data denser than one sample a minute is bucketed to one
minute unless a step is given), lets the streaming detector learn on the
warm-up part (samples before ``start``; at most ``WARMUP_MAX_POINTS`` of the
latest) and scores the rest. The detector is the one that runs online
(``perfintel.analysis.anomaly``), so the scores are the ones the online path
would have written for the same samples.

Events. With ``threshold`` (from the sensitivity, see ``threshold_of``), a
sample *seeds* an event when its score reaches the threshold, or when its value
is more than ``band_k`` half-bands off the expected value (after the detector's
own warm-up): ``band_k = EnsembleConfig.band_alert × threshold / alarm`` (2 at
medium). An event is a maximal run of consecutive samples that are outside the
expected band (``anomaly_score > 1``) or seeds, holding at least one seed; runs
at most ``MERGE_GAP`` samples apart are merged. Each event reports its start and
end, the peak score, the most deviant sample (value, expected value and band),
which detector drove it, a severity and an explanation in plain words.

Execution paths (``DetectReport.path``): ``"kernel"`` — one call of the
detector's compiled loop per series, warm-up and range together (every
per-sample output: expected value, band, component likelihoods);
``"lockstep"`` (the ``anomaly.kernel`` setting off) — all series in one call.
Both run the same code as the online detector, so they give its numbers for
the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from perfintel.analysis.anomaly import Ensemble, EnsembleConfig, StepOut, kernel
from perfintel.analysis.anomaly.flat import constant_run
from perfintel.analysis.anomaly.result import COMPONENT_LABELS, explain
from perfintel.errors import BadInputError, QueryLimitError
from perfintel.model import LabelSet, Selector
from perfintel.performance.expression import AnalysisQuery, Expression, evaluate_range
from perfintel.query.promql.engine import Series
from perfintel.query.settings import QuerySettings
from perfintel.storage.base import QueryLimits, SampleReader, SeriesSamples

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DEFAULT_RANGE_MS = DAY_MS
DEFAULT_WARMUP_MS = 7 * DAY_MS
#: Most series one request may analyse (HTTP 422 beyond).
MAX_SERIES = 100
#: Most warm-up points per series (the latest are kept).
WARMUP_MAX_POINTS = 10_000
#: Most scored points per series, and in total (HTTP 422 beyond: use a larger step).
MAX_POINTS = 20_000
MAX_TOTAL_POINTS = 500_000
#: Raw data denser than this is bucketed (mean per minute) when no step is given.
DENSE_STEP_MS = MINUTE_MS
#: Runs of flagged samples at most this many samples apart form one event.
MERGE_GAP = 2
#: Named sensitivities; a number s in (0, 1] maps to the threshold 1 − 0.8·s.
SENSITIVITIES = {"low": 0.25, "medium": 0.5, "high": 0.75}
#: Values are clipped to this magnitude before scoring (as the detector does).
_LIMIT = 1e100


def threshold_of(sensitivity: str | float) -> float:
    """Score threshold of a sensitivity: low 0.8, medium 0.6 (the detector's own
    alarm level), high 0.4; a number ``s`` in (0, 1] gives ``1 − 0.8 s``."""
    if isinstance(sensitivity, str):
        if sensitivity not in SENSITIVITIES:
            raise BadInputError(
                f"invalid parameter 'sensitivity': {sensitivity!r} (use low, medium, high "
                "or a number in (0, 1])"
            )
        s = SENSITIVITIES[sensitivity]
    else:
        s = float(sensitivity)
        if not 0.0 < s <= 1.0:
            raise BadInputError(
                f"invalid parameter 'sensitivity': {sensitivity!r} is not in (0, 1]"
            )
    return round(1.0 - 0.8 * s, 10)


@dataclass(frozen=True)
class DetectOptions:
    threshold: float = 0.6
    step_ms: int | None = None
    warmup_ms: int = DEFAULT_WARMUP_MS
    max_series: int = MAX_SERIES
    max_samples: int | None = None
    #: "auto" (the kernel when it can run, else lockstep), "kernel" or "lockstep"
    engine: str = "auto"


@dataclass
class AnomalyEvent:
    start_ms: int
    end_ms: int
    points: int
    peak_score: float
    peak_ms: int
    peak_value: float
    expected: float
    expected_lower: float
    expected_upper: float
    detector: str
    severity: str
    explanation: str


@dataclass
class DetectedSeries:
    labels: LabelSet
    step_ms: int | None  # None: raw samples
    warmup_points: int
    timestamps: np.ndarray
    values: np.ndarray
    score: np.ndarray
    anomaly_score: np.ndarray
    yhat: np.ndarray
    yhat_lower: np.ndarray
    yhat_upper: np.ndarray
    events: list[AnomalyEvent] = field(default_factory=list)


@dataclass
class DetectReport:
    start_ms: int
    end_ms: int
    threshold: float
    series: list[DetectedSeries]
    path: str  # which execution path scored the series: "kernel" or "lockstep"


@dataclass
class _Prepared:
    labels: LabelSet
    step_ms: int | None
    warm_ts: np.ndarray
    warm_x: np.ndarray
    ts: np.ndarray
    x: np.ndarray


@dataclass
class _Outputs:
    """Per-sample model outputs of the scored range, one row per series (padded)."""

    score: np.ndarray
    anomaly_score: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    which: np.ndarray  # int8: component with the largest weighted likelihood
    model: np.ndarray  # int8: seasonal model in use (0 level, 1 daily, 2 weekly)
    sigma: np.ndarray
    grid: np.ndarray  # the series' grid step (the seasonal baseline's resolution floor)


def detect(
    store: SampleReader,
    selector: AnalysisQuery,
    start_ms: int,
    end_ms: int,
    options: DetectOptions | None = None,
    settings: QuerySettings | None = None,
) -> DetectReport:
    """Score every series of ``selector`` over ``[start_ms, end_ms]`` and find events.

    ``selector`` is a series selector (raw samples) or any PromQL expression,
    evaluated within the limits of ``settings`` at the step (default one minute)
    from ``start_ms - warmup`` (``perfintel.performance.expression``)."""
    opt = options or DetectOptions()
    if end_ms < start_ms:
        raise BadInputError("invalid parameter 'end': end is before start")
    if opt.step_ms is not None and opt.step_ms <= 0:
        raise BadInputError("invalid parameter 'step': must be positive")
    evaluated = isinstance(selector, Expression)
    raw: Sequence[SeriesSamples | Series]
    if isinstance(selector, Expression):
        step = opt.step_ms or DENSE_STEP_MS
        opt = replace(opt, step_ms=step)
        qs = settings or QuerySettings()
        if opt.max_samples is not None:
            qs = replace(qs, max_samples=min(qs.max_samples, opt.max_samples))
        raw = evaluate_range(
            store,
            selector,
            start_ms - opt.warmup_ms,
            end_ms,
            step,
            settings=qs,
            max_series=opt.max_series,
        )
    else:
        raw = _select(store, selector, start_ms - opt.warmup_ms, end_ms, opt)
    prepared = [
        p
        for s in raw
        if (p := _prepare(s.labels, s.timestamps, s.values, start_ms, opt, bucket=not evaluated))
    ]
    total = sum(len(p.ts) for p in prepared)
    if total > MAX_TOTAL_POINTS:
        raise QueryLimitError(
            f"{total} points to score across {len(prepared)} series (limit {MAX_TOTAL_POINTS}); "
            "use a larger step, a shorter range or a narrower selector"
        )
    model = Ensemble()
    out = _new_outputs(prepared)
    if opt.engine not in ("auto", "kernel", "lockstep"):
        raise BadInputError(f"unknown engine {opt.engine!r}")
    per_series = opt.engine == "kernel" or (opt.engine == "auto" and kernel.enabled())
    _score(model, prepared, out, per_series)
    path = "kernel" if per_series else "lockstep"
    cfg = model.config
    result = []
    for i, p in enumerate(prepared):
        n = len(p.ts)
        d = DetectedSeries(
            labels=p.labels,
            step_ms=p.step_ms,
            warmup_points=len(p.warm_ts),
            timestamps=p.ts,
            values=p.x,
            score=out.score[i, :n],
            anomaly_score=out.anomaly_score[i, :n],
            yhat=out.yhat[i, :n],
            yhat_lower=out.lower[i, :n],
            yhat_upper=out.upper[i, :n],
        )
        d.events = _events(d, out, i, opt.threshold, cfg, p.warm_ts, p.warm_x)
        result.append(d)
    result.sort(key=lambda d: d.labels)
    return DetectReport(start_ms, end_ms, opt.threshold, result, path)


# -- data preparation ---------------------------------------------------------------


def _select(
    store: SampleReader, selector: Selector, start_ms: int, end_ms: int, opt: DetectOptions
) -> list[SeriesSamples]:
    limits = QueryLimits(max_series=opt.max_series, max_samples=opt.max_samples)
    try:
        return store.select(selector, start_ms, end_ms, limits=limits)
    except QueryLimitError as exc:
        found = store.series([selector], start_ms, end_ms, limit=opt.max_series + 1)
        if len(found) > opt.max_series:
            raise QueryLimitError(
                f"selector {selector} matches more than {opt.max_series} series; anomaly "
                f"detection analyses at most {opt.max_series} per request (narrow the selector)"
            ) from exc
        raise


def bucket_means(ts: np.ndarray, x: np.ndarray, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean per ``step_ms`` bucket of time-ordered samples (buckets start at multiples of
    the step): ``(bucket starts, means)``."""
    if not len(ts):
        return ts, x
    b = ts - np.mod(ts, step_ms)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    counts = np.diff(np.r_[starts, len(ts)])
    return b[starts], np.add.reduceat(x, starts) / counts


def _prepare(
    labels: LabelSet,
    ts: np.ndarray,
    values: np.ndarray,
    start_ms: int,
    opt: DetectOptions,
    *,
    bucket: bool = True,
) -> _Prepared | None:
    """Finite values, bucketed to the step unless ``bucket`` is off (an evaluated
    expression: already one value per step, at its evaluation instants)."""
    ts = np.asarray(ts, dtype=np.int64)
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)  # NaN, staleness markers and ±Inf cannot be scored or rendered
    ts, x = ts[ok], np.clip(x[ok], -_LIMIT, _LIMIT)
    cut = int(np.searchsorted(ts, start_ms, "left"))
    if cut == len(ts):
        return None  # no data in the range
    step = opt.step_ms
    if step is None:
        gaps = np.diff(ts[cut:])
        if len(gaps) and float(np.median(gaps)) < DENSE_STEP_MS:
            step = DENSE_STEP_MS
    if step is not None and bucket:
        ts, x = bucket_means(ts, x, step)
        cut = int(np.searchsorted(ts, start_ms, "left"))
    if len(ts) - cut > MAX_POINTS:
        raise QueryLimitError(
            f"{len(ts) - cut} points to score for one series (limit {MAX_POINTS}); "
            "use a larger step or a shorter range"
        )
    w0 = max(0, cut - WARMUP_MAX_POINTS)
    return _Prepared(labels, step, ts[w0:cut], x[w0:cut], ts[cut:], x[cut:])


# -- scoring ------------------------------------------------------------------------


def _new_outputs(series: list[_Prepared]) -> _Outputs:
    shape = (len(series), max((len(p.ts) for p in series), default=0))
    return _Outputs(
        score=np.zeros(shape),
        anomaly_score=np.full(shape, np.nan),
        yhat=np.full(shape, np.nan),
        lower=np.full(shape, np.nan),
        upper=np.full(shape, np.nan),
        which=np.zeros(shape, np.int8),
        model=np.zeros(shape, np.int8),
        sigma=np.full(shape, np.nan),
        grid=np.full(shape, np.nan),
    )


def _score(model: Ensemble, series: list[_Prepared], out: _Outputs, per_series: bool) -> None:
    """Warm up on and score every series: one detector call per series, or all series in
    one call (rows interleaved by series); the same compiled code either way."""
    if not series:
        return
    warm = [len(p.warm_ts) for p in series]
    lengths = [w + len(p.ts) for w, p in zip(warm, series, strict=True)]
    ts = [np.concatenate([p.warm_ts, p.ts]) for p in series]
    xs = [np.concatenate([p.warm_x, p.x]) for p in series]
    if per_series:
        fulls = []
        for t, x in zip(ts, xs, strict=True):
            fulls.append(model.run(model.new_state(1), np.zeros(len(t), dtype=np.int64), t, x))
    else:
        rows = np.repeat(np.arange(len(series), dtype=np.int64), lengths)
        joined = model.run(
            model.new_state(len(series)), rows, np.concatenate(ts), np.concatenate(xs)
        )
        bounds = np.cumsum([0, *lengths])
        fulls = [
            {k: v[bounds[i] : bounds[i + 1]] for k, v in joined.items()} for i in range(len(series))
        ]
    weights = np.asarray(model.config.weights)[:, None]
    for i, full in enumerate(fulls):
        sl = slice(warm[i], None)
        n = len(series[i].ts)
        out.score[i, :n] = full["score"][sl]
        out.anomaly_score[i, :n] = full["anomaly_score"][sl]
        out.yhat[i, :n] = full["yhat"][sl]
        out.lower[i, :n] = full["yhat_lower"][sl]
        out.upper[i, :n] = full["yhat_upper"][sl]
        out.model[i, :n] = full["model"][sl]
        out.sigma[i, :n] = full["sigma"][sl]
        out.grid[i, :n] = full["grid"][sl]
        liks = np.vstack([full[f"lik_{name}"][sl] for name, _ in COMPONENT_LABELS]) * weights
        out.which[i, :n] = np.where(out.score[i, :n] > 0, np.argmax(liks, axis=0), 0)


# -- events -------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    if not mask.any():
        return []
    m = mask.astype(np.int8)
    d = np.diff(np.r_[0, m, 0])
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1, strict=True))


def _events(
    d: DetectedSeries,
    out: _Outputs,
    i: int,
    threshold: float,
    cfg: EnsembleConfig,
    warm_ts: np.ndarray,
    warm_x: np.ndarray,
) -> list[AnomalyEvent]:
    n = len(d.timestamps)
    if n == 0:
        return []
    # the warm-up too: how long a series had been constant before a change
    history_ts = np.concatenate([warm_ts, d.timestamps])
    history_x = np.concatenate([warm_x, d.values])
    a = np.nan_to_num(d.anomaly_score, nan=0.0)
    seen = d.warmup_points + np.arange(1, n + 1)
    band_k = cfg.band_alert * threshold / cfg.alarm
    seed = (d.score >= threshold) | ((seen > cfg.lik_warmup) & (a >= band_k))
    runs = [(s, e) for s, e in _runs(seed | (a > 1.0)) if seed[s : e + 1].any()]
    merged: list[tuple[int, int]] = []
    for s, e in runs:
        if merged and s - merged[-1][1] - 1 <= MERGE_GAP:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    events = []
    for s, e in merged:
        sl = slice(s, e + 1)
        k_score = s + int(np.argmax(d.score[sl]))
        k_peak = s + int(np.argmax(a[sl]))
        peak_score = float(d.score[k_score])
        which = int(out.which[i, k_score]) if peak_score > 0 else 0
        step = StepOut(
            score=np.array([peak_score]),
            raw=np.array([peak_score]),
            yhat=d.yhat[k_peak : k_peak + 1],
            lower=d.yhat_lower[k_peak : k_peak + 1],
            upper=d.yhat_upper[k_peak : k_peak + 1],
            anomaly_score=d.anomaly_score[k_peak : k_peak + 1],
            extra={
                "which": np.array([float(which)]),
                "alert": np.array([1.0]),
                "model": np.array([float(out.model[i, k_peak])]),
                "sigma": out.sigma[i, k_peak : k_peak + 1],
                "grid": out.grid[i, k_peak : k_peak + 1],
            },
        )
        res = explain(
            int(d.timestamps[k_peak]),
            float(d.values[k_peak]),
            step,
            cfg.alarm,
            constant=constant_run(history_ts, history_x, len(warm_ts) + s),
        )
        # an event found at a high sensitivity may sit below the detector's own levels
        severity = res.severity if res.severity != "none" else "low"
        text = res.explanation.replace("severity none.", f"severity {severity}.")
        events.append(
            AnomalyEvent(
                start_ms=int(d.timestamps[s]),
                end_ms=int(d.timestamps[e]),
                points=e - s + 1,
                peak_score=peak_score,
                peak_ms=int(d.timestamps[k_peak]),
                peak_value=float(d.values[k_peak]),
                expected=res.yhat,
                expected_lower=res.yhat_lower,
                expected_upper=res.yhat_upper,
                detector=res.detector,
                severity=severity,
                explanation=text,
            )
        )
    return events
