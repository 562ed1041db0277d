"""The ensemble: components, anomaly likelihood, alarm suppression.

The seasonal baseline reads the value and gives the expected value, the band
and ``anomaly_score``; the level-shift detector reads the value minus the
baseline's seasonal offset (deseasonalised); the context-novelty detector reads
the raw value. The raw surprise of each component with a non-zero weight goes
through its own ``AnomalyLikelihood``; the NAB score is the largest weighted
likelihood score (by default the seasonal component has weight 0: it alarms
through the band and through the shift detector's input, its own likelihood
added more false alarms than hits on NAB). After a score reaches ``alarm`` the
next ``rest`` samples of that series score 0 (one alarm per incident: repeated
alarms about one incident are noise to an operator, and NAB counts only the
first detection in a window while charging for every false one).

Defaults were chosen on the development half of NAB (see ``docs/anomaly.md``);
one configuration serves every series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfintel.analysis.anomaly.base import (
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
    deseasonalise_shift: bool = True
    #: user alerts (``AnomalyResult.is_anomaly``) also fire, even while the NAB
    #: score is suppressed, when a value is this many half-bands off ``yhat``
    band_alert: float = 2.0


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
        # a component with weight 0 still runs (the seasonal one gives the band
        # and deseasonalises the shift detector) but gets no likelihood state
        self.liks = {
            i: AnomalyLikelihood(
                seed,
                short_alpha=cfg.lik_short_alpha,
                decay=cfg.lik_decay,
                width=w,
                warmup=cfg.lik_warmup,
            )
            for i, w in enumerate(cfg.widths)
            if cfg.weights[i] > 0
        }
        self._weights = np.asarray(cfg.weights, dtype=np.float64)[:, None]

    def _parts(self) -> list[tuple[str, VectorModel]]:
        return [
            ("s.", self.seasonal),
            ("c.", self.shift),
            ("v.", self.novelty),
            *((f"l{i}.", m) for i, m in self.liks.items()),
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
        liks = np.zeros((len(COMPONENTS), len(rows)))
        for i, m in self.liks.items():
            liks[i] = m.step(_sub(st, f"l{i}."), rows, ts, raws[i]).score
        parts = liks * self._weights
        which = np.argmax(parts, axis=0)
        combined = parts[which, np.arange(len(rows))]
        quiet = st["quiet"][rows]
        resting = quiet > 0
        score = np.where(resting, 0.0, np.clip(combined, 0.0, 1.0))
        fire = ~resting & (combined >= cfg.alarm)
        st["quiet"][rows] = np.where(fire, float(cfg.rest), np.maximum(quiet - 1.0, 0.0))
        band = o_s.anomaly_score if o_s.anomaly_score is not None else np.zeros(len(rows))
        far = (band >= cfg.band_alert) & (st["s.n"][rows] > cfg.lik_warmup)
        alert = fire | far
        which = np.where(fire, which, 0)
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
                "alert": alert.astype(np.float64),
                "z": o_s.raw,
                "model": o_s.extra["model"],
                "sigma": o_s.extra["sigma"],
                **{f"lik_{c}": liks[i] for i, c in enumerate(COMPONENTS)},
            },
        )


register(Ensemble.name, lambda seed: Ensemble(seed))
