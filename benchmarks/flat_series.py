"""Anomalies of series that were constant: what the online path, the detect API and the
overview say when a flat series moves.

The service runs in-process (``create_app``: the real ingest endpoint, a DuckDB data
directory in a temporary folder, the online detector, the overview); the series are
ingested through ``POST /api/v1/ingest`` with timestamps ending at the current minute:

* ``queue_step_<s>`` — 0 for ``--days`` days of 1-minute samples, then ``s`` for five
  minutes (one per ``--steps``);
* ``gauge_3_to_13`` — 3 for ``--days`` days, then 13 for five minutes;
* ``util_drop_to_0`` / ``util_pegged_at_1`` — a utilisation of 0.5 ± 0.02 (a float
  series) for ``--days`` days, then exactly 0 (an outage) or exactly 1 (saturation) for
  five minutes: whole numbers, but not a count's, so not a count's resolution floor;
* ``busy_queue`` — 0 for ``--days`` days, then a Poisson count (mean 0.7) for 8 hours;
* ``api_latency`` — a daily sine around 100 with noise 1.5 and +50 for four minutes an
  hour ago: an incident, for comparison.

Prints, per series: the peak online ``anomaly_score``; the share of online scores above 1
over hours 1-8 of the busy queue; the detect API's events (``POST
/api/v1/performance/detect/anomalies``, the last day, default warm-up) with severity and
explanation; and the overview's anomaly list in order. Never a pass/fail.

    .venv/bin/python benchmarks/flat_series.py [--days 2] [--steps 1,10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perfintel.api.app import create_app  # noqa: E402
from perfintel.config import load_settings  # noqa: E402
from perfintel.model import parse_selector  # noqa: E402

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def _series(days: float, steps: list[float], now: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    ts = np.arange(now - int(days * DAY) - 4 * MIN, now + 1, MIN)
    moved = ts >= now - 4 * MIN
    for s in steps:
        out[f"queue_step_{s:g}"] = (ts, np.where(moved, s, 0.0))
    out["gauge_3_to_13"] = (ts, np.where(moved, 13.0, 3.0))
    util = 0.5 + 0.02 * np.random.default_rng(3).standard_normal(ts.size)
    out["util_drop_to_0"] = (ts, np.where(moved, 0.0, util))
    out["util_pegged_at_1"] = (ts, np.where(moved, 1.0, util))
    busy_ts = np.arange(now - int(days * DAY) - 8 * HOUR, now + 1, MIN)
    busy = np.random.default_rng(1).poisson(0.7, busy_ts.size).astype(float)
    out["busy_queue"] = (busy_ts, np.where(busy_ts >= now - 8 * HOUR, busy, 0.0))
    lat = 100 + 30 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    lat = lat + np.random.default_rng(7).normal(0, 1.5, ts.size)
    spike = (ts >= now - HOUR) & (ts < now - HOUR + 4 * MIN)
    out["api_latency"] = (ts, np.where(spike, lat + 50, lat))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=2.0, help="days constant before the move")
    ap.add_argument("--steps", default="1,10", help="sizes of the move, comma-separated")
    args = ap.parse_args()
    steps = [float(s) for s in args.steps.split(",")]
    now = int(time.time() * 1000) // MIN * MIN
    data = Path(tempfile.mkdtemp(prefix="flat-")) / "data"
    settings = load_settings(
        overrides={"data_dir": data, "storage": {"raw_retention": "36500d"}}, env={}
    )
    series = _series(args.days, steps, now)
    with TestClient(create_app(settings, collectors=False)) as c:
        for name, (ts, v) in series.items():
            for i in range(0, ts.size, 240):
                samples = [
                    [int(t), float(x)] for t, x in zip(ts[i : i + 240], v[i : i + 240], strict=True)
                ]
                body = {"series": [{"metric": name, "labels": {"host": "a"}, "samples": samples}]}
                r = c.post("/api/v1/ingest", json=body)
                r.raise_for_status()
        app_state = c.app.state  # type: ignore[attr-defined]
        if not app_state.anomaly.wait_idle(timeout=300):
            raise SystemExit("the online detector did not finish")
        store = app_state.store
        print("online anomaly_score (peak over the last day):")
        for name in series:
            sel = parse_selector(f'anomaly_score{{for="{name}"}}')
            found = store.select(sel, now - DAY, now + MIN)
            v = found[0].values if found else np.array([np.nan])
            print(f"  {name:18} {float(np.nanmax(v)):.6g}")
        sel = parse_selector('anomaly_score{for="busy_queue"}')
        (busy,) = store.select(sel, now - 7 * HOUR, now + MIN)
        share = float((busy.values > 1).mean())
        print(f"busy_queue: share of online scores > 1 in hours 1-8 after it left 0: {share:.3f}")
        print("detect API events (last day):")
        for name in series:
            r = c.post(
                "/api/v1/performance/detect/anomalies",
                json={"selector": name, "start": "now-1d", "end": "now+1m"},
            )
            r.raise_for_status()
            for s in r.json()["data"]["series"]:
                for e in s["anomalies"]:
                    print(f"  {name}: {e['severity']}: {e['explanation']}")
        app_state.overview.refresh(["signals", "anomalies"])
        doc = c.get("/api/v1/performance/dashboard/realtime").json()["data"]
        print("overview anomaly list, in order:")
        for a in doc["anomalies"]:
            print(f"  {a['metric']:18} online peak {a['online_peak_score']:.6g}  {a['severity']}")


if __name__ == "__main__":
    main()
