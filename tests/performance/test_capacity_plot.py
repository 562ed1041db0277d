"""The capacity chart keeps its whole title and labels its axes with units (issue 10, item 15).

Before, a long summary sentence ran off both sides of the PNG and the y axis had
neither a label nor a unit (raw numbers like 7e11).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.performance import capacity as cap
from perfintel.performance.history import DAY_MS, choose_window
from perfintel.performance.plot import axis_unit, capacity_figure, capacity_png
from perfintel.storage.memory import MemoryStore

END = int(time.time() * 1000) // 3_600_000 * 3_600_000


def _plan(name: str, resource: str | None = None, projection: bool = False) -> cap.ResourcePlan:
    store = MemoryStore()
    ts = np.arange(END - 20 * DAY_MS, END, 3_600_000)
    used = 700e9 + 10e9 * (ts - END) / DAY_MS + np.random.default_rng(2).normal(0, 1e8, ts.size)
    store.append(SampleBatch.from_arrays(label_set({"__name__": name, "mount": "/"}), ts, used))
    window = choose_window(30 * DAY_MS, step_ms=3_600_000, history_ms=20 * DAY_MS)
    analysis = cap.analyze(
        store,
        parse_selector(name),
        1000e9,
        window,
        end_ms=END,
        resource=resource,
        projection=projection,
    )
    [plan] = analysis.resources
    return plan


@pytest.mark.parametrize(
    "resource", [None, "the shared storage volume of the analytics cluster in region eu-west"]
)
def test_title_fits_and_axes_have_units(resource: str | None) -> None:
    plan = _plan("node_filesystem_used_bytes", resource)
    fig = capacity_figure(plan, 0.8)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, box
    assert ax.title.get_text().replace("\n", " ") == plan.report.summary
    assert ax.get_ylabel().endswith("(bytes)") and ax.get_xlabel() == "time (UTC)"
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert any(t.endswith("GB") or t.endswith("TB") for t in ticks), ticks
    assert capacity_png(plan, 0.8).startswith(b"\x89PNG")


def test_units_follow_prometheus_names() -> None:
    assert axis_unit(_plan("job_duration_seconds")) == ("seconds", "s")
    assert axis_unit(_plan("cpu_busy_percent")) == ("%", "")
    assert axis_unit(_plan("queue_depth")) == ("", "")


def test_the_png_draws_the_projected_usage_band_and_p50() -> None:
    # as the dashboard's Capacity page: the plan's own projection, P50 dashed and a P10–P90
    # band of usage after the history; without a projection the chart has neither
    plan = _plan("node_filesystem_used_bytes", projection=True)
    proj = plan.report.projection
    assert proj is not None
    ax = capacity_figure(plan, 0.8).axes[0]
    [band] = [c for c in ax.collections if c.get_label() == "projected usage P10–P90"]
    [p50] = [x for x in ax.get_lines() if x.get_label() == "projected usage P50"]
    assert p50.get_linestyle() == "--"
    n = len(p50.get_ydata())
    assert n >= 100 and np.array_equal(np.asarray(p50.get_ydata()), proj.p50[:n])
    # the band spans P10 to P90 from after the last sample up to the horizon (its P90
    # exhaustion lies beyond)
    verts = band.get_paths()[0].vertices
    last = END / 1000 - 3600
    assert plan.report.baseline.p90 is None
    assert verts[:, 0].min() > date2num(datetime.fromtimestamp(last, UTC))
    assert verts[:, 0].max() == pytest.approx(
        date2num(datetime.fromtimestamp(last + 30 * 86_400, UTC))
    )
    assert verts[:, 1].min() == pytest.approx(proj.p10.min())
    assert verts[:, 1].max() == pytest.approx(proj.p90.max())
    assert n == proj.p50.size
    # the exhaustion windows stay
    assert any(c.get_label() == "+30% traffic P10–P90" for c in ax.patches)
    bare = capacity_figure(_plan("node_filesystem_used_bytes"), 0.8).axes[0]
    assert not any(c.get_label().startswith("projected") for c in bare.collections)
    assert not any(x.get_label().startswith("projected") for x in bare.get_lines())
