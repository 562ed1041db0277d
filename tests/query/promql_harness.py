"""Shared by the PromQL compatibility test and ``benchmarks/promql.py``.

* ``generate_dataset``: deterministic series (counters with resets, gauges,
  classic histograms, sparse, ending and jittered series).
* ``PrometheusServer``: loads series into a real Prometheus through
  ``promtool tsdb create-blocks-from openmetrics`` and runs ``/usr/bin/prometheus``
  on a free loopback port.
* ``compare``: the difference between two Prometheus API JSON answers.

Staleness markers cannot be written in OpenMetrics, so series that "go stale"
here simply stop: both engines then drop them once the 5-minute lookback
has passed (the staleness-marker path is covered by unit tests instead).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from perfintel.batch import SampleBatch

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
HOUR = 3_600_000


@dataclass
class RawSeries:
    labels: dict[str, str]
    timestamps: np.ndarray  # int64 ms, whole seconds
    values: np.ndarray


def dataset_base(now_s: float | None = None) -> int:
    """Start of the generated data: whole hour about 30 h ago (well inside retention)."""
    now = int((time.time() if now_s is None else now_s) * 1000)
    return (now - 30 * HOUR) // HOUR * HOUR


def _grid(
    base: int, span: int, step: int, rng: np.random.Generator, jitter_s: int = 0
) -> np.ndarray:
    ts = np.arange(base, base + span, step, dtype=np.int64)
    if jitter_s:
        ts = ts + rng.integers(-jitter_s, jitter_s + 1, len(ts)) * 1000
    return np.unique(ts)


def _counter(rng: np.random.Generator, n: int, rate: float, resets: int) -> np.ndarray:
    inc = rng.gamma(2.0, rate / 2.0, n)
    vals = np.cumsum(inc)
    for at in sorted(rng.choice(np.arange(5, n - 5), size=resets, replace=False)):
        vals[at:] -= vals[at] - rng.uniform(0, 3)
    return np.round(vals, 3)


def generate_dataset(base: int, hours: int = 6, seed: int = 7) -> list[RawSeries]:
    rng = np.random.default_rng(seed)
    span = hours * HOUR
    out: list[RawSeries] = []
    for svc in ("api", "web", "db"):
        for inst in ("0", "1"):
            for code in ("200", "500"):
                ts = _grid(base, span, 15_000, rng)
                rate = 20.0 if code == "200" else 0.5
                resets = int(rng.integers(0, 3))
                out.append(
                    RawSeries(
                        {
                            "__name__": "http_requests_total",
                            "service": svc,
                            "instance": inst,
                            "code": code,
                        },
                        ts,
                        _counter(rng, len(ts), rate, resets),
                    )
                )
            ts = _grid(base, span, 15_000, rng)
            walk = np.cumsum(rng.normal(0, 0.2, len(ts))) + (3 if inst == "0" else -1)
            out.append(
                RawSeries(
                    {"__name__": "node_load", "service": svc, "instance": inst},
                    ts,
                    np.round(walk, 4),
                )
            )
            ts = _grid(base, span, 30_000, rng)
            out.append(
                RawSeries(
                    {"__name__": "memory_bytes", "service": svc, "instance": inst},
                    ts,
                    np.round(rng.uniform(1e8, 4e9, len(ts))),
                )
            )
    # Classic histograms: cumulative counters per bucket, +Inf equal to _count.
    bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
    for svc in ("api", "web"):
        ts = _grid(base, span, 15_000, rng)
        obs = rng.poisson(30, len(ts))
        per_bucket = rng.dirichlet(np.ones(len(bounds)), len(ts)) * obs[:, None]
        cum = np.cumsum(np.cumsum(np.floor(per_bucket), axis=1), axis=0)
        cum[:, -1] = np.maximum(cum[:, -1], cum[:, -2])
        for j, le in enumerate(bounds):
            out.append(
                RawSeries(
                    {"__name__": "latency_seconds_bucket", "service": svc, "le": le}, ts, cum[:, j]
                )
            )
        out.append(
            RawSeries({"__name__": "latency_seconds_count", "service": svc}, ts, cum[:, -1].copy())
        )
        out.append(
            RawSeries(
                {"__name__": "latency_seconds_sum", "service": svc},
                ts,
                np.round(np.cumsum(obs * 0.2), 3),
            )
        )
    # Sparse series: a sample every 4-11 minutes, so lookback gaps appear.
    for sid in ("a", "b"):
        gaps = rng.integers(240, 660, 120) * 1000
        ts = base + np.cumsum(gaps)
        ts = ts[ts < base + span]
        out.append(
            RawSeries(
                {"__name__": "sparse_metric", "id": sid},
                ts,
                np.round(rng.normal(10, 5, len(ts)), 2),
            )
        )
    # Series that end (go stale) or start in the middle of the data.
    for job, (lo, hi) in {"early": (0, 2.5), "late": (3.2, 6), "middle": (1.5, 3.7)}.items():
        ts = _grid(base + int(lo * HOUR), int((hi - lo) * HOUR), 20_000, rng)
        out.append(
            RawSeries(
                {"__name__": "batch_jobs_total", "job": job},
                ts,
                np.cumsum(rng.integers(0, 5, len(ts))).astype(float),
            )
        )
        out.append(
            RawSeries(
                {"__name__": "batch_progress", "job": job},
                ts,
                np.round(rng.uniform(0, 100, len(ts)), 1),
            )
        )
    # A jittered scrape with a reset and a few odd values.
    ts = _grid(base, span, 10_000, rng, jitter_s=3)
    out.append(
        RawSeries({"__name__": "jitter_total", "host": "x"}, ts, _counter(rng, len(ts), 3.0, 2))
    )
    ts = _grid(base, span, 60_000, rng)
    odd = np.round(rng.normal(0, 1, len(ts)), 3)
    odd[[10, 100, 200]] = [math.nan, math.inf, -math.inf]
    out.append(RawSeries({"__name__": "odd_values", "kind": "nan_inf"}, ts, odd))
    return out


def to_batches(series: Iterable[RawSeries]) -> list[SampleBatch]:
    return [SampleBatch.from_arrays(s.labels, s.timestamps, s.values) for s in series]


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def write_openmetrics(series: Iterable[RawSeries], path: Path) -> None:
    """One family after another (sorted by name), each series' samples in time order."""
    by_name: dict[str, list[RawSeries]] = {}
    for s in series:
        by_name.setdefault(s.labels["__name__"], []).append(s)
    with path.open("w", encoding="utf-8") as fh:
        for name in sorted(by_name):
            for s in by_name[name]:
                rest = ",".join(
                    f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()) if k != "__name__"
                )
                head = f"{name}{{{rest}}}" if rest else name
                secs = (s.timestamps // 1000).tolist()
                fh.write(
                    "".join(
                        f"{head} {_fmt(v)} {t}\n"
                        for t, v in zip(secs, s.values.tolist(), strict=True)
                    )
                )
        fh.write("# EOF\n")


def vm_store(url: str) -> Any:
    """A ``RemoteStore`` on the VictoriaMetrics at ``url``, in a namespace of its own."""
    import uuid

    from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions

    ns = ("pi_test", uuid.uuid4().hex)
    return RemoteStore(RemoteStoreOptions.single_node(url, namespace=ns))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A real Prometheus serving ``series`` from blocks built with promtool."""

    def __init__(
        self,
        series: Iterable[RawSeries],
        workdir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not (os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL)):
            raise RuntimeError(f"{PROMETHEUS} and {PROMTOOL} are required")
        self._own = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="promcompat-")) if workdir is None else workdir
        self.series = series
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> PrometheusServer:
        data = self.dir / "data"
        om = self.dir / "data.om"
        write_openmetrics(self.series, om)
        subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(data)],
            check=True,
            capture_output=True,
        )
        om.unlink()
        cfg = self.dir / "prometheus.yml"
        cfg.write_text("global:\n  evaluation_interval: 1m\n  scrape_interval: 1m\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=100y",
                "--log.level=warn",
                "--enable-feature=promql-negative-offset,promql-at-modifier",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "prometheus.log").open("wb"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "prometheus exited: " + (self.dir / "prometheus.log").read_text()[-2000:]
                )
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready in 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- comparing answers ---------------------------------------------------------------


def _close(a: str, b: str, rel: float) -> bool:
    if a == b:
        return True
    x, y = float(a), float(b)
    if math.isnan(x) and math.isnan(y):
        return True
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= rel * max(abs(x), abs(y))


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def _points(item: dict[str, Any]) -> list[list[Any]]:
    return item["values"] if "values" in item else [item["value"]]


def compare(
    ours: dict[str, Any], theirs: dict[str, Any], rel: float = 1e-9, ordered: bool = False
) -> list[str]:
    """Differences between two API answers (empty when they agree); ``ordered`` also
    compares the order of the series (``sort()`` in an instant query)."""
    if theirs.get("status") != ours.get("status"):
        return [
            f"status differs: prometheus {theirs.get('status')} {theirs.get('error', '')!r}, perfintel {ours.get('status')} {ours.get('error', '')!r}"
        ]
    if theirs["status"] == "error":
        if theirs.get("errorType") != ours.get("errorType"):
            return [
                f"errorType differs: prometheus {theirs.get('errorType')}, perfintel {ours.get('errorType')}"
            ]
        return []
    td, od = theirs["data"], ours["data"]
    if td["resultType"] != od["resultType"]:
        return [f"resultType differs: prometheus {td['resultType']}, perfintel {od['resultType']}"]
    if td["resultType"] in ("scalar", "string"):
        t, o = td["result"], od["result"]
        if td["resultType"] == "scalar":
            same = float(t[0]) == float(o[0]) and _close(o[1], t[1], rel)
        else:
            same = t == o
        if not same:
            return [f"{td['resultType']} differs: prometheus {t}, perfintel {o}"]
        return []
    tmap = {_key(s["metric"]): _points(s) for s in td["result"]}
    omap = {_key(s["metric"]): _points(s) for s in od["result"]}
    diffs: list[str] = []
    if ordered and [_key(s["metric"]) for s in td["result"]] != [
        _key(s["metric"]) for s in od["result"]
    ]:
        diffs.append("series come in a different order")
    for k in sorted(set(tmap) - set(omap)):
        diffs.append(f"series only in prometheus: {dict(k)} ({len(tmap[k])} points)")
    for k in sorted(set(omap) - set(tmap)):
        diffs.append(f"series only in perfintel: {dict(k)} ({len(omap[k])} points)")
    for k in sorted(set(tmap) & set(omap)):
        tp = {float(t): v for t, v in tmap[k]}
        op = {float(t): v for t, v in omap[k]}
        missing = sorted(set(tp) - set(op))
        extra = sorted(set(op) - set(tp))
        if missing:
            diffs.append(
                f"{dict(k)}: {len(missing)} timestamps only in prometheus, first {missing[:3]}"
            )
        if extra:
            diffs.append(f"{dict(k)}: {len(extra)} timestamps only in perfintel, first {extra[:3]}")
        bad = [
            (t, tp[t], op[t]) for t in sorted(set(tp) & set(op)) if not _close(op[t], tp[t], rel)
        ]
        if bad:
            t, a, b = bad[0]
            diffs.append(
                f"{dict(k)}: {len(bad)} values differ, first at {t}: prometheus {a}, perfintel {b}"
            )
    return diffs


class AppServer:
    """Serve an ASGI app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("perfintel test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def bit_identical(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[int, int]:
    """``(points whose value strings are identical, points in Prometheus's answer)``."""
    if theirs.get("status") != "success" or ours.get("status") != "success":
        return 0, 0
    td, od = theirs["data"], ours["data"]
    if td["resultType"] not in ("matrix", "vector") or od["resultType"] != td["resultType"]:
        return 0, 0
    omap = {_key(s["metric"]): dict((float(t), v) for t, v in _points(s)) for s in od["result"]}
    same = total = 0
    for s in td["result"]:
        mine = omap.get(_key(s["metric"]), {})
        for t, v in _points(s):
            total += 1
            same += mine.get(float(t)) == v
    return same, total
