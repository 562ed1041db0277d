"""Outliers among peers: members of a group that stop behaving like the rest.

For a group of series that should behave alike (the hosts of one service, the
pods of one deployment), at every time step the group's *robust centre* is the
median across members and its *spread* the scaled median absolute deviation
across members (``1.4826 × MAD``; when more than half the members agree
exactly and the MAD is 0, the scaled mean absolute deviation instead). A
member's deviation at that step is ``(value − median) / spread``: "how many
peer spreads away from the group". A member is *outside* at a step when
``|deviation| > tolerance``; its *score* over a window is the share of its
steps outside, and it is *flagged* when that share exceeds ``pct``. This is the
scaled-MAD test of Datadog's ``outliers()`` with its published defaults
(tolerance 3, pct 20 %) — not fitted to any data set.

Why it holds across metrics: every member is judged against its peers at the
same instant, so the shared seasonality, trends and incidents of the whole
group cancel; the spread is measured across peers at that instant, so a
group's own noise level (and its units) set the scale; and a member is flagged
only after spending a fifth of the window outside the peer band, which a
healthy member with the peers' noise does with probability far below 1 %
even with heavy tails. Level shifts (always outside), shape changes (outside
whenever the shape differs) and noise bursts (outside on many steps) all
raise the share.

Two forms, both pure (arrays in, results out):

* ``score_window(values)`` — members × steps over one window (NaN = missing);
* ``PeerScores`` — online: a bank of groups × members, updated one step at a
  time with an exponentially weighted share (window ≈ ``window_steps``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from perfintel.errors import BadInputError

MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533
#: Datadog's published defaults for the scaled-MAD test.
DEFAULT_TOLERANCE = 3.0
DEFAULT_PCT = 0.2
#: Groups with fewer members reporting at a step have no peers to compare with.
MIN_MEMBERS = 3


def nan_median(a: np.ndarray, axis: int) -> np.ndarray:
    """Median along ``axis`` ignoring NaN (NaN where all are NaN); a sort, so it is fast
    on the many short rows peer groups give (numpy's ``nanmedian`` is not)."""
    s = np.sort(np.moveaxis(a, axis, -1), axis=-1)  # NaN sort last
    k = np.isfinite(s).sum(axis=-1, keepdims=True)
    lo = np.take_along_axis(s, np.maximum((k - 1) // 2, 0), axis=-1)
    hi = np.take_along_axis(s, np.maximum(k // 2, 0), axis=-1)
    return np.where(k > 0, (lo + hi) / 2.0, np.nan)[..., 0]


def peer_deviation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step the median and spread across members, and each member's deviation.

    ``values`` is ``(..., members, steps)`` with NaN for missing points. Returns
    ``(median, spread, deviation)``; steps with fewer than ``MIN_MEMBERS``
    members reporting have NaN median, spread and deviations.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 2:
        raise BadInputError("peer values need a members axis and a steps axis")
    finite = np.isfinite(v)
    v = np.where(finite, v, np.nan)
    enough = finite.sum(axis=-2) >= MIN_MEMBERS
    median = nan_median(v, -2)
    absdev = np.abs(v - median[..., None, :])
    mad = nan_median(absdev, -2)
    with warnings.catch_warnings():  # steps where nobody reports are NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_ad = np.nanmean(absdev, axis=-2)
    spread = np.where(mad > 0, MAD_TO_SIGMA * mad, MEAN_AD_TO_SIGMA * mean_ad)
    # members that all agree exactly: any difference is infinitely many spreads
    tiny = 1e-12 * np.maximum(np.abs(median), 1.0)
    spread = np.maximum(spread, tiny)
    median = np.where(enough, median, np.nan)
    spread = np.where(enough, spread, np.nan)
    with np.errstate(invalid="ignore"):
        deviation = (v - median[..., None, :]) / spread[..., None, :]
    return median, spread, deviation


@dataclass
class WindowOutliers:
    """Per member over one window: share of steps outside the peer band, flag, deviation."""

    score: np.ndarray  # share of the member's scored steps with |deviation| > tolerance
    flagged: np.ndarray  # score > pct
    deviation: np.ndarray  # median signed deviation over the window (peer spreads)
    steps: np.ndarray  # steps the member was scored at
    median: np.ndarray  # per step: the group's median
    spread: np.ndarray  # per step: the group's spread
    z: np.ndarray  # members × steps: deviations (NaN where not scored)


def score_window(
    values: np.ndarray, tolerance: float = DEFAULT_TOLERANCE, pct: float = DEFAULT_PCT
) -> WindowOutliers:
    """Score every member of one group (``members × steps``, NaN = missing) over the window."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise BadInputError("values must be a members × steps matrix")
    if not tolerance > 0 or not 0 <= pct < 1:
        raise BadInputError("tolerance must be positive and pct in [0, 1)")
    median, spread, z = peer_deviation(v)
    scored = np.isfinite(z)
    steps = scored.sum(axis=1)
    outside = (np.abs(np.where(scored, z, 0.0)) > tolerance).sum(axis=1)
    score = np.where(steps > 0, outside / np.maximum(steps, 1), np.nan)
    deviation = nan_median(np.where(scored, z, np.nan), 1)
    flagged = np.nan_to_num(score, nan=0.0) > pct
    return WindowOutliers(score, flagged, deviation, steps, median, spread, z)


def explain(
    name: str, score: float, deviation: float, flagged: bool, pct: float, window: str
) -> str:
    """A plain-words line about one member."""
    if math.isnan(score):
        return f"{name} had no peers to compare with (fewer than {MIN_MEMBERS} members reporting)"
    side = "above" if deviation >= 0 else "below"
    text = (
        f"{name} is {abs(deviation):.1f} peer spreads {side} the group median (median over "
        f"{window}) and outside the peer band {100 * score:.0f} % of the time"
    )
    if flagged:
        return text + f"; an outlier (more than {100 * pct:.0f} %)"
    return text + "; behaves like its peers"


class PeerScores:
    """Online peer-outlier scores of a bank of groups × members.

    ``update(values)`` takes one step: a ``groups × members`` matrix of the
    members' values at that step (NaN = member missing or slot unused); each
    scored member's share of steps outside the peer band is updated with
    weight ``1 / window_steps`` (an exponentially weighted window starting
    from 0, so a member outside at every step is flagged after about
    ``pct × window_steps`` steps, and a few early outside steps are not enough),
    and the shares are returned (NaN for members not scored at this step).
    State: one float per member (its share) — grown by ``resize``.
    """

    def __init__(
        self,
        groups: int = 0,
        members: int = 0,
        window_steps: float = 60.0,
        tolerance: float = DEFAULT_TOLERANCE,
        pct: float = DEFAULT_PCT,
    ) -> None:
        if not window_steps >= 1:
            raise BadInputError("window_steps must be at least 1")
        self.alpha = 1.0 / float(window_steps)
        self.tolerance = tolerance
        self.pct = pct
        self.share = np.zeros((groups, members))

    def resize(self, groups: int, members: int) -> None:
        g0, m0 = self.share.shape
        if groups <= g0 and members <= m0:
            return
        share = np.zeros((max(groups, g0), max(members, m0)))
        share[:g0, :m0] = self.share
        self.share = share

    def update(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step for every group: (share per member, deviation per member); NaN if not scored."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2:
            raise BadInputError("values must be a groups × members matrix")
        self.resize(*v.shape)
        g, m = v.shape
        # one step: the steps axis is of length 1
        _, _, z = peer_deviation(v[:, :, None])
        z = z[:, :, 0]
        scored = np.isfinite(z)
        outside = (np.abs(np.where(scored, z, 0.0)) > self.tolerance).astype(np.float64)
        share = self.share[:g, :m]
        share[...] = np.where(scored, share + self.alpha * (outside - share), share)
        return np.where(scored, share, np.nan), np.where(scored, z, np.nan)

    def flagged(self, share: np.ndarray) -> np.ndarray:
        return np.nan_to_num(share, nan=0.0) > self.pct
