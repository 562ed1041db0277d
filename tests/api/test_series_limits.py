"""Memory bounds at ingest: new series per request and per minute are limited
(clear 400/429 naming the setting), and the remote-write label cache is bounded
by bytes and never keeps a refused or invalid series."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.ingest import remote_write
from perfintel.ingest.remote_write import decode_remote_write, encode_remote_write
from perfintel.model import label_set

NOW_MS = int(time.time()) * 1000
PROTO = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    limits = {"max_new_series_per_request": 10, "max_new_series_per_minute": 20}
    settings = load_settings(overrides={"data_dir": tmp_path / "data", "limits": limits}, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        yield c


def _body(prefix: str, n: int, *, compress: bool = True, **extra: str) -> bytes:
    batches = [
        SampleBatch.from_arrays({"__name__": "lim", "s": f"{prefix}{i}", **extra}, [NOW_MS], [1.0])
        for i in range(n)
    ]
    return encode_remote_write(SampleBatch.concat(batches), compress=compress)


def _series(client: TestClient) -> int:
    return len(client.get("/api/v1/series", params={"match[]": "lim"}).json()["data"])


def test_too_many_new_series_in_one_request_is_400_and_not_cached(client: TestClient) -> None:
    remote_write.forget_cached_labels()
    r = client.post("/api/v1/write", content=_body("a", 11), headers=PROTO)
    assert r.status_code == 400, r.text
    assert "limits.max_new_series_per_request (10)" in r.json()["error"]
    assert _series(client) == 0
    assert remote_write._label_cache == {}  # the refused series were not kept
    assert client.post("/api/v1/write", content=_body("a", 10), headers=PROTO).status_code == 204
    assert _series(client) == 10


def test_new_series_per_minute_is_429_with_retry_after(client: TestClient) -> None:
    assert client.post("/api/v1/write", content=_body("b", 10), headers=PROTO).status_code == 204
    assert client.post("/api/v1/write", content=_body("c", 9), headers=PROTO).status_code == 204
    r = client.post("/api/v1/write", content=_body("d", 5), headers=PROTO)
    assert r.status_code == 429, r.text
    assert "limits.max_new_series_per_minute (20)" in r.json()["error"]
    assert r.headers["Retry-After"] == "1"
    # Known series still write; the bucket refills (20 a minute: one every 3 s).
    assert client.post("/api/v1/write", content=_body("b", 10), headers=PROTO).status_code == 204
    assert _series(client) == 19


def test_json_ingest_has_the_same_limits(client: TestClient) -> None:
    body = {
        "series": [
            {"metric": "lim", "labels": {"s": str(i)}, "samples": [[NOW_MS, 1]]} for i in range(11)
        ]
    }
    r = client.post("/api/v1/ingest", json=body)
    assert r.status_code == 400 and "max_new_series_per_request" in r.text


def test_the_label_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    remote_write.forget_cached_labels()
    monkeypatch.setattr(remote_write, "CACHE_MAX_BYTES", 1 << 20)
    long = "x" * 2000  # long label values: few entries reach the byte bound
    for k in range(10):
        decode_remote_write(_body(f"r{k}-", 100, compress=False, big=long))
    size = sum(len(key) if isinstance(key, bytes) else 0 for key in remote_write._label_cache)
    assert remote_write._cache_bytes <= (1 << 20) + 2 * 2100 + 200
    assert size < (1 << 20)
    assert 100 < len(remote_write._label_cache) < 300  # not the 1,000 series sent
    remote_write.forget_cached_labels()


def test_invalid_series_are_never_cached() -> None:
    remote_write.forget_cached_labels()
    bad = SampleBatch(
        [label_set([("__name__", "ok"), ("0bad", "v")])],
        np.zeros(1, np.int32),
        np.array([NOW_MS]),
        np.ones(1),
    )
    result = decode_remote_write(encode_remote_write(bad, compress=False))
    assert len(result.errors) == 1
    assert remote_write._label_cache == {}


def test_a_text_series_flood_is_refused_before_the_whole_body_is_parsed(
    client: TestClient,
) -> None:
    known = "".join(f'lim{{s="k{i}"}} 1 {NOW_MS}\n' for i in range(5))
    assert client.post("/api/v1/import/prometheus", content=known).status_code == 200
    # 5 known + limit 10: the 16th distinct series stops the parse (line 16 of 100,000).
    flood = known + "".join(f'lim{{s="f{i}"}} 1 {NOW_MS}\n' for i in range(100_000))
    r = client.post("/api/v1/import/prometheus", content=flood)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("line 16: the body has more than 15 distinct series")
    assert "limits.max_new_series_per_request" in r.json()["error"]
    assert _series(client) == 5
