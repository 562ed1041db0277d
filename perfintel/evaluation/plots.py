"""One PNG per NAB file: the series, the score, and where alarms fall."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_series(
    dest: Path,
    title: str,
    values: np.ndarray,
    scores: np.ndarray,
    fired: np.ndarray,
    alarm: float | None = None,
) -> None:
    """Write ``dest`` (PNG): values with alarms marked above, the score below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest.parent.mkdir(parents=True, exist_ok=True)
    idx = np.arange(len(values))
    hits = np.flatnonzero(fired > 0)
    fig, (ax_v, ax_s) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=(2, 1))
    try:
        ax_v.plot(idx, values, lw=0.6, color="tab:blue")
        ax_v.scatter(hits, values[hits], color="tab:red", s=18, zorder=3, label="alarm")
        for h in hits:
            ax_s.axvline(h, color="tab:red", lw=0.6, alpha=0.5)
        ax_v.set_title(title)
        ax_v.set_ylabel("value")
        if len(hits):
            ax_v.legend(loc="upper left")
        ax_s.plot(idx, scores, lw=0.6, color="tab:purple")
        if alarm is not None:
            ax_s.axhline(alarm, color="tab:gray", lw=0.6, ls="--", label="alarm level")
        ax_s.set_ylim(-0.02, 1.02)
        ax_s.set_ylabel("anomaly score")
        ax_s.set_xlabel("row")
        fig.tight_layout()
        fig.savefig(dest, dpi=80)
    finally:
        plt.close(fig)
