"""The ensemble: components, anomaly likelihood, alarm suppression.

Every component reads the raw value. Each component's raw surprise goes
through its own ``AnomalyLikelihood``; the NAB score is the largest weighted
likelihood score. After a score reaches ``alarm`` the following ``rest``
samples of that series score 0 (one alarm per incident: repeated alarms about
the same incident are noise to an operator, and NAB counts only the first
detection in a window while charging for every false one).

The expected value, band and ``anomaly_score`` come from the seasonal baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfintel.analysis.anomaly.base import (
    Detector,
    Field,
    State,
    StepOut,
    VectorModel,
    register,
)
from perfintel.analysis.anomaly.likelihood import AnomalyLikelihood
from perfintel.analysis.anomaly.novelty import ContextNovelty
from perfintel.analysis.anomaly.seasonal import SeasonalBaseline
from perfintel.analysis.anomaly.shift import LevelShift

COMPONENTS = ("seasonal", "shift", "novelty")


@dataclass(frozen=True)
class EnsembleConfig:
    """One configuration for every series (no per-series tuning)."""

    weights: tuple[float, float, float] = (0.0, 1.0, 0.9)
    alarm: float = 0.6
    rest: int = 120
    lik_short_alpha: float = 0.4
    lik_decay: float = 1.0 / 8000.0
    lik_warmup: int = 200
    widths: tuple[float, float, float] = (0.1, 0.1, 0.04)
    combine: str = "max"
    deseasonalise_shift: bool = True


def _sub(st: State, prefix: str) -> State:
    n = len(prefix)
    return {k[n:]: v for k, v in st.items() if k.startswith(prefix)}


class Ensemble(VectorModel):
    name = "ensemble"

    def __init__(
        self,
        seed: int = 0,
        config: EnsembleConfig | None = None,
        seasonal: SeasonalBaseline | None = None,
        shift: LevelShift | None = None,
        novelty: ContextNovelty | None = None,
    ) -> None:
        super().__init__(seed)
        self.config = cfg = config or EnsembleConfig()
        self.seasonal = seasonal or SeasonalBaseline(seed)
        self.shift = shift or LevelShift(seed)
        self.novelty = novelty or ContextNovelty(seed)
        self.liks = [
            AnomalyLikelihood(
                seed,
                short_alpha=cfg.lik_short_alpha,
                decay=cfg.lik_decay,
                width=w,
                warmup=cfg.lik_warmup,
            )
            for w in cfg.widths
        ]
        self._weights = np.asarray(cfg.weights, dtype=np.float64)[:, None]

    def _parts(self) -> list[tuple[str, VectorModel]]:
        return [
            ("s.", self.seasonal),
            ("c.", self.shift),
            ("v.", self.novelty),
            *((f"l{i}.", m) for i, m in enumerate(self.liks)),
        ]

    def fields(self) -> dict[str, Field]:
        out: dict[str, Field] = {}
        for p, m in self._parts():
            out.update({p + k: f for k, f in m.fields().items()})
        out["quiet"] = Field(())
        return out

    def step(self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray) -> StepOut:
        cfg = self.config
        o_s = self.seasonal.step(_sub(st, "s."), rows, ts, x)
        # the level-shift detector sees the deseasonalised value
        x_c = x - o_s.extra["season"] if cfg.deseasonalise_shift else x
        o_c = self.shift.step(_sub(st, "c."), rows, ts, x_c)
        o_v = self.novelty.step(_sub(st, "v."), rows, ts, x)
        raws = (np.log1p(o_s.raw), np.log1p(o_c.raw), o_v.raw)
        liks = np.stack(
            [
                m.step(_sub(st, f"l{i}."), rows, ts, r).score
                for i, (m, r) in enumerate(zip(self.liks, raws, strict=True))
            ]
        )
        parts = liks * self._weights
        which = np.argmax(parts, axis=0)
        if cfg.combine == "max":
            combined = parts[which, np.arange(len(rows))]
        else:
            combined = parts.sum(axis=0) / self._weights.sum()
        quiet = st["quiet"][rows]
        resting = quiet > 0
        score = np.where(resting, 0.0, np.clip(combined, 0.0, 1.0))
        fire = ~resting & (combined >= cfg.alarm)
        st["quiet"][rows] = np.where(fire, float(cfg.rest), np.maximum(quiet - 1.0, 0.0))
        return StepOut(
            score=score,
            raw=combined,
            yhat=o_s.yhat,
            lower=o_s.lower,
            upper=o_s.upper,
            anomaly_score=o_s.anomaly_score,
            extra={
                "which": which.astype(np.float64),
                "fired": fire.astype(np.float64),
                "z": o_s.raw,
                "model": o_s.extra["model"],
                "sigma": o_s.extra["sigma"],
                **{f"lik_{c}": liks[i] for i, c in enumerate(COMPONENTS)},
            },
        )


register(Ensemble.name, lambda seed: Ensemble(seed))


class AnomalyDetector(Detector):
    """The default per-series detector: the ensemble, with ``update_result`` explanations.

    >>> det = AnomalyDetector()
    >>> scores = [det.update(i * 300_000, 10.0 + (i % 7)) for i in range(50)]
    >>> max(scores)
    0.0
    """

    def __init__(self, model: VectorModel | None = None) -> None:
        super().__init__(model or Ensemble())
