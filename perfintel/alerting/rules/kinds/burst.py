"""``kind: anomaly_burst`` — the anomaly rate of a service above its own normal.

::

    - alert: AnomalyBurst
      kind: anomaly_burst
      selector: '{job=~".+"}'  # the analysed (source) series to count; any metric of a job
      by: [job]                # one alert per job
      threshold: 1             # an anomaly_score at or above counts as anomalous
      window: 15m              # recent rate ...
      baseline: 7d             # ... against this stretch before it
      factor: 3                # at least 3x the normal rate
      min_rate: 0.02           # and at least 2 % of the scored samples
      significance: 0.001

Every scored sample of the selected series (the ``anomaly_score`` series the
online detector writes, see ``kind: anomaly``) is anomalous or not. Per
group of ``by`` labels, ``k`` of the ``n`` samples of the recent window are
anomalous against a normal rate ``p0`` from the baseline (``(k0 + 0.5) /
(n0 + 1)``, so a clean baseline still has a small positive rate). Anomalies
come in runs (an incident marks several samples and series at once), which
would make a binomial test far too eager; counts are therefore divided by
the mean run length of anomalous samples seen in the baseline (a variance
inflation factor, at least 1) before the one-sided binomial test
``P(X >= k | n, p0)``. The rule triggers when that p-value is below
``significance``, the recent rate is at least ``factor × p0`` and at least
``min_rate``. The explanation gives both rates with an 80 % interval of the
recent one, the p-value (``confidence`` = 1 - p) and the series with the
most anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field, field_validator
from scipy import stats

from perfintel.alerting.rules.kinds.anomaly import SCORE, check_selector
from perfintel.alerting.rules.kinds.base import (
    Finding,
    KindContext,
    KindParams,
    PromDuration,
    group_key,
    output_selector,
)
from perfintel.model import is_stale, parse_selector


class BurstParams(KindParams):
    selector: str
    by: list[str] = Field(default_factory=list)
    threshold: float = Field(1.0, gt=0)
    window: PromDuration = 900.0
    baseline: PromDuration = 7 * 86400.0
    factor: float = Field(3.0, ge=1)
    min_rate: float = Field(0.02, ge=0, le=1)
    significance: float = Field(0.001, gt=0, lt=0.5)
    min_samples: int = Field(30, ge=1)

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        return check_selector(v)

    def describe(self) -> str:
        return f"anomaly rate of {self.selector} by ({', '.join(self.by)}) vs its {self.baseline:g}s normal"


def run_length(flags: Sequence[np.ndarray]) -> float:
    """Mean length of runs of ``True`` over several series (1 when there are none)."""
    runs = total = 0
    for f in flags:
        if f.size == 0:
            continue
        total += int(f.sum())
        runs += int(f[0]) + int(np.count_nonzero(f[1:] & ~f[:-1]))
    return max(1.0, total / runs) if runs else 1.0


class BurstKind:
    name = "anomaly_burst"
    params = BurstParams

    def expressions(self, params: BurstParams) -> list[tuple[str, str]]:
        return [("selector", output_selector(params.selector, SCORE))]

    def evaluate(self, params: BurstParams, ctx: KindContext) -> list[Finding]:
        end = ctx.time_ms
        cut = end - int(params.window * 1000)
        start = cut - int(params.baseline * 1000)
        sel = parse_selector(output_selector(params.selector, SCORE))
        series = ctx.reader.select(sel, start, end)
        groups: dict[
            tuple[tuple[str, str], ...], list[tuple[dict[str, str], np.ndarray, np.ndarray]]
        ] = {}
        for s in series:
            labels = dict(s.labels)
            ok = ~is_stale(s.values) & np.isfinite(s.values)
            bad = s.values[ok] >= params.threshold
            groups.setdefault(group_key(labels, params.by), []).append(
                (labels, s.timestamps[ok], bad)
            )
        out = []
        for key, members in groups.items():
            recent = [(lab, b[t > cut]) for lab, t, b in members]
            before = [b[t <= cut] for _, t, b in members]
            n = sum(r.size for _, r in recent)
            k = sum(int(r.sum()) for _, r in recent)
            n0 = sum(b.size for b in before)
            k0 = sum(int(b.sum()) for b in before)
            if n < params.min_samples or n0 < params.min_samples:
                continue
            p0 = (k0 + 0.5) / (n0 + 1)
            c = run_length(before)
            k_eff, n_eff = k / c, n / c
            p = float(stats.binom.sf(np.ceil(k_eff) - 1, max(1, round(n_eff)), p0))
            rate = k / n
            trigger = (
                p < params.significance and rate >= params.factor * p0 and rate >= params.min_rate
            )
            lo = float(stats.beta.ppf(0.1, k_eff + 0.5, n_eff - k_eff + 0.5)) if n_eff > 0 else 0.0
            hi = float(stats.beta.ppf(0.9, k_eff + 0.5, n_eff - k_eff + 0.5)) if n_eff > 0 else 1.0
            top = sorted(recent, key=lambda lr: -int(lr[1].sum()))[:5]
            expl = {
                "kind": self.name,
                "now": ctx.now_s,
                "rate": rate,
                "rate_interval": {"p10": lo, "p90": hi},
                "normal_rate": p0,
                "ratio": rate / p0,
                "anomalous_samples": k,
                "samples": n,
                "run_length": c,
                "p_value": p,
                "confidence": 1.0 - p,
                "series": [{"labels": lab, "anomalous": int(r.sum())} for lab, r in top if r.sum()],
            }
            out.append(
                Finding(
                    dict(key),
                    rate,
                    trigger=bool(trigger),
                    explanation=expl,
                    annotations={
                        "burst": (
                            f"{100 * rate:.1f}% of samples anomalous in the last "
                            f"{params.window / 60:g}m (80% interval {100 * lo:.1f}-{100 * hi:.1f}%), "
                            f"{rate / p0:.1f}x the normal {100 * p0:.2f}%"
                        ),
                        "confidence": f"{100 * (1 - p):.1f}%",
                    },
                )
            )
        return out


KIND = BurstKind()
