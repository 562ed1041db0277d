"""The capacity chart keeps its whole title and labels its axes with units (issue 10, item 15).

Before, a long summary sentence ran off both sides of the PNG and the y axis had
neither a label nor a unit (raw numbers like 7e11).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from perfintel.batch import SampleBatch
from perfintel.model import label_set, parse_selector
from perfintel.performance import capacity as cap
from perfintel.performance.history import DAY_MS, choose_window
from perfintel.performance.plot import axis_unit, capacity_figure, capacity_png
from perfintel.storage.memory import MemoryStore

END = int(time.time() * 1000) // 3_600_000 * 3_600_000


def _plan(name: str, resource: str | None = None) -> cap.ResourcePlan:
    store = MemoryStore()
    ts = np.arange(END - 20 * DAY_MS, END, 3_600_000)
    used = 700e9 + 10e9 * (ts - END) / DAY_MS + np.random.default_rng(2).normal(0, 1e8, ts.size)
    store.append(SampleBatch.from_arrays(label_set({"__name__": name, "mount": "/"}), ts, used))
    window = choose_window(30 * DAY_MS, step_ms=3_600_000, history_ms=20 * DAY_MS)
    analysis = cap.analyze(
        store, parse_selector(name), 1000e9, window, end_ms=END, resource=resource
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
