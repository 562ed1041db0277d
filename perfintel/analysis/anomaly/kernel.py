"""The ensemble along time for one series: a compiled scalar kernel.

The vectorised models (``VectorModel.step``) advance many series by one sample
per call; for one series along time that costs numpy's per-call overhead on
one-element arrays at every sample (~0.2 ms a sample). ``run`` gives exactly
the same results — bit for bit, same outputs, same state — by running each
component over the whole batch in a numba-compiled loop
(``kernel_loops.py``), component after component, since no component depends on
a later one:

1. the seasonal baseline (its profile rate ``(1 - alpha) ** per_hour`` taken
   from numpy beforehand: the sampling interval depends on timestamps only);
2. the level-shift detector on the deseasonalised value, then numpy's
   ``log``/``log1p`` for its raw score and the likelihood input;
3. the context-novelty detector;
4. each anomaly likelihood, then numpy's ``log10``/``exp`` for its score;
5. the combination and alarm suppression.

Transcendental functions are left to numpy because numba's (the C library's)
differ from numpy's SIMD ones in the last bit for a few percent of inputs,
which would let the two paths drift apart. The state is the model's own state
bank (``VectorModel.new_state``/``load``), updated in place, so a state saved
by either path restarts the other identically.

``supports(model)`` tells whether a model can run here: an ``Ensemble`` of the
stock components (no subclasses, which could change ``step``), likelihood
histograms of at most 128 bins, and numba importable. Otherwise callers use the
vector path. ``set_enabled(False)`` (the ``anomaly.kernel`` setting) turns the kernel off.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from perfintel.analysis.anomaly.base import State, VectorModel, clean_values
from perfintel.analysis.anomaly.ensemble import COMPONENTS, Ensemble
from perfintel.analysis.anomaly.likelihood import AnomalyLikelihood
from perfintel.analysis.anomaly.novelty import ContextNovelty
from perfintel.analysis.anomaly.seasonal import SeasonalBaseline
from perfintel.analysis.anomaly.shift import LevelShift
from perfintel.errors import BadInputError

#: Output names of ``run`` (and of ``Detector.run_batch_full`` for the ensemble).
#: For a NaN sample ``score`` and the indices and flags ``which``, ``fired``,
#: ``alert``, ``model`` are 0; every other output is NaN there.
OUTPUTS = (
    "score",
    "raw",
    "anomaly_score",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "which",
    "fired",
    "alert",
    "z",
    "model",
    "sigma",
    *(f"lik_{c}" for c in COMPONENTS),
)
FLAGS = ("score", "which", "fired", "alert", "model")
MAX_LIKELIHOOD_BINS = 128

_loops: ModuleType | None = None
_tried = False


def loops() -> ModuleType | None:
    """The compiled loops module, or ``None`` when numba is not installed."""
    global _loops, _tried
    if not _tried:
        _tried = True
        try:
            from perfintel.analysis.anomaly import kernel_loops
        except ImportError:
            _loops = None
        else:
            _loops = kernel_loops
    return _loops


_switched_on = True


def set_enabled(flag: bool) -> None:
    """Turn automatic dispatch to the kernel on or off (the ``anomaly.kernel`` setting)."""
    global _switched_on
    _switched_on = flag


def enabled() -> bool:
    """Whether automatic dispatch to the kernel is on (numba present, not switched off)."""
    return _switched_on and loops() is not None


def supports(model: VectorModel) -> bool:
    """Whether ``run`` reproduces ``model`` (independent of numba being installed)."""
    if type(model) is not Ensemble:
        return False
    if (
        type(model.seasonal) is not SeasonalBaseline
        or type(model.shift) is not LevelShift
        or type(model.novelty) is not ContextNovelty
        or len(model.config.weights) != len(COMPONENTS)
        or model.novelty.depth < 1
    ):
        return False
    return all(
        type(m) is AnomalyLikelihood and m.bins <= MAX_LIKELIHOOD_BINS for m in model.liks.values()
    )


def run(
    model: VectorModel, st: State, row: int, ts: np.ndarray, values: np.ndarray
) -> dict[str, np.ndarray]:
    """Advance series ``row`` of the state bank ``st`` through ``(ts, values)``.

    Returns the outputs named in ``OUTPUTS``, one entry per sample, exactly as
    the vector path computes them; ``st`` is updated in place. NaN samples
    are skipped (state untouched); ±Inf and huge values are clipped.
    """
    lp = loops()
    if lp is None:
        raise RuntimeError("the anomaly kernel needs numba")
    if not supports(model) or not isinstance(model, Ensemble):
        raise ValueError(f"the anomaly kernel does not support {type(model).__name__}")
    ts = np.asarray(ts, dtype=np.int64)
    ok, x_all = clean_values(values)
    if ts.ndim != 1 or ts.shape != x_all.shape:
        raise BadInputError("ts and values must be 1-D arrays of equal length")
    n = len(x_all)
    res = {k: (np.zeros(n) if k in FLAGS else np.full(n, np.nan)) for k in OUTPUTS}
    pos = np.flatnonzero(ok)
    if len(pos) == 0:
        return res
    dense = len(pos) == n
    t = np.ascontiguousarray(ts if dense else ts[pos])
    x = np.ascontiguousarray(x_all if dense else x_all[pos])
    for k, v in _run_dense(lp, model, st, int(row), t, x).items():
        if dense:
            res[k] = v
        else:
            res[k][pos] = v
    return res


def _run_dense(
    lp: Any, model: Ensemble, st: State, r: int, t: np.ndarray, x: np.ndarray
) -> dict[str, np.ndarray]:
    """``run`` on finite, clipped samples only."""
    cfg = model.config
    m = len(x)
    sm, cm, vm = model.seasonal, model.shift, model.novelty
    # 1. seasonal baseline
    per_hour = lp.sampling_rate(t, r, st["s.n"], st["s.t_last"], st["s.dt"])
    pa = 1.0 - (1.0 - sm.profile_alpha) ** per_hour
    so = np.empty((9, m))
    lp.seasonal_loop(
        t,
        x,
        pa,
        r,
        st["s.n"],
        st["s.t0"],
        st["s.t_last"],
        st["s.dt"],
        st["s.fast"],
        st["s.level"],
        st["s.err"],
        st["s.day"],
        st["s.week"],
        np.array(
            [
                sm.fast_alpha,
                sm.slow_alpha,
                sm.error_alpha,
                sm.band,
                sm.prefer,
                sm.prefer**2,
                sm.clip,
            ],
            dtype=np.float64,
        ),
        so,
    )
    # 2. level shift on the deseasonalised value
    x_c = x - so[7] if cfg.deseasonalise_shift else x
    co = np.empty((3, m))
    lp.shift_loop(
        np.ascontiguousarray(x_c),
        r,
        st["c.n"],
        st["c.ms"],
        st["c.ml"],
        st["c.sd"],
        st["c.vs"],
        np.array([cm.short_alpha, cm.long_alpha, float(cm.warmup)], dtype=np.float64),
        co,
    )
    z_var = np.abs(np.log(co[1]))
    raw_c = np.where(co[2] > 0, 0.0, np.maximum(co[0], z_var))
    # 3. context novelty
    raw_v = np.empty(m)
    lp.novelty_loop(
        x,
        r,
        st["v.n"],
        st["v.lo"],
        st["v.hi"],
        st["v.hist"],
        st["v.bits"],
        np.array(
            [
                vm.bins,
                vm.depth,
                int(vm._direct),
                vm._nsym,
                vm.warmup,
                int(vm._shift),
            ],
            dtype=np.int64,
        ),
        np.ascontiguousarray(vm._offsets, dtype=np.int64),
        np.ascontiguousarray(vm._weights, dtype=np.float64),
        np.uint64(vm._salt),
        np.uint64(0x9E3779B97F4A7C15),
        raw_v,
    )
    # 4. anomaly likelihoods of the weighted components
    liks = np.zeros((len(COMPONENTS), m))
    for i, lm in model.liks.items():
        inp = np.log1p(so[4]) if i == 0 else np.log1p(raw_c) if i == 1 else raw_v
        liks[i] = _likelihood(lp, lm, st, f"l{i}.", r, np.ascontiguousarray(inp))
    # 5. combination and alarm suppression
    eo = np.empty((5, m))
    lp.combine_loop(
        liks,
        np.ascontiguousarray(model._weights[:, 0]),
        so[3],
        so[8],
        st["quiet"],
        r,
        np.array(
            [cfg.alarm, float(cfg.rest), cfg.band_alert, float(cfg.lik_warmup)], dtype=np.float64
        ),
        eo,
    )
    return {
        "score": eo[0],
        "raw": eo[1],
        "anomaly_score": so[3],
        "yhat": so[0],
        "yhat_lower": so[1],
        "yhat_upper": so[2],
        "which": eo[2],
        "fired": eo[3],
        "alert": eo[4],
        "z": so[4],
        "model": so[5],
        "sigma": so[6],
        **{f"lik_{c}": liks[i] for i, c in enumerate(COMPONENTS)},
    }


def _likelihood(
    lp: Any, lm: AnomalyLikelihood, st: State, prefix: str, r: int, x: np.ndarray
) -> np.ndarray:
    lo = np.empty((4, len(x)))
    lp.likelihood_loop(
        x,
        r,
        st[prefix + "n"],
        st[prefix + "short"],
        st[prefix + "total"],
        st[prefix + "hist"],
        np.array(
            [lm.short_alpha, lm.width, lm.bins - 1e-9, 1.0 - lm.decay, float(lm.warmup)],
            dtype=np.float64,
        ),
        np.float32(1.0 - lm.decay),
        lo,
    )
    above, total, short = lo[0], lo[1], lo[2]
    # the same numpy expressions as AnomalyLikelihood.step
    p = (np.maximum(above, 0.0) + 1.0) / (total + 1.0)
    score = np.clip(-np.log10(p) / lm._norm, 0.0, 1.0)
    score = 0.97 * score + 0.03 * (1.0 - np.exp(-np.maximum(short, 0.0)))
    return np.where(lo[3] > 0, 0.0, score)


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every loop; returns the seconds taken."""
    import time

    started = time.perf_counter()
    if loops() is not None:
        model = Ensemble()
        st = model.new_state(1)
        run(model, st, 0, np.arange(3, dtype=np.int64), np.arange(3.0))
    return time.perf_counter() - started
