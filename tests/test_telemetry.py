"""The self-metrics registry: exposition format, histogram semantics, callbacks, thread-safety."""

from __future__ import annotations

import math
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel.ingest.prometheus_text import parse_prometheus_text
from perfintel.model import format_series
from perfintel.telemetry import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    Registry,
    ServiceMetrics,
)

_SAMPLE_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})? (\S+)$'
)


def check_exposition(text: bytes) -> dict[str, float]:
    """Validate the 0.0.4 line grammar strictly; return ``series text -> value``."""
    assert text.endswith(b"\n")
    out: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.decode("utf-8").split("\n")[:-1]:
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in typed
            typed.add(name)
            continue
        m = _SAMPLE_LINE.match(line)
        assert m, f"bad sample line {line!r}"
        value = m.group(5)
        assert value in {"NaN", "+Inf", "-Inf"} or re.fullmatch(r"-?[0-9.e+-]+", value), line
        out[line.rsplit(" ", 1)[0]] = float(value)
    return out


def parsed(registry: Registry) -> dict[str, float]:
    """What perfintel's own exposition parser reads from the rendered page."""
    result = parse_prometheus_text(registry.render(), default_timestamp_ms=1000, openmetrics=False)
    assert result.errors == []
    return {
        format_series(labels): float(values[-1])
        for labels, _ts, values in result.batch.iter_series()
    }


def test_render_format_and_escaping() -> None:
    reg = Registry()
    c = Counter(
        "app_events_total", 'Events "seen".\nSecond line \\ backslash.', ["kind"], registry=reg
    )
    c.labels('quote " back \\ newline \n end').inc(2)
    c.labels(kind="plain").inc()
    g = Gauge("app_temperature", "A gauge.", registry=reg)
    g.set(-1.5)
    text = reg.render()
    assert text == (
        b'# HELP app_events_total Events "seen".\\nSecond line \\\\ backslash.\n'
        b"# TYPE app_events_total counter\n"
        b'app_events_total{kind="plain"} 1\n'
        b'app_events_total{kind="quote \\" back \\\\ newline \\n end"} 2\n'
        b"# HELP app_temperature A gauge.\n"
        b"# TYPE app_temperature gauge\n"
        b"app_temperature -1.5\n"
    )
    check_exposition(text)
    got = parsed(reg)
    assert got['app_events_total{kind="quote \\" back \\\\ newline \\n end"}'] == 2
    assert got["app_temperature"] == -1.5
    assert CONTENT_TYPE_LATEST.startswith("text/plain; version=0.0.4")


def test_special_values() -> None:
    reg = Registry()
    g = Gauge("g", "special", ["v"], registry=reg)
    g.labels("nan").set(math.nan)
    g.labels("inf").set(math.inf)
    g.labels("ninf").set(-math.inf)
    g.labels("big").set(1e300)
    g.labels("small").set(1.25e-7)
    lines = reg.render().decode().splitlines()
    assert 'g{v="nan"} NaN' in lines
    assert 'g{v="inf"} +Inf' in lines
    assert 'g{v="ninf"} -Inf' in lines
    values = check_exposition(reg.render())
    assert values['g{v="big"}'] == 1e300
    assert values['g{v="small"}'] == 1.25e-7


def test_histogram_buckets_are_cumulative_and_end_at_inf() -> None:
    reg = Registry()
    h = Histogram("lat_seconds", "Latency.", ["ep"], buckets=[0.1, 0.5, 1], registry=reg)
    child = h.labels("q")
    for v in (0.05, 0.1, 0.3, 0.5, 0.7, 2.0, 100.0):
        child.observe(v)
    text = reg.render().decode()
    assert text.splitlines() == [
        "# HELP lat_seconds Latency.",
        "# TYPE lat_seconds histogram",
        'lat_seconds_bucket{ep="q",le="0.1"} 2',  # 0.05 and 0.1 (le is inclusive)
        'lat_seconds_bucket{ep="q",le="0.5"} 4',
        'lat_seconds_bucket{ep="q",le="1.0"} 5',
        'lat_seconds_bucket{ep="q",le="+Inf"} 7',
        'lat_seconds_sum{ep="q"} 103.65',
        'lat_seconds_count{ep="q"} 7',
    ]
    got = parsed(reg)
    assert got['lat_seconds_bucket{ep="q",le="+Inf"}'] == got['lat_seconds_count{ep="q"}'] == 7


def test_histogram_rejects_bad_buckets_and_le_label() -> None:
    with pytest.raises(ValueError):
        Histogram("h1", "x", buckets=[1, 0.5])
    with pytest.raises(ValueError):
        Histogram("h2", "x", ["le"])
    reg = Registry()
    h = Histogram("h3", "x", buckets=[1, math.inf], registry=reg)
    h.observe(math.nan)  # counted, under +Inf only
    lines = reg.render().decode().splitlines()
    assert 'h3_bucket{le="1.0"} 0' in lines
    assert 'h3_bucket{le="+Inf"} 1' in lines
    assert "h3_sum NaN" in lines


def test_gauge_callback_is_evaluated_at_render_and_failures_drop_the_series() -> None:
    reg = Registry()
    depth = [3]
    g = Gauge("queue_depth", "Depth.", registry=reg)
    g.set_function(lambda: depth[0])
    assert b"queue_depth 3\n" in reg.render()
    depth[0] = 7
    assert b"queue_depth 7\n" in reg.render()

    def broken() -> float:
        raise RuntimeError("store closed")

    bad = Gauge("broken_gauge", "Broken.", registry=reg)
    bad.set_function(broken)
    text = reg.render()
    assert b"# TYPE broken_gauge gauge\n" in text
    assert b"\nbroken_gauge " not in text
    check_exposition(text)


def test_label_and_registration_errors() -> None:
    reg = Registry()
    c = Counter("x_total", "x", ["a", "b"], registry=reg)
    with pytest.raises(ValueError):
        Counter("x_total", "again", registry=reg)
    with pytest.raises(ValueError):
        c.labels("only-one")
    with pytest.raises(ValueError):
        c.labels(a="1", c="2")
    with pytest.raises(ValueError):
        c.inc()  # labelled metric used without labels
    with pytest.raises(ValueError):
        c.labels("1", "2").inc(-1)
    with pytest.raises(ValueError):
        Counter("bad-name", "x")
    with pytest.raises(ValueError):
        Counter("y_total", "x", ["__reserved"])
    assert c.labels(a="1", b="2") is c.labels("1", "2")


def test_thread_safety_smoke() -> None:
    reg = Registry()
    c = Counter("hits_total", "Hits.", ["worker"], registry=reg)
    h = Histogram("obs", "Obs.", buckets=[1, 2], registry=reg)
    threads, per_thread = 8, 5000

    def work(i: int) -> None:
        shared = c.labels("shared")
        own = c.labels(str(i % 2))
        for j in range(per_thread):
            shared.inc()
            own.inc()
            h.observe(j % 3)
            if j % 1000 == 0:
                check_exposition(reg.render())

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    values = check_exposition(reg.render())
    assert values['hits_total{worker="shared"}'] == threads * per_thread
    assert (
        values['hits_total{worker="0"}'] + values['hits_total{worker="1"}'] == threads * per_thread
    )
    assert values['obs_bucket{le="+Inf"}'] == values["obs_count"] == threads * per_thread


def test_service_metrics_render() -> None:
    reg = Registry()
    m = ServiceMetrics(reg, version="9.9.9")
    m.ingested_samples.labels(protocol="remote_write").inc(100)
    m.rejected_samples.labels(protocol="influx", reason="invalid_series").inc(2)
    m.ingest_requests.labels(protocol="influx", code="204").inc()
    m.write_queue_depth.set_function(lambda: 4)
    m.store_bytes.set_function(lambda: 1 << 30)
    m.series.set_function(lambda: 1234)
    m.query_duration.labels(endpoint="query_range").observe(0.02)
    m.http_requests.labels(route="/api/v1/query", method="GET", code="200").inc()
    m.scrapes.labels(job="node", result="success").inc()
    got = parsed(reg)
    assert got['perfintel_build_info{version="9.9.9"}'] == 1
    assert got['perfintel_ingested_samples_total{protocol="remote_write"}'] == 100
    assert got['perfintel_rejected_samples_total{protocol="influx",reason="invalid_series"}'] == 2
    assert got["perfintel_write_queue_depth"] == 4
    assert got["perfintel_store_bytes"] == 1 << 30
    assert got["perfintel_series"] == 1234
    assert got['perfintel_query_duration_seconds_count{endpoint="query_range"}'] == 1
    assert got['perfintel_query_duration_seconds_bucket{endpoint="query_range",le="0.025"}'] == 1
    assert got['perfintel_query_duration_seconds_bucket{endpoint="query_range",le="0.01"}'] == 0
    assert got['perfintel_http_requests_total{code="200",method="GET",route="/api/v1/query"}'] == 1
    assert got['perfintel_scrapes_total{job="node",result="success"}'] == 1
    check_exposition(reg.render())
    # The default version is the package's.
    import perfintel

    assert (
        f'perfintel_build_info{{version="{perfintel.__version__}"}} 1'.encode()
        in ServiceMetrics(Registry()).registry.render()
    )


def test_process_metrics_from_a_captured_proc_tree() -> None:
    from pathlib import Path

    from perfintel.telemetry import register_process_metrics

    reg = Registry()
    proc = Path(__file__).parent / "collect" / "fixtures" / "proc"
    register_process_metrics(reg, proc_root=proc, pid="1", ticks_per_second=100, page_size=4096)
    got = parsed(reg)
    # fixtures/proc/1/stat: utime 36, stime 241, starttime 24 ticks, vsize 49836032, rss 3942 pages
    assert got["process_cpu_seconds_total"] == pytest.approx(2.77)
    assert got["process_virtual_memory_bytes"] == 49836032
    assert got["process_resident_memory_bytes"] == 3942 * 4096
    assert got["process_start_time_seconds"] == pytest.approx(1795731945.24)
    # No fd/ or limits in the fixture: those series are left out, the page still renders.
    assert "process_open_fds" not in got
    assert "process_max_fds" not in got
    check_exposition(reg.render())


def test_service_metrics_without_process_metrics() -> None:
    reg = Registry()
    ServiceMetrics(reg, version="1", proc_root=None)
    assert b"process_" not in reg.render()


@settings(max_examples=200, deadline=None)
@given(
    label_values=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5, unique=True),
    help_text=st.text(max_size=40),
    value=st.floats(allow_nan=False) | st.sampled_from([math.inf, -math.inf]),
)
def test_render_round_trips_through_the_parser(
    label_values: list[str], help_text: str, value: float
) -> None:
    reg = Registry()
    g = Gauge("prop_gauge", help_text, ["v"], registry=reg)
    for lv in label_values:
        g.labels(lv).set(value)
    check_exposition(reg.render())
    got = parsed(reg)
    assert len(got) == len(label_values)
    for lv in label_values:
        key = format_series((("__name__", "prop_gauge"), ("v", lv)))
        assert got[key] == value
