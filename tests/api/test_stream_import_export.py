"""Bounded decompression on every endpoint, the streaming import of any size, the windowed export."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.api.ingest import _export_lines
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.ingest.vm_export import parse_vm_jsonl
from perfintel.model import label_set, parse_selector
from perfintel.storage.base import QueryLimits
from perfintel.storage.memory import MemoryStore

NOW = int(time.time() * 1000)
EMPTY_GZIP = gzip.compress(b"")


@pytest.fixture
def small_limits(tmp_path: Path) -> Iterator[TestClient]:
    """A service whose body limits are tiny: an import of a few MiB is 'large' for it."""
    settings = load_settings(
        overrides={
            "data_dir": tmp_path / "data",
            "limits": {
                "max_body_bytes": 64 * 1024,
                "max_decompressed_bytes": 256 * 1024,
                "max_import_line_bytes": 4096,
            },
        },
        env={},
    )
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


def jsonl(n_series: int, per_series: int, *, metric: str = "imported") -> bytes:
    lines = []
    for i in range(n_series):
        ts = [NOW - (per_series - k) * 1000 for k in range(per_series)]
        vals = [float(i * 1000 + k) for k in range(per_series)]
        lines.append(
            orjson.dumps(
                {"metric": {"__name__": metric, "i": str(i)}, "values": vals, "timestamps": ts}
            )
        )
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize(
    "endpoint",
    ["/api/v1/import/prometheus", "/write", "/api/v2/write", "/api/v1/ingest", "/api/v1/import"],
)
def test_many_gzip_members_get_413_naming_the_limit(client: TestClient, endpoint: str) -> None:
    # 4 MB of empty gzip members took 68.6 s on the event loop before the bound.
    body = EMPTY_GZIP * (4_000_000 // len(EMPTY_GZIP))
    r = client.post(endpoint, content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413, r.text
    assert "limits.max_body_members" in r.json()["error"]


def test_remote_write_snappy_declaring_too_much_is_413(client: TestClient) -> None:
    body = bytes([0x80, 0x80, 0x80, 0x80, 0x08]) + b"\x00abc"  # declares 2 GiB
    r = client.post(
        "/api/v1/write", content=body, headers={"Content-Type": "application/x-protobuf"}
    )
    assert r.status_code == 413
    assert "limits.max_decompressed_bytes" in r.json()["error"]


@pytest.mark.parametrize("encoding", [None, "gzip", "zstd", "deflate"])
def test_import_streams_bodies_far_over_the_body_limits(
    small_limits: TestClient, encoding: str | None
) -> None:
    data = jsonl(400, 60)  # ~560 KiB of JSON lines: 8 x max_body_bytes, 2 x max_decompressed
    assert len(data) > 2 * 256 * 1024
    body = {
        None: lambda b: b,
        "gzip": gzip.compress,
        "zstd": lambda b: __import__("cramjam").zstd.compress(b).read(),
        "deflate": lambda b: __import__("zlib").compress(b),
    }[encoding](data)
    headers = {"Content-Encoding": encoding} if encoding else {}
    chunks = (body[i : i + 10_000] for i in range(0, len(body), 10_000))
    r = small_limits.post("/api/v1/import", content=chunks, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 400 * 60
    # every sample came in, exactly
    store = small_limits.app.state.store  # type: ignore[attr-defined]
    got = store.select(parse_selector("imported"), 0, NOW + 1)
    assert len(got) == 400 and sum(len(s.timestamps) for s in got) == 24_000
    assert got[0].values.tolist() == [float(k) for k in range(60)]


def test_import_rejects_an_overlong_line_by_number_and_keeps_its_neighbours(
    small_limits: TestClient,
) -> None:
    good = jsonl(1, 3).rstrip(b"\n")
    huge = b'{"metric":{"__name__":"huge"},"values":[' + b"1," * 5000 + b'1],"timestamps":[1]}'
    body = b"\n".join([good, huge, good.replace(b'"i":"0"', b'"i":"1"'), b"not json"]) + b"\n"
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
    r = small_limits.post("/api/v1/import", content=chunks)
    assert r.status_code == 400
    answer = r.json()
    assert answer["accepted"] == 6 and answer["rejected"] == 2
    assert (
        answer["errors"][0] == "line 2: line longer than 4096 bytes (limits.max_import_line_bytes)"
    )
    assert answer["errors"][1].startswith("line 4: invalid JSON")


def test_truncated_gzip_import_is_a_clear_400_after_storing_what_was_whole(
    client: TestClient,
) -> None:
    body = gzip.compress(jsonl(50, 10))
    r = client.post(
        "/api/v1/import", content=body[: len(body) - 30], headers={"Content-Encoding": "gzip"}
    )
    assert r.status_code == 400
    assert "truncated gzip body" in r.json()["error"]


def test_export_reads_a_window_at_a_time_and_loses_nothing() -> None:
    store = MemoryStore()
    rng = np.random.default_rng(1)
    sent: dict[str, list[tuple[int, float]]] = {}
    for i in range(5):
        # irregular series: dense bursts, long gaps, different spans
        ts = np.unique(rng.integers(NOW - 30 * 86_400_000, NOW, 3000 + 500 * i))
        vals = rng.normal(size=len(ts))
        store.append(SampleBatch.from_arrays(label_set({"__name__": "m", "i": str(i)}), ts, vals))
        sent[str(i)] = list(zip(ts.tolist(), vals.tolist(), strict=True))
    selectors = [parse_selector("m"), parse_selector('m{i="1"}')]  # overlapping: exported once
    lines = list(_export_lines(store, selectors, 0, NOW, QueryLimits(), step_samples=500))
    assert len(lines) > 5 * 5  # many windows
    got: dict[str, list[tuple[int, float]]] = {}
    result = parse_vm_jsonl(b"".join(lines))
    assert not result.errors
    for labels, ts, vals in result.batch.iter_series():
        got.setdefault(dict(labels)["i"], []).extend(zip(ts.tolist(), vals.tolist(), strict=True))
    assert {k: sorted(v) for k, v in got.items()} == sent
