"""Per-series detectors: one series' state and the batch paths, over any ``VectorModel``.

``Detector`` wraps a ``VectorModel`` with the state of a single series:
``update``/``update_result`` one sample at a time, ``score_batch``/``run_batch_full``
over arrays (dispatched to the compiled kernel when it reproduces the model
exactly), and ``get_state``/``from_state``. ``AnomalyDetector`` is the default:
the ensemble.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly import kernel
from perfintel.analysis.anomaly.base import (
    VALUE_LIMIT,
    StepOut,
    VectorModel,
    model_from_state,
)
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.analysis.anomaly.result import AnomalyResult, explain
from perfintel.errors import BadInputError

_FLAGS = ("which", "fired", "alert", "model")
_MAIN = ("score", "raw", "anomaly_score", "yhat", "yhat_lower", "yhat_upper")


class Detector:
    """One series, one model: the per-series front end of a ``VectorModel``.

    >>> from perfintel.analysis.anomaly import SeasonalBaseline
    >>> det = Detector(SeasonalBaseline())
    >>> s = det.update(0, 1.0)
    >>> 0.0 <= s <= 1.0
    True
    """

    def __init__(self, model: VectorModel) -> None:
        self.model = model
        self._st = model.new_state(1)
        self._rows = np.zeros(1, dtype=np.int64)

    def step_out(self, ts_ms: int, value: float) -> StepOut | None:
        """Advance by one sample; ``None`` for NaN (state untouched)."""
        v = float(value)
        if v != v:
            return None
        x = np.array([min(max(v, -VALUE_LIMIT), VALUE_LIMIT)])
        return self.model.step(self._st, self._rows, np.array([int(ts_ms)], dtype=np.int64), x)

    def update(self, ts_ms: int, value: float) -> float:
        out = self.step_out(ts_ms, value)
        return 0.0 if out is None else float(out.score[0])

    def score_batch(self, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of ``update`` applied to each sample in order (identical values)."""
        return self.run_batch_full(ts, values)["score"]

    def run_batch_full(
        self, ts: np.ndarray, values: np.ndarray, engine: str = "auto"
    ) -> dict[str, np.ndarray]:
        """Advance through ``(ts, values)``; every output per sample, as arrays.

        Keys: ``score``, ``raw``, ``anomaly_score``, ``yhat``, ``yhat_lower``,
        ``yhat_upper`` and the model's ``StepOut.extra`` keys (for the ensemble
        ``which``, ``fired``, ``alert``, ``z``, ``model``, ``sigma``,
        ``lik_<component>``). A NaN sample has ``score``, ``which``, ``fired``,
        ``alert`` and ``model`` 0 and NaN elsewhere. Identical to
        repeated ``step_out`` calls whichever ``engine`` runs it: ``"kernel"``
        (the compiled scalar kernel, ``kernel.py``: the default ensemble on one
        series, ~1000× faster), ``"vector"`` (the model's ``step`` per sample) or
        ``"auto"`` (the kernel when it supports the model and numba is
        installed).
        """
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if ts.shape != values.shape or ts.ndim != 1:
            raise BadInputError("ts and values must be 1-D arrays of equal length")
        if engine not in ("auto", "kernel", "vector"):
            raise ValueError(f"unknown engine {engine!r}")
        if engine != "vector":
            usable = kernel.supports(self.model) and (
                kernel.loops() is not None if engine == "kernel" else kernel.enabled()
            )
            if usable:
                return kernel.run(self.model, self._st, 0, ts, values)
            if engine == "kernel":
                raise BadInputError(
                    f"the compiled kernel cannot run {type(self.model).__name__} here"
                )
        return self._run_batch_vector(ts, values)

    def _run_batch_vector(self, ts: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
        n = len(values)
        cols: dict[str, np.ndarray] = {"score": np.zeros(n)}
        for k in ("raw", "anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
            cols[k] = np.full(n, np.nan)
        for i in range(n):
            out = self.step_out(int(ts[i]), float(values[i]))
            if out is None:
                continue
            cols["score"][i] = out.score[0]
            cols["raw"][i] = out.raw[0]
            for k, a in (
                ("anomaly_score", out.anomaly_score),
                ("yhat", out.yhat),
                ("yhat_lower", out.lower),
                ("yhat_upper", out.upper),
            ):
                if a is not None:
                    cols[k][i] = a[0]
            for k, a in out.extra.items():
                if k not in cols:
                    cols[k] = np.zeros(n) if k in _FLAGS else np.full(n, np.nan)
                cols[k][i] = a[0]
        if not np.any(values == values):  # no finite sample: learn the names on a scratch state
            probe = self.model.step(
                self.model.new_state(1), self._rows, np.zeros(1, np.int64), np.zeros(1)
            )
            for k in probe.extra:
                cols[k] = np.zeros(n) if k in _FLAGS else np.full(n, np.nan)
        return cols

    def results_batch(self, ts: np.ndarray, values: np.ndarray) -> list[AnomalyResult]:
        """``update_result`` for each sample in order (same results), via ``run_batch_full``."""

        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        cols = self.run_batch_full(ts, values)
        alarm = float(getattr(getattr(self.model, "config", None), "alarm", 0.5))
        out = StepOut(
            score=cols["score"],
            raw=cols["raw"],
            yhat=cols["yhat"],
            lower=cols["yhat_lower"],
            upper=cols["yhat_upper"],
            anomaly_score=cols["anomaly_score"],
            extra={k: v for k, v in cols.items() if k not in _MAIN},
        )
        return [
            explain(int(ts[i]), float(values[i]), None if values[i] != values[i] else out, alarm, i)
            for i in range(len(values))
        ]

    def update_result(self, ts_ms: int, value: float) -> AnomalyResult:
        """Advance by one sample and explain it (expected value, band, which detector fired)."""

        out = self.step_out(ts_ms, value)
        alarm = float(getattr(getattr(self.model, "config", None), "alarm", 0.5))
        return explain(int(ts_ms), float(value), out, alarm)

    def get_state(self) -> bytes:
        return self.model.dump(self._st, 0)

    @classmethod
    def from_state(cls, data: bytes, model: VectorModel | None = None) -> Detector:
        """Restore a detector; ``model`` defaults to the registered default for the state's name."""
        if model is None:
            model = model_from_state(data)
        det = cls(model)
        det._st = model.load(data)
        return det


class AnomalyDetector(Detector):
    """The default per-series detector: the ensemble, with ``update_result`` explanations.

    >>> det = AnomalyDetector()
    >>> scores = [det.update(i * 300_000, 10.0 + (i % 7)) for i in range(50)]
    >>> max(scores)
    0.0
    """

    def __init__(self, model: VectorModel | None = None) -> None:
        super().__init__(model or Ensemble())
