"""The ensemble: components, anomaly likelihood, alarm suppression.

The seasonal baseline reads the value and gives the expected value, the band
and ``anomaly_score``; the level-shift detector reads the value minus the
baseline's seasonal offset (deseasonalised); the context-novelty detector reads
the raw value. The raw surprise of each component with a non-zero weight goes
through its own ``AnomalyLikelihood``; the NAB score is the largest weighted
likelihood score. After a score reaches ``alarm`` the next ``rest`` samples of
that series score 0 (one alarm per incident: repeated alarms about one incident
are noise to an operator, and NAB counts only the first detection in a window
while charging for every false one).

One configuration serves every series; how the constants were chosen (by
cross-validation on the NAB development half) is in ``docs/anomaly.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfintel.analysis.anomaly.base import Field, State, VectorModel, register
from perfintel.analysis.anomaly.jit import njit
from perfintel.analysis.anomaly.likelihood import AnomalyLikelihood, likelihood_step
from perfintel.analysis.anomaly.novelty import ContextNovelty, novelty_step
from perfintel.analysis.anomaly.seasonal import SeasonalBaseline, seasonal_step
from perfintel.analysis.anomaly.shift import LevelShift, shift_step

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
)
FLAGS = ("score", "which", "fired", "alert", "model")

# layout slots (offsets of the parts in the state rows)
_O_S, _O_C, _O_V, _OB_V, _O_L, _O_Q = 0, 1, 2, 3, 4, 7
# ensemble parameters
_E_W, _E_ALARM, _E_REST, _E_BAND, _E_WARM, _E_DESEASON = 0, 3, 4, 5, 6, 7


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


@njit
def ensemble_run(  # type: ignore[no-untyped-def]
    f, bits, rows, ts, x, lay, e_prm, s_prm, c_prm, v_iprm, v_off, v_w, l_prm, out
):
    """Advance ``rows[i]`` by ``(ts[i], x[i])`` in order; one column of ``out`` per sample."""
    liks = np.zeros(3)
    for i in range(len(x)):
        r = rows[i]
        xi = x[i]
        yhat, half, score_a, z, k, sigma, season = seasonal_step(f, r, lay[_O_S], ts[i], xi, s_prm)
        x_c = xi - season if e_prm[_E_DESEASON] > 0 else xi
        raw_c, _, _ = shift_step(f, r, lay[_O_C], x_c, c_prm)
        raw_v = novelty_step(f, bits, r, lay[_O_V], lay[_OB_V], xi, v_iprm, v_off, v_w)
        best = -1.0
        which = 0
        for j in range(3):
            liks[j] = 0.0
            o = lay[_O_L + j]
            if o >= 0:
                inp = math.log1p(z) if j == 0 else (math.log1p(raw_c) if j == 1 else raw_v)
                liks[j], _ = likelihood_step(f, r, o, inp, l_prm[j])
            v = liks[j] * e_prm[_E_W + j]
            if v > best:
                best, which = v, j
        q = f[r, lay[_O_Q]]
        resting = q > 0
        fire = (not resting) and best >= e_prm[_E_ALARM]
        f[r, lay[_O_Q]] = e_prm[_E_REST] if fire else max(q - 1.0, 0.0)
        n_s = f[r, lay[_O_S]]  # samples the baseline has seen, this one included
        far = score_a >= e_prm[_E_BAND] and n_s > e_prm[_E_WARM]
        out[0, i] = 0.0 if resting else min(max(best, 0.0), 1.0)
        out[1, i] = best
        out[2, i] = score_a
        out[3, i] = yhat
        out[4, i] = yhat - half
        out[5, i] = yhat + half
        out[6, i] = which if fire else 0
        out[7, i] = 1.0 if fire else 0.0
        out[8, i] = 1.0 if (fire or far) else 0.0
        out[9, i] = z
        out[10, i] = k
        out[11, i] = sigma
        out[12, i] = liks[0]
        out[13, i] = liks[1]
        out[14, i] = liks[2]


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
        self._parts: list[tuple[str, VectorModel]] = [
            ("s.", self.seasonal),
            ("c.", self.shift),
            ("v.", self.novelty),
            *((f"l{i}.", m) for i, m in self.liks.items()),
        ]
        off = self.offsets()
        self._layout = np.full(8, -1, dtype=np.int64)
        self._layout[_O_S] = off["s.n"]
        self._layout[_O_C] = off["c.n"]
        self._layout[_O_V] = off["v.n"]
        self._layout[_OB_V] = off["v.bits"]
        for i in self.liks:
            self._layout[_O_L + i] = off[f"l{i}.n"]
        self._layout[_O_Q] = off["quiet"]
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

    def _run(
        self, st: State, rows: np.ndarray, ts: np.ndarray, x: np.ndarray, out: np.ndarray
    ) -> None:
        v = self.novelty
        ensemble_run(
            st.f,
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
