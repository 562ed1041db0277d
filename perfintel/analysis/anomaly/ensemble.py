"""The ensemble: components, anomaly likelihood, alarm suppression.

The seasonal baseline reads the value and gives the expected value, the band
and ``anomaly_score``; the level-shift detector reads the value minus the
baseline's seasonal offset (deseasonalised); the context-novelty detector reads
the raw value. The raw surprise of each component with a non-zero weight goes
through its own ``AnomalyLikelihood``; the NAB score is the largest weighted
likelihood score. After a score reaches ``alarm`` the next ``rest`` samples of
that series score 0 (one alarm per incident: repeated alarms about one incident
are noise to an operator, and NAB counts only the first detection in a window
while charging for every false one). Nothing scores or alarms before the series'
history spans the seasonal baseline's ``warmup_ms`` (an hour; ``seasonal.WARMUP_MS``):
the components learn meanwhile, and the expected value and band are given throughout.

One configuration serves every series; how the constants were chosen (by
cross-validation on the NAB development half) is in ``docs/anomaly.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfintel.analysis.anomaly import steps
from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.likelihood import AnomalyLikelihood
from perfintel.analysis.anomaly.novelty import ContextNovelty
from perfintel.analysis.anomaly.seasonal import SeasonalBaseline
from perfintel.analysis.anomaly.shift import LevelShift

COMPONENTS = ("seasonal", "shift", "novelty")
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
    "grid",
)
FLAGS = ("score", "which", "fired", "alert", "model")
#: Likelihood histogram resolution of the z-like inputs (``log1p`` of a z-score).
LOG_Z_WIDTH = 0.1


@dataclass(frozen=True)
class EnsembleConfig:
    """One configuration for every series (no per-series tuning).

    ``alarm`` and ``rest`` were chosen by cross-validation on the NAB
    development half (``perfintel eval nab-cv``); the other values are
    conventional, see ``docs/anomaly.md``.
    """

    #: seasonal, shift, novelty: the seasonal baseline gives the band and
    #: deseasonalises the shift detector but raises no alarm of its own
    weights: tuple[float, float, float] = (0.0, 1.0, 1.0)
    alarm: float = 0.6
    rest: int = 120
    #: smoothing of a raw score before its likelihood (~ a 10-sample average)
    lik_short_alpha: float = 0.2
    #: likelihood memory ~ 1/decay samples (HTM's 8,640-sample history, rounded)
    lik_decay: float = 1.0 / 8000.0
    lik_warmup: int = 200
    lik_bins: int = 48
    deseasonalise_shift: bool = True
    #: user alerts (``AnomalyResult.is_anomaly``) also fire, even while the NAB
    #: score is suppressed, when a value is this many half-bands off ``yhat``
    band_alert: float = 2.0


class Ensemble(VectorModel):
    name = "ensemble"
    outputs = OUTPUTS
    flags = FLAGS

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
        # and deseasonalises the shift detector) but gets no likelihood state;
        # histogram bins: log1p(z) at LOG_Z_WIDTH, the novelty spanning [0, 1]
        widths = (LOG_Z_WIDTH, LOG_Z_WIDTH, 1.0 / (cfg.lik_bins - 1))
        self.liks = {
            i: AnomalyLikelihood(
                seed,
                short_alpha=cfg.lik_short_alpha,
                decay=cfg.lik_decay,
                width=widths[i],
                bins=cfg.lik_bins,
                warmup=cfg.lik_warmup,
            )
            for i in range(len(COMPONENTS))
            if cfg.weights[i] > 0
        }
        self._parts: list[tuple[str, VectorModel]] = [
            ("s.", self.seasonal),
            ("c.", self.shift),
            ("v.", self.novelty),
            *((f"l{i}.", m) for i, m in self.liks.items()),
        ]
        off = self.offsets()
        lay = np.full(steps.E_LAYOUT, -1, dtype=np.int64)
        lay[steps.E_S] = off["s.n"]
        lay[steps.E_SH] = off["s.day"]
        lay[steps.E_C] = off["c.n"]
        lay[steps.E_V] = off["v.n"]
        lay[steps.E_VB] = off["v.symbols"]
        for i in self.liks:
            lay[steps.E_L + i] = off[f"l{i}.n"]
            lay[steps.E_LH + i] = off[f"l{i}.hist"]
        lay[steps.E_Q] = off["quiet"]
        self._layout = lay
        self._e_prm = np.array(
            [
                *cfg.weights,
                cfg.alarm,
                float(cfg.rest),
                cfg.band_alert,
                float(cfg.lik_warmup),
                1.0 if cfg.deseasonalise_shift else 0.0,
            ]
        )
        self._l_prm = np.zeros((3, 6))
        for i, m in self.liks.items():
            self._l_prm[i] = m.params()

    def fields(self) -> dict[str, Field]:
        out: dict[str, Field] = {}
        for p, m in self._parts:
            out.update({p + k: f for k, f in m.fields().items()})
        out["quiet"] = Field()
        return out

    def compact_fields(self) -> dict[str, tuple[int, bool]]:
        """The float32 fields ``OnlineRunner(compact=True)`` holds as integer codes
        (``compact.py``): the seasonal profiles at 8 signed bits, the likelihood
        histograms (non-negative) at 16."""
        out = {"s.day": (8, True), "s.week": (8, True)}
        out.update({f"l{i}.hist": (16, False) for i in self.liks})
        return out

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        v = self.novelty
        steps.ensemble_run(
            st.f,
            st.h,
            st.b,
            rows,
            ts,
            x,
            self._layout,
            self._e_prm,
            self.seasonal.params(),
            self.shift.params(),
            v.iparams,
            v.seq_offsets,
            v.seq_weights,
            self._l_prm,
            out,
        )


register(Ensemble.name, lambda seed: Ensemble(seed))
