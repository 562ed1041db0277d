"""PNG charts (matplotlib, Agg; no pyplot state, thread-safe): capacity plans, correlation
heat maps and root-cause timelines.

The capacity plan: the usage history, the capacity (and the target utilisation
line), the baseline's projected usage as the dashboard's Capacity page draws it
(``CapacityReport.projection``, the simulated paths the exhaustion times come
from: P50 dashed, P10–P90 as a grey band, up to the horizon or a little past the
P90 exhaustion — a tenth of its lead time, two kept steps at least — whichever
comes first), and for each scenario the P10–P90 window of the exhaustion time
as a shaded vertical band with the P50 as a vertical line. The other scenarios,
which have no projection of their own, get a dashed line from the latest usage
to the capacity at their P50 (a guide to the eye, not a projected path); so does
the baseline of a plan made without its projection.

The title (the plan's summary sentence) is wrapped to the figure's width and
the figure grows to hold it; the y axis is labelled with the resource and the
unit its metric name carries (``_bytes``, ``_seconds``, ``_percent``, ``_ratio``:
Prometheus's naming rules), its ticks with SI prefixes (``500 GB``); the x
axis is UTC.
"""

from __future__ import annotations

import io
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from perfintel.model import metric_name
from perfintel.performance.capacity import ResourcePlan

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def _dt(seconds: float) -> float:
    """Matplotlib's date number of a Unix time."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.fromtimestamp(seconds, UTC)))


#: (metric name suffix, unit shown, unit for the SI tick formatter), as Prometheus names units
UNITS = (
    ("_bytes", "bytes", "B"),
    ("_seconds", "seconds", "s"),
    ("_percent", "%", ""),
    ("_ratio", "ratio", ""),
    ("_celsius", "°C", ""),
    ("_volts", "volts", "V"),
    ("_watts", "watts", "W"),
)
TITLE_CHARS = 110  # per line at 10 inches and 10 points


def axis_unit(plan: ResourcePlan) -> tuple[str, str]:
    """(unit to show, unit for tick labels) from the usage metric's name; ("", "") if none."""
    name = metric_name(plan.labels).removesuffix("_total")
    for suffix, shown, tick in UNITS:
        if name.endswith(suffix):
            return shown, tick
    return "", ""


def projection_span(plan: ResourcePlan) -> tuple[np.ndarray, int]:
    """The projection's kept instants (Unix seconds) and how many of them a chart draws: up to
    the horizon, or a little past the baseline's P90 exhaustion (a tenth of its lead time more,
    two kept steps at least) when that comes first, so a resource full in hours is not a corner
    of a month (as ``projectionSpan`` in ``web/static/js/pages/capacity.js``)."""
    proj = plan.report.projection
    if proj is None or proj.timestamps.size == 0:
        return np.empty(0), 0
    when = proj.timestamps
    if np.issubdtype(when.dtype, np.datetime64):
        when = when.astype("datetime64[ns]").astype(np.int64) / 1e9
    t = np.asarray(when, dtype=np.float64)
    stride = float(t[2] - t[1]) if t.size > 2 else 0.0
    end = float(t[-1])
    base = plan.report.baseline
    if base.p90 is not None and base.days_p90 is not None:
        p90 = float(base.p90) if not isinstance(base.p90, np.datetime64) else _unix(base.p90)
        now = p90 - base.days_p90 * 86_400
        end = min(end, p90 + max(0.1 * (p90 - now), 2 * stride))
    n = int(np.searchsorted(t, end, side="right"))
    return t, max(n, min(2, t.size))


def _unix(when: np.datetime64) -> float:
    return float(when.astype("datetime64[ns]").astype(np.int64)) / 1e9


def capacity_png(plan: ResourcePlan, target_utilisation: float, *, dpi: int = 100) -> bytes:
    """Render ``plan`` as a PNG (10 inches wide; taller when the title wraps)."""
    fig = capacity_figure(plan, target_utilisation, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def capacity_figure(plan: ResourcePlan, target_utilisation: float, *, dpi: int = 100) -> Figure:
    """The chart of ``plan`` as a matplotlib ``Figure`` (laid out, ready to save)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    title = textwrap.fill(plan.report.summary, TITLE_CHARS)
    lines = title.count("\n") + 1
    fig = Figure(figsize=(10, 4.5 + 0.2 * (lines - 1)), dpi=dpi)
    ax = fig.add_subplot()
    t = [_dt(x / 1000) for x in plan.timestamps.tolist()]
    ax.xaxis_date(tz=UTC)
    ax.plot(t, plan.usage, color="black", linewidth=1.0, label="usage")
    rep = plan.report
    end_s = float(plan.timestamps[-1]) / 1000
    horizon_end = _dt(end_s + rep.horizon_days * 86_400)
    finite_cap = plan.capacity[np.isfinite(plan.capacity)]
    cap = float(finite_cap[-1]) if finite_cap.size else float("nan")
    ax.plot(t, plan.capacity, color="tab:red", linewidth=1.2, label="capacity")
    ax.hlines(cap, t[-1], horizon_end, colors="tab:red", linewidth=1.2, linestyles="dotted")
    ax.hlines(
        cap * target_utilisation,
        t[0],
        horizon_end,
        colors="tab:red",
        linewidth=0.8,
        linestyles="dashed",
        label=f"target {target_utilisation:.0%}",
    )
    ax.axvline(t[-1], color="grey", linewidth=0.6)
    when, n = projection_span(plan)
    if n and rep.projection is not None:
        x = [_dt(s) for s in when[:n].tolist()]
        proj = rep.projection
        ax.fill_between(
            x,
            proj.p10[:n],
            proj.p90[:n],
            color="0.45",
            alpha=0.3,
            linewidth=0,
            label="projected usage P10–P90",
        )
        ax.plot(
            x,
            proj.p50[:n],
            color="black",
            linewidth=1.0,
            linestyle="dashed",
            label="projected usage P50",
        )
    for i, sc in enumerate(rep.scenarios):
        color = COLORS[i % len(COLORS)]
        lo = sc.p10 if sc.p10 is not None else None
        hi = sc.p90 if sc.p90 is not None else None
        if lo is not None:
            right = _dt(float(hi)) if hi is not None else horizon_end
            ax.axvspan(
                _dt(float(lo)), right, color=color, alpha=0.15, label=f"{sc.scenario.name} P10–P90"
            )
        if sc.p50 is not None:
            if not (i == 0 and n):  # a guide, unless the baseline's own projection is drawn
                ax.plot(
                    [t[-1], _dt(float(sc.p50))],
                    [float(plan.usage[np.isfinite(plan.usage)][-1]), cap],
                    color=color,
                    linewidth=1.0,
                    linestyle="dashed",
                )
            ax.axvline(
                _dt(float(sc.p50)), color=color, linewidth=1.2, label=f"{sc.scenario.name} P50"
            )
    ax.set_xlim(t[0], horizon_end)
    ax.xaxis.set_major_locator(loc := AutoDateLocator())
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))
    ax.set_title(title, fontsize=10)
    shown, tick = axis_unit(plan)
    what = textwrap.shorten(plan.resource, 40, placeholder="…")
    ax.set_ylabel(f"{what} ({shown})" if shown else what, fontsize=9)
    ax.yaxis.set_major_formatter(EngFormatter(unit=tick, sep=" "))
    ax.set_xlabel("time (UTC)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def correlation_heatmap_png(
    names: list[str], matrix: np.ndarray, title: str, *, dpi: int = 100
) -> bytes:
    """A heat map of a symmetric correlation matrix (-1 blue, +1 red), names on both axes."""
    from matplotlib.figure import Figure

    n = len(names)
    size = min(24.0, 4 + 0.28 * n)
    fig = Figure(figsize=(size, size * 0.85), dpi=dpi)
    ax = fig.add_subplot()
    m = np.nan_to_num(np.asarray(matrix, dtype=np.float64))
    im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    if n <= 60:
        short = [s if len(s) <= 48 else s[:45] + "…" for s in names]
        ax.set_xticks(range(n), short, rotation=90, fontsize=6)
        ax.set_yticks(range(n), short, fontsize=6)
    fig.colorbar(im, ax=ax, shrink=0.7, label="cross-correlation at the best lag")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def root_cause_timeline_png(
    causes: list[tuple[str, np.ndarray, np.ndarray, int]],
    time_ms: int,
    title: str,
    *,
    dpi: int = 100,
) -> bytes:
    """The z-score path of each cause (``(name, timestamps ms, z, onset ms)``), one panel each,
    with its onset marked and the incident time as a vertical line."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    rows = max(1, len(causes))
    fig = Figure(figsize=(10, 1.0 + 1.6 * rows), dpi=dpi)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    incident = _dt(time_ms / 1000)
    for ax, (name, ts, z, onset) in zip(axes, causes, strict=False):
        t = [_dt(x / 1000) for x in np.asarray(ts).tolist()]
        ax.plot(t, z, color="black", linewidth=1.0)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(_dt(onset / 1000), color="tab:orange", linewidth=1.2, label="onset")
        ax.axvline(incident, color="tab:red", linewidth=1.0, linestyle="dashed", label="incident")
        ax.set_ylabel("σ", fontsize=8)
        ax.set_title(name if len(name) <= 110 else name[:107] + "…", fontsize=8, loc="left")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=7)
    axes[-1].xaxis_date(tz=UTC)
    axes[-1].xaxis.set_major_locator(loc := AutoDateLocator())
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(loc))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
