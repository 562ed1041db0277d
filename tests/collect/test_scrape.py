"""The scraper against a real HTTP server on a free loopback port (no HTTP mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydantic
import pytest

from perfintel.batch import SampleBatch
from perfintel.collect.host import HostCollector, run_host_collector
from perfintel.collect.schedule import next_tick, stable_offset
from perfintel.collect.scrape import ACCEPT_HEADER, ScrapeConfig, ScrapeOutcome, Scraper, Target
from perfintel.errors import ConfigError
from perfintel.model import STALE_NAN_BITS, format_series, is_stale, label_set
from perfintel.telemetry import Registry, ServiceMetrics

T0 = 1_700_000_000.0
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    content_type: str | None = TEXT
    gzip: bool = False
    delay_s: float = 0.0


@dataclass
class Exporter:
    """A tiny metrics endpoint: ``replies[path]`` is served; requests are recorded."""

    server: ThreadingHTTPServer
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    #: served when the client's Accept header asks for OpenMetrics first
    openmetrics: dict[str, Reply] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def serve(self, path: str, text: str, **kw: object) -> None:
        self.replies[path] = Reply(text.encode(), **kw)  # type: ignore[arg-type]


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    state: dict[str, Exporter] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ex = state["ex"]
            ex.requests.append({k.lower(): v for k, v in self.headers.items()})
            accept = self.headers.get("Accept", "")
            reply = None
            if accept.startswith("application/openmetrics-text"):
                reply = ex.openmetrics.get(self.path)
            reply = reply or ex.replies.get(self.path)
            if reply is None:
                self.send_error(404)
                return
            if reply.delay_s:
                time.sleep(reply.delay_s)
            body = gzip.compress(reply.body) if reply.gzip else reply.body
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            if reply.gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ex = state["ex"] = Exporter(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield ex
    server.shutdown()
    server.server_close()
    thread.join()


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Collecting:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    async def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)


def by_series(batch: SampleBatch) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for labels, ts, values in batch.iter_series():
        assert len(values) == 1, format_series(labels)
        out[format_series(labels)] = (int(ts[0]), float(values[0]))
    return out


def values(outcome: ScrapeOutcome) -> dict[str, float]:
    return {k: v for k, (_ts, v) in by_series(outcome.batch).items()}


def stale_series(outcome: ScrapeOutcome) -> set[str]:
    out = set()
    for labels, _ts, vals in outcome.batch.iter_series():
        if is_stale(vals).any():
            out.add(format_series(labels))
    return out


def make(
    exporter: Exporter, clock: FakeClock | None = None, **cfg: object
) -> tuple[Scraper, Collecting]:
    sink = Collecting()
    config = ScrapeConfig.model_validate({"job_name": "app", "targets": [exporter.address], **cfg})
    return Scraper([config], sink, clock=clock or FakeClock()), sink


def series(name: str, inst: str, **labels: str) -> str:
    return format_series(label_set({"__name__": name, "instance": inst, "job": "app", **labels}))


BODY = """\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200"} 5
http_requests_total{code="500",job="other",instance="elsewhere"} 1
# TYPE temperature gauge
temperature 21.5
"""


@pytest.mark.asyncio
async def test_up_labels_report_series_and_conflicts(exporter: Exporter) -> None:
    exporter.serve("/metrics", BODY)
    clock = FakeClock(T0 + 0.25)
    scraper, sink = make(exporter, clock, labels={"env": "test"})
    async with scraper:
        (target,) = scraper.targets
        out = await scraper.scrape_once(target)
    a = exporter.address
    assert out.up and out.error is None and out.parse_errors == []
    assert sink.batches == [out.batch]
    got = by_series(out.batch)
    ts = 1_700_000_000_250
    assert got[series("http_requests_total", a, code="200", env="test")] == (ts, 5.0)
    conflicting = series(
        "http_requests_total",
        a,
        code="500",
        env="test",
        exported_job="other",
        exported_instance="elsewhere",
    )
    assert got[conflicting] == (ts, 1.0)
    assert got[series("temperature", a, env="test")] == (ts, 21.5)
    assert got[series("up", a, env="test")] == (ts, 1.0)
    assert got[series("scrape_samples_scraped", a, env="test")] == (ts, 3.0)
    assert got[series("scrape_samples_post_metric_relabeling", a, env="test")] == (ts, 3.0)
    assert got[series("scrape_series_added", a, env="test")] == (ts, 3.0)
    duration = got[series("scrape_duration_seconds", a, env="test")]
    assert duration[0] == ts and duration[1] >= 0 and duration[1] == out.duration_s
    assert len(got) == 3 + 5
    assert out.samples_scraped == 3 and out.series_added == 3 and out.stale_markers == 0
    assert scraper.last_outcome(target) is out
    # What was asked for
    (req,) = exporter.requests
    assert req["accept"] == ACCEPT_HEADER
    assert req["accept"].startswith("application/openmetrics-text;version=1.0.0")
    assert "gzip" in req["accept-encoding"]
    assert req["x-prometheus-scrape-timeout-seconds"] == "10"
    assert req["user-agent"].startswith("perfintel/")


@pytest.mark.asyncio
async def test_honor_labels_keeps_scraped_values(exporter: Exporter) -> None:
    exporter.serve("/metrics", BODY)
    scraper, _ = make(exporter, honor_labels=True)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    got = values(out)
    assert got[format_series((("__name__", "http_requests_total"), ("code", "500"), ("instance", "elsewhere"), ("job", "other")))] == 1  # fmt: skip
    assert got[series("http_requests_total", exporter.address, code="200")] == 5
    assert not any("exported_" in k for k in got)


@pytest.mark.asyncio
async def test_honor_timestamps(exporter: Exporter) -> None:
    exporter.serve("/metrics", "with_ts 1 1600000000123\nwithout_ts 2\n")
    a = exporter.address
    scraper, _ = make(exporter)
    async with scraper:
        got = by_series((await scraper.scrape_once(scraper.targets[0])).batch)
    assert got[series("with_ts", a)] == (1_600_000_000_123, 1.0)
    assert got[series("without_ts", a)] == (1_700_000_000_000, 2.0)

    scraper, _ = make(exporter, honor_timestamps=False)
    async with scraper:
        got = by_series((await scraper.scrape_once(scraper.targets[0])).batch)
    assert got[series("with_ts", a)] == (1_700_000_000_000, 1.0)


@pytest.mark.asyncio
async def test_series_with_explicit_timestamps_get_no_staleness_markers(
    exporter: Exporter,
) -> None:
    a = exporter.address
    clock = FakeClock()
    scraper, _ = make(exporter, clock)
    async with scraper:
        (target,) = scraper.targets
        exporter.serve("/metrics", "with_ts 1 1600000000123\nwithout_ts 2\n")
        await scraper.scrape_once(target)
        clock.now += 15
        exporter.serve("/metrics", "other 3\n")
        out = await scraper.scrape_once(target)
    assert stale_series(out) == {series("without_ts", a)}


@pytest.mark.asyncio
async def test_staleness_when_a_series_disappears(exporter: Exporter) -> None:
    a = exporter.address
    clock = FakeClock()
    scraper, _ = make(exporter, clock)
    async with scraper:
        (target,) = scraper.targets
        exporter.serve("/metrics", "a 1\nb 2\n")
        first = await scraper.scrape_once(target)
        assert stale_series(first) == set()

        clock.now += 15
        exporter.serve("/metrics", "a 3\nc 4\n")
        second = await scraper.scrape_once(target)
        assert stale_series(second) == {series("b", a)}
        ts, _ = by_series(second.batch)[series("b", a)]
        assert ts == 1_700_000_015_000
        (b_values,) = [
            v for labels, _, v in second.batch.iter_series() if dict(labels)["__name__"] == "b"
        ]
        assert b_values.view(np.uint64)[0] == STALE_NAN_BITS  # bit-exact marker
        assert second.stale_markers == 1
        assert second.series_added == 1  # c
        assert values(second)[series("scrape_series_added", a)] == 1

        clock.now += 15
        third = await scraper.scrape_once(target)
        assert stale_series(third) == set()  # b was marked once; nothing else went away
        assert third.series_added == 0


@pytest.mark.asyncio
async def test_target_down_marks_everything_stale_once(exporter: Exporter) -> None:
    a = exporter.address
    clock = FakeClock()
    metrics = ServiceMetrics(Registry(), version="t")
    sink = Collecting()
    cfg = ScrapeConfig(job_name="app", targets=[a])
    async with Scraper([cfg], sink, clock=clock, metrics=metrics) as scraper:
        (target,) = scraper.targets
        exporter.serve("/metrics", "a 1\nb 2\n")
        await scraper.scrape_once(target)

        clock.now += 15
        exporter.serve("/metrics", "oops", status=503, content_type="text/plain")
        down = await scraper.scrape_once(target)
        assert not down.up
        assert down.error is not None and "503" in down.error
        assert stale_series(down) == {series("a", a), series("b", a)}
        got = values(down)
        assert got[series("up", a)] == 0
        assert got[series("scrape_samples_scraped", a)] == 0
        assert got[series("scrape_series_added", a)] == 0
        assert series("scrape_duration_seconds", a) in got

        clock.now += 15
        again = await scraper.scrape_once(target)
        assert not again.up and stale_series(again) == set()

        clock.now += 15
        exporter.serve("/metrics", "a 5\n")
        back = await scraper.scrape_once(target)
        assert back.up and back.series_added == 1
    assert metrics.scrapes.labels(job="app", result="success").get() == 2
    assert metrics.scrapes.labels(job="app", result="failure").get() == 2


@pytest.mark.asyncio
async def test_connection_refused_is_down() -> None:
    # Bind then close a socket to get a port nobody listens on.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = Collecting()
    cfg = ScrapeConfig(job_name="app", targets=[f"127.0.0.1:{port}"], timeout_s=5)
    async with Scraper([cfg], sink, clock=FakeClock()) as scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert not out.up
    assert out.error is not None and "Connect" in out.error
    assert values(out)[series("up", f"127.0.0.1:{port}")] == 0


@pytest.mark.asyncio
async def test_timeout_is_down(exporter: Exporter) -> None:
    exporter.replies["/metrics"] = Reply(b"a 1\n", delay_s=2.0)
    scraper, _ = make(exporter, interval_s=1, timeout_s=0.2)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert not out.up
    assert out.error == "scrape timed out after 0.2s"


@pytest.mark.asyncio
async def test_gzip_body(exporter: Exporter) -> None:
    exporter.serve("/metrics", "zipped_total 42\nother 1\n", gzip=True)
    scraper, _ = make(exporter)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert out.up, out.error
    assert values(out)[series("zipped_total", exporter.address)] == 42


@pytest.mark.asyncio
async def test_openmetrics_is_negotiated_and_its_seconds_timestamps_understood(
    exporter: Exporter,
) -> None:
    exporter.serve("/metrics", "classic 1 1600000000000\n")
    exporter.openmetrics["/metrics"] = Reply(
        b"# TYPE jobs counter\njobs_total 7 1600000000.5\n# EOF\n", content_type=OPENMETRICS
    )
    scraper, _ = make(exporter)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert out.up, out.error
    got = by_series(out.batch)
    assert got[series("jobs_total", exporter.address)] == (1_600_000_000_500, 7.0)
    assert series("classic", exporter.address) not in got


@pytest.mark.asyncio
async def test_garbage_fails_the_scrape_like_prometheus(exporter: Exporter) -> None:
    a = exporter.address
    scraper, _ = make(exporter)
    async with scraper:
        (target,) = scraper.targets
        exporter.serve("/metrics", "good 1\n")
        await scraper.scrape_once(target)
        exporter.serve("/metrics", "good 2\nthis is { not an exposition\n")
        out = await scraper.scrape_once(target)
    assert not out.up
    assert out.parse_errors and out.error is not None and out.error.startswith("invalid exposition")
    got = values(out)
    assert got[series("up", a)] == 0
    assert series("good", a) in stale_series(out)  # nothing of the bad payload is kept
    assert out.samples_scraped == 0


@pytest.mark.asyncio
async def test_sample_and_body_limits(exporter: Exporter) -> None:
    exporter.serve("/metrics", "".join(f"m{i} {i}\n" for i in range(10)))
    scraper, _ = make(exporter, sample_limit=5)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert not out.up and out.error is not None and "sample limit" in out.error

    scraper, _ = make(exporter, body_size_limit_bytes=20)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert not out.up and out.error is not None and "20-byte" in out.error

    exporter.serve("/metrics", "x 1\n" * 100, gzip=True)  # small on the wire, 400 bytes decoded
    scraper, _ = make(exporter, body_size_limit_bytes=100)
    async with scraper:
        out = await scraper.scrape_once(scraper.targets[0])
    assert not out.up and out.error is not None and "100-byte" in out.error


@pytest.mark.asyncio
async def test_url_targets_and_missing_content_type(exporter: Exporter) -> None:
    exporter.serve("/custom?format=prom", "custom 1\n", content_type=None)
    cfg = ScrapeConfig(job_name="app", targets=[f"http://{exporter.address}/custom?format=prom"])
    sink = Collecting()
    async with Scraper([cfg], sink, clock=FakeClock()) as scraper:
        (target,) = scraper.targets
        assert target.instance == exporter.address
        out = await scraper.scrape_once(target)
    assert out.up, out.error
    assert values(out)[series("custom", exporter.address)] == 1


@pytest.mark.asyncio
async def test_run_scrapes_repeatedly_until_cancelled(exporter: Exporter) -> None:
    exporter.serve("/metrics", "a 1\n")
    enough = asyncio.Event()
    batches: list[SampleBatch] = []

    async def sink(batch: SampleBatch) -> None:
        batches.append(batch)
        if len(batches) >= 3:
            enough.set()

    cfg = ScrapeConfig(job_name="app", targets=[exporter.address], interval_s=0.05, timeout_s=0.05)
    scraper = Scraper([cfg], sink)
    task = asyncio.create_task(scraper.run())
    await asyncio.wait_for(enough.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stamps = [int(b.timestamps[0]) for b in batches[:3]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


@pytest.mark.asyncio
async def test_run_host_collector_hands_batches_to_the_sink() -> None:
    fixtures = Path(__file__).parent / "fixtures"
    collector = HostCollector(fixtures / "proc", fixtures / "sys", hostname="h", statvfs=os.statvfs)
    got: list[SampleBatch] = []
    done = asyncio.Event()

    async def sink(batch: SampleBatch) -> None:
        got.append(batch)
        done.set()

    task = asyncio.create_task(run_host_collector(collector, sink, interval_s=0.05))
    await asyncio.wait_for(done.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    names = {dict(s)["__name__"] for s in got[0].series}
    assert {"node_load1", "node_memory_MemTotal_bytes", "node_cpu_seconds_total"} <= names


def test_config_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], interval_s=5, timeout_s=10)
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], labels={"bad-name": "x"})
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], labels={"job": "x"})
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], scheme="ftp")
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["ftp://h:1/x"])
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], metrics_path="metrics")
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="", targets=["h:1"])
    with pytest.raises(pydantic.ValidationError):
        ScrapeConfig(job_name="a", targets=["h:1"], unknown=1)  # type: ignore[call-arg]
    cfg = ScrapeConfig(
        job_name="a",
        targets=[
            "h:9100",
            "https://x.example:8443",
            "https://x.example:8443",
            "http://u@y:1/p?q=1",
        ],
        scheme="https",
        metrics_path="/m",
    )
    assert [(t.url, t.instance) for t in cfg.target_list()] == [
        ("https://h:9100/m", "h:9100"),
        ("https://x.example:8443/m", "x.example:8443"),
        ("http://u@y:1/p?q=1", "y:1"),
    ]
    with pytest.raises(ConfigError):
        Scraper([cfg, cfg], Collecting())


def test_offsets_are_stable_and_spread() -> None:
    cfg = ScrapeConfig(job_name="a", targets=[f"h{i}:9100" for i in range(50)], interval_s=15)
    s1 = Scraper([cfg], Collecting())
    s2 = Scraper([cfg], Collecting())
    offsets = [s1.offset_s(t) for t in s1.targets]
    assert offsets == [s2.offset_s(t) for t in s2.targets]
    assert all(0 <= o < 15 for o in offsets)
    assert len(set(offsets)) > 40
    seeded = Scraper([cfg], Collecting(), jitter_seed="other-server")
    assert [seeded.offset_s(t) for t in seeded.targets] != offsets
    assert stable_offset("k", 10) == stable_offset("k", 10)
    assert next_tick(100.0, 15.0, 5.0) == 110.0
    assert next_tick(110.0, 15.0, 5.0) == 110.0
    assert math.isclose(next_tick(110.5, 15.0, 5.0), 125.0)


def test_target_identity() -> None:
    cfg = ScrapeConfig(job_name="a", targets=["h:1"])
    (t,) = cfg.target_list()
    assert t == Target("a", "http://h:1/metrics", "h:1", t.labels, cfg)
    assert dict(t.labels) == {"job": "a", "instance": "h:1"}
