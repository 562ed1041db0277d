"""Fuzzing every ingest body over HTTP against one real server process.

Generated bodies, valid-ish (real payloads of each format, then truncated,
spliced with junk or wrongly encoded) and hostile (truncated gzip, thousands of
gzip members, megabyte lines, binary junk, deeply nested JSON, huge numbers,
unicode), go to every ingest endpoint: remote write 1.0 and 2.0, Prometheus text
and OpenMetrics, Influx v1 and v2, JSON, the streaming import and OTLP
(protobuf and JSON). The server must answer each with a non-5xx status within a
bound, stay alive, answer ``/healthz`` and keep its resident memory bounded.

Bounded time: each endpoint gets ``EXAMPLES`` generated bodies plus the fixed
hostile set; the whole file runs in well under a minute.
"""

from __future__ import annotations

import functools
import gzip
import time
import zlib
from collections.abc import Iterator

import cramjam
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_strategies import series_strategy
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from perfintel.batch import SampleBatch
from perfintel.bench.harness import rss_bytes
from perfintel.ingest.influx import format_influx_line_protocol
from perfintel.ingest.json_ingest import format_json_ingest
from perfintel.ingest.prometheus_text import format_prometheus_text
from perfintel.ingest.remote_write import encode_remote_write, encode_remote_write_v2
from perfintel.ingest.vm_export import format_vm_jsonl
from perfintel.storage.base import SeriesSamples
from tests.conftest import Server, start_server

EXAMPLES = 20
REQUEST_BOUND_S = 20.0  # no answer may take longer (a stall would show here)
RSS_BOUND = 1536 * 2**20

RW = "application/x-protobuf"
ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "remote_write": ("/api/v1/write", {"Content-Type": RW, "Content-Encoding": "snappy"}),
    "remote_write_v2": (
        "/api/v1/write",
        {
            "Content-Type": RW + ";proto=io.prometheus.write.v2.Request",
            "Content-Encoding": "snappy",
        },
    ),
    "prometheus": ("/api/v1/import/prometheus", {"Content-Type": "text/plain; version=0.0.4"}),
    "openmetrics": (
        "/api/v1/import/prometheus",
        {"Content-Type": "application/openmetrics-text; version=1.0.0"},
    ),
    "influx_v1": ("/write?precision=ms", {}),
    "influx_v2": ("/api/v2/write?precision=ms&bucket=b&org=o", {}),
    "json": ("/api/v1/ingest", {"Content-Type": "application/json"}),
    "import": ("/api/v1/import", {}),
    "otlp": ("/v1/metrics", {"Content-Type": RW}),
    "otlp_json": ("/v1/metrics", {"Content-Type": "application/json"}),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Limits lower than the defaults: the bounds are what is under test, and smaller ones
    # keep the run short (a bomb stops at 32 MiB instead of 256).
    srv = start_server(
        tmp_path_factory.mktemp("fuzz") / "data",
        env={
            "PERFINTEL_HOST_COLLECTOR__ENABLED": "false",
            "PERFINTEL_LIMITS__MAX_BODY_BYTES": "8MiB",
            "PERFINTEL_LIMITS__MAX_DECOMPRESSED_BYTES": "32MiB",
            "PERFINTEL_LIMITS__MAX_IMPORT_LINE_BYTES": "1MiB",
        },
    )
    yield srv
    srv.stop()


def _valid(kind: str, batch: SampleBatch) -> bytes:
    """A correct payload of ``kind`` holding ``batch`` (before any encoding is applied)."""
    if kind == "remote_write":
        return encode_remote_write(batch, compress=False)
    if kind == "remote_write_v2":
        return encode_remote_write_v2(batch, compress=False)
    if kind in ("prometheus", "openmetrics"):
        text = format_prometheus_text(batch)
        return text + b"# EOF\n" if kind == "openmetrics" else text
    if kind.startswith("influx"):
        try:
            return format_influx_line_protocol(batch)
        except ValueError:  # a label value with a newline cannot be written
            return b"m,t=a f=1 1\n"
    if kind == "json":
        return format_json_ingest(batch)
    if kind == "import":
        return b"".join(format_vm_jsonl(SeriesSamples(*s) for s in batch.iter_series()))
    req = ExportMetricsServiceRequest()
    scope = req.resource_metrics.add().scope_metrics.add()
    for labels, ts, vals in batch.iter_series():
        m = scope.metrics.add(name=dict(labels).get("__name__", "x"), unit="s")
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            ns = min(max(0, t), 2**44) * 1_000_000
            p = m.gauge.data_points.add(time_unix_nano=ns, as_double=v)
            for k, lv in labels:
                if k != "__name__":
                    p.attributes.add(key=k).value.string_value = lv
    if kind == "otlp_json":
        from google.protobuf import json_format

        return json_format.MessageToJson(req).encode()
    return req.SerializeToString()


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1)
    if encoding == "deflate":
        return zlib.compress(body, 1)
    if encoding == "zstd":
        return bytes(cramjam.zstd.compress(body))
    if encoding == "snappy":
        return bytes(cramjam.snappy.compress_raw(body))
    return body


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> tuple[bytes, str | None]:
    """A payload of ``kind``, perhaps damaged, in some encoding (perhaps not the one it claims)."""
    batch = draw(series_strategy(ts=st.integers(-(2**45), 2**45)))
    body = _valid(kind, batch)
    damage = draw(st.sampled_from(["none", "truncate", "splice", "flip", "prefix"]))
    if damage == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "splice":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=64)) + body[at:]
    elif damage == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    elif damage == "prefix":
        body = draw(st.sampled_from([b"\xef\xbb\xbf", b"\x00", "ü".encode(), b"{" * 50])) + body
    default = "snappy" if kind.startswith("remote_write") else None
    encoding = draw(st.sampled_from([default, "gzip", "deflate", "zstd", "snappy"]))
    claimed = encoding if draw(st.integers(0, 9)) else draw(st.sampled_from(["gzip", "zstd", None]))
    return _encode(body, encoding or "identity"), claimed


@functools.cache
def _hostile() -> list[tuple[str, bytes, str | None]]:
    empty_member = gzip.compress(b"")
    junk = np.random.default_rng(7).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes()
    line = b"x" * 2_000_000
    return [
        ("many gzip members", empty_member * 200_000, "gzip"),
        ("truncated gzip", gzip.compress(b"up 1\n" * 50_000)[:-100], "gzip"),
        ("gzip bomb", gzip.compress(b"\0" * 100_000_000), "gzip"),
        ("2 MB binary junk", junk, None),
        ("2 MB junk said to be snappy", junk, "snappy"),
        ("2 MB line", line + b" 1\n", None),
        ("deep JSON", b"[" * 100_000 + b"]" * 100_000, None),
        ("deep JSON object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, None),
        ("huge numbers", b"m 1" + b"0" * 100_000 + b"\nm 1e999999 1\n", None),
        (
            "huge JSON number",
            b'{"metric":{"__name__":"x"},"values":[1' + b"0" * 100_000 + b'],"timestamps":[1]}\n',
            None,
        ),
        ("unicode", ("ü€😀\u0000\u202e" * 10_000).encode(), None),
        ("lone surrogates", b"\xed\xa0\x80" * 1000, None),
        ("empty", b"", None),
        ("empty gzip", b"", "gzip"),
    ]


def _post(server: Server, kind: str, body: bytes, encoding: str | None) -> httpx.Response:
    path, headers = ENDPOINTS[kind]
    headers = dict(headers)
    if encoding is None:
        headers.pop("Content-Encoding", None)
    else:
        headers["Content-Encoding"] = encoding
    began = time.monotonic()
    r = httpx.post(server.url + path, content=body, headers=headers, timeout=REQUEST_BOUND_S + 10)
    took = time.monotonic() - began
    assert r.status_code < 500, (kind, r.status_code, r.text[:300])
    assert took < REQUEST_BOUND_S, (kind, took)
    return r


def _healthy(server: Server) -> None:
    assert server.proc.poll() is None, "the server died"
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert rss_bytes(server.proc.pid)[0] < RSS_BOUND


@pytest.mark.parametrize("kind", sorted(ENDPOINTS))
def test_hostile_bodies_never_5xx_stall_or_crash(target: Server, kind: str) -> None:
    for _name, body, encoding in _hostile():
        _post(target, kind, body, encoding)
    _healthy(target)


@pytest.mark.parametrize("kind", sorted(ENDPOINTS))
def test_generated_bodies_never_5xx_stall_or_crash(target: Server, kind: str) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(kind))
    def run(case: tuple[bytes, str | None]) -> None:
        _post(target, kind, *case)

    run()
    _healthy(target)
