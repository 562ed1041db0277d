"""Per-series detectors: one series' state over any ``VectorModel``.

``Detector`` wraps a ``VectorModel`` with the state of a single series:
``update``/``update_result`` one sample at a time, ``score_batch`` /
``run_batch_full`` / ``results_batch`` over arrays (the same numbers as
repeated ``update``: both call the model's one compiled loop), and
``get_state``/``from_state``. ``AnomalyDetector`` is the default: the ensemble.
"""

from __future__ import annotations

import numpy as np

from perfintel.analysis.anomaly.base import StepOut, VectorModel, model_from_state
from perfintel.analysis.anomaly.ensemble import Ensemble
from perfintel.analysis.anomaly.result import AnomalyResult, explain
from perfintel.errors import BadInputError

_MAIN = ("score", "raw", "anomaly_score", "yhat", "yhat_lower", "yhat_upper")


def step_out(cols: dict[str, np.ndarray]) -> StepOut:
    """The explainer's view of ``run`` outputs."""
    return StepOut(
        score=cols["score"],
        raw=cols.get("raw", cols["score"]),
        yhat=cols.get("yhat"),
        lower=cols.get("yhat_lower"),
        upper=cols.get("yhat_upper"),
        anomaly_score=cols.get("anomaly_score"),
        extra={k: v for k, v in cols.items() if k not in _MAIN},
    )


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
        self._one = np.zeros(1, dtype=np.int64)

    def update(self, ts_ms: int, value: float) -> float:
        return float(self._step(ts_ms, value)["score"][0])

    def _step(self, ts_ms: int, value: float) -> dict[str, np.ndarray]:
        return self.model.run(
            self._st, self._one, np.array([int(ts_ms)], dtype=np.int64), np.array([float(value)])
        )

    def score_batch(self, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of ``update`` applied to each sample in order (identical values)."""
        return self.run_batch_full(ts, values)["score"]

    def run_batch_full(self, ts: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
        """Advance through ``(ts, values)``; every output of the model per sample, as arrays.

        For the ensemble: ``score``, ``raw``, ``anomaly_score``, ``yhat``,
        ``yhat_lower``, ``yhat_upper``, ``which``, ``fired``, ``alert``, ``z``,
        ``model``, ``sigma``, ``lik_<component>``. A NaN sample has ``score``,
        ``which``, ``fired``, ``alert`` and ``model`` 0 and NaN elsewhere.
        """
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if ts.shape != values.shape or ts.ndim != 1:
            raise BadInputError("ts and values must be 1-D arrays of equal length")
        return self.model.run(self._st, np.zeros(len(ts), dtype=np.int64), ts, values)

    def results_batch(self, ts: np.ndarray, values: np.ndarray) -> list[AnomalyResult]:
        """``update_result`` for each sample in order (same results), via ``run_batch_full``."""
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        out = step_out(self.run_batch_full(ts, values))
        alarm = self._alarm()
        return [
            explain(int(ts[i]), float(values[i]), None if values[i] != values[i] else out, alarm, i)
            for i in range(len(values))
        ]

    def update_result(self, ts_ms: int, value: float) -> AnomalyResult:
        """Advance by one sample and explain it (expected value, band, which detector fired)."""
        v = float(value)
        cols = self._step(ts_ms, v)
        return explain(int(ts_ms), v, None if v != v else step_out(cols), self._alarm())

    def _alarm(self) -> float:
        return float(getattr(getattr(self.model, "config", None), "alarm", 0.5))

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
