"""Root-cause baselines from the literature, for side-by-side benchmarks.

Each takes the candidate series on a grid (counters as their increase per
step, gaps filled: :func:`perfintel.analysis.signals.as_matrix`), the index of
the incident time and the window/baseline lengths in steps, and returns the
series indices ranked most likely first.

* :func:`largest_zscore` — the n-sigma rule: each series' largest absolute
  z-score in the window against the mean and standard deviation of its
  baseline.
* :func:`epsilon_diagnosis` — ε-Diagnosis (Shan et al., "ε-Diagnosis:
  Unsupervised and Real-time Diagnosis of Small-window Long-tail Latency in
  Large-scale Microservice Platforms", WWW 2019): a two-sample test per metric
  between the abnormal window and a normal window of the same length just
  before it, with the energy (ε-)statistic of Székely and Rizzo; metrics are
  ranked by the test's significance (permutation p-value), ties by the
  statistic. Metrics are standardised by the normal window so the statistic
  compares shapes of distributions, not units.
* :func:`baro` — BARO (Pham, Ha and Zhang, "BARO: Robust Root Cause Analysis
  for Microservices via Multivariate Bayesian Online Change Point Detection",
  FSE 2024): Bayesian online change-point detection (Adams and MacKay, 2007)
  on the min-max-normalised latency and error metrics (all metrics when there
  are none) with a constant hazard of 1/50 finds the change point (the first
  step where the probability that a change happened ``NW`` = 10 steps earlier
  exceeds 0.01, as the authors' implementation reads it), then the
  RobustScorer ranks every metric by the largest value after the change point
  scaled by the median and inter-quartile range of the values before it. The
  multivariate predictive is taken with independent dimensions
  (Normal–Gamma per metric, Student-t predictive), which keeps it linear in the
  number of metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

HAZARD = 1 / 50
NW = 10
CP_THRESHOLD = 0.01
PERMUTATIONS = 99


def largest_zscore(x: np.ndarray, t_idx: int, window: int, baseline: int) -> list[int]:
    ws = max(1, t_idx - window)
    b0 = max(0, ws - baseline)
    base = x[:, b0:ws]
    mu = base.mean(axis=1, keepdims=True)
    sd = base.std(axis=1, keepdims=True)
    z = np.abs(x[:, ws:] - mu) / np.where(sd > 0, sd, np.inf)
    score = np.nan_to_num(z.max(axis=1), nan=0.0)
    return [int(i) for i in np.argsort(-score, kind="stable")]


def _energy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Energy statistics ``(nm/(n+m)) (2E|A-B| - E|A-A'| - E|B-B'|)`` of sample pairs.

    ``a`` is ``(k, n)`` and ``b`` is ``(k, m)``: ``k`` two-sample problems at once.
    """
    n, m = a.shape[1], b.shape[1]
    ab = np.abs(a[:, :, None] - b[:, None, :]).mean(axis=(1, 2))
    aa = np.abs(a[:, :, None] - a[:, None, :]).mean(axis=(1, 2))
    bb = np.abs(b[:, :, None] - b[:, None, :]).mean(axis=(1, 2))
    return np.asarray(n * m / (n + m) * (2 * ab - aa - bb))


def epsilon_diagnosis(
    x: np.ndarray, t_idx: int, window: int, baseline: int, seed: int = 0
) -> list[int]:
    ws = max(1, t_idx - window)
    abnormal = x[:, ws:]
    k = abnormal.shape[1]
    normal = x[:, max(0, ws - k) : ws]
    rng = np.random.default_rng(seed)
    stats = np.zeros(x.shape[0])
    pvals = np.ones(x.shape[0])
    n = normal.shape[1]
    for i in range(x.shape[0]):
        a, b = normal[i], abnormal[i]
        sd = a.std()
        if not sd > 0:
            sd = float(np.abs(np.concatenate([a, b])).mean()) or 1.0
        both = (np.concatenate([a, b]) - a.mean()) / sd
        e = float(_energy(both[None, :n], both[None, n:])[0])
        perms = np.argsort(rng.random((PERMUTATIONS, both.size)), axis=1)
        shuffled = both[perms]
        null = _energy(shuffled[:, :n], shuffled[:, n:])
        stats[i] = e
        pvals[i] = (int(np.sum(null >= e)) + 1) / (PERMUTATIONS + 1)
    return [int(i) for i in np.lexsort((-stats, pvals))]


def bocpd_change_point(data: np.ndarray) -> int:
    """The change point (row index) of a (steps × dims) matrix by BOCPD, as BARO reads it."""
    t_steps, dims = data.shape
    mu0, kappa0, alpha0, beta0 = 0.0, 1.0, 1.0, 1.0
    log_r = np.array([0.0])  # log P(run length | data so far)
    mu = np.full((1, dims), mu0)
    kappa = np.array([kappa0])
    alpha = np.array([alpha0])
    beta = np.full((1, dims), beta0)
    prob_nw = np.zeros(t_steps)
    log_h, log_1h = np.log(HAZARD), np.log1p(-HAZARD)
    for t in range(t_steps):
        xt = data[t]
        scale2 = beta * (kappa[:, None] + 1) / (alpha[:, None] * kappa[:, None])
        nu = 2 * alpha[:, None]
        lp = (
            gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * np.log(np.pi * nu * scale2)
            - (nu + 1) / 2 * np.log1p((xt[None, :] - mu) ** 2 / (nu * scale2))
        ).sum(axis=1)
        growth = log_r + lp + log_1h
        cp = np.logaddexp.reduce(log_r + lp + log_h)
        log_r = np.r_[cp, growth]
        log_r -= np.logaddexp.reduce(log_r)
        if log_r.size > NW:
            prob_nw[t] = float(np.exp(log_r[NW]))
        # posterior updates (the new run starts from the prior)
        new_mu = (kappa[:, None] * mu + xt[None, :]) / (kappa[:, None] + 1)
        new_beta = beta + kappa[:, None] * (xt[None, :] - mu) ** 2 / (2 * (kappa[:, None] + 1))
        mu = np.vstack([np.full((1, dims), mu0), new_mu])
        beta = np.vstack([np.full((1, dims), beta0), new_beta])
        kappa = np.r_[kappa0, kappa + 1]
        alpha = np.r_[alpha0, alpha + 0.5]
    hits = np.flatnonzero(prob_nw[NW:-1] > CP_THRESHOLD)
    if hits.size:
        return int(hits[0])
    return int(np.argmax(prob_nw[NW:-1])) if t_steps > NW + 1 else 0


def baro(
    x: np.ndarray,
    t_idx: int,
    window: int,
    baseline: int,
    sli: np.ndarray | None = None,
) -> list[int]:
    """BARO over the baseline and window; ``sli`` marks the latency/error rows for BOCPD."""
    ws = max(1, t_idx - window)
    b0 = max(0, ws - baseline)
    seg = x[:, b0:]
    rows = np.flatnonzero(sli) if sli is not None and np.any(sli) else np.arange(x.shape[0])
    d = seg[rows].T
    lo, hi = d.min(axis=0), d.max(axis=0)
    d = np.where(hi > lo, (d - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    cp = bocpd_change_point(d)
    cp = min(max(cp, 2), seg.shape[1] - 1)
    normal, anomal = seg[:, :cp], seg[:, cp:]
    med = np.median(normal, axis=1, keepdims=True)
    iqr = np.percentile(normal, 75, axis=1, keepdims=True) - np.percentile(
        normal, 25, axis=1, keepdims=True
    )
    score = ((anomal - med) / np.where(iqr > 0, iqr, np.inf)).max(axis=1)
    score = np.nan_to_num(score, nan=0.0, neginf=0.0)
    return [int(i) for i in np.argsort(-score, kind="stable")]
