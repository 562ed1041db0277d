"""Interop of the VictoriaMetrics JSON-lines format against the real victoria-metrics binary."""

import httpx
import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.ingest.vm_export import format_vm_jsonl, parse_vm_jsonl
from perfintel.model import STALE_NAN, is_stale
from perfintel.storage.base import SeriesSamples

pytestmark = pytest.mark.external

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def vm(victoria_metrics: str):
    """A client of the session's VictoriaMetrics (``victoria_metrics`` in tests/conftest.py)."""
    with httpx.Client(base_url=victoria_metrics, timeout=10) as client:
        yield client


def _export(client: httpx.Client, selector: str) -> bytes:
    client.get("/internal/force_flush")
    r = client.post("/api/v1/export", data={"match[]": selector})
    r.raise_for_status()
    return r.content


def test_our_lines_import_into_victoriametrics_and_export_back(vm):
    values = np.array([0.5, 1.25, 1e6, np.inf, -np.inf, -3.0, 42.0])
    ts = T0 + np.arange(len(values), dtype=np.int64) * 1000
    series = [
        SeriesSamples((("__name__", "pi_interop_a"), ("job", 'we"ird\\ val')), ts, values),
        SeriesSamples((("__name__", "pi_interop_b"), ("job", "x")), ts, values[::-1].copy()),
    ]
    body = b"".join(format_vm_jsonl(series, stale_markers="drop"))
    assert vm.post("/api/v1/import", content=body).status_code == 204
    back = parse_vm_jsonl(_export(vm, '{__name__=~"pi_interop_.*"}'))
    assert not back.errors
    got = {ls: (t.tolist(), v.tolist()) for ls, t, v in back.batch.iter_series()}
    for s in series:
        order = np.argsort(got[s.labels][0])
        assert np.array(got[s.labels][0])[order].tolist() == s.timestamps.tolist()
        assert np.array(got[s.labels][1])[order].tolist() == s.values.tolist()


def test_nan_is_accepted_by_import_but_dropped(vm):
    s = SeriesSamples(
        (("__name__", "pi_interop_nan"),),
        np.array([T0, T0 + 1000], np.int64),
        np.array([np.nan, 7.0]),
    )
    assert vm.post("/api/v1/import", content=b"".join(format_vm_jsonl([s]))).status_code == 204
    back = parse_vm_jsonl(_export(vm, "pi_interop_nan"))
    assert back.batch.values.tolist() == [7.0]


def test_staleness_markers_exported_as_null_read_bit_exactly(vm):
    batch = SampleBatch.from_arrays(
        {"__name__": "pi_interop_stale", "k": "v"},
        np.array([T0, T0 + 1000, T0 + 2000], np.int64),
        np.array([1.0, STALE_NAN, 2.0]),
    )
    r = vm.post(
        "/api/v1/write",
        content=encode_remote_write(batch),
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
    )
    assert r.status_code == 204
    raw = _export(vm, "pi_interop_stale")
    assert b"null" in raw
    back = parse_vm_jsonl(raw)
    assert not back.errors
    assert is_stale(back.batch.values).tolist() == [False, True, False]
    # ... and our writer reproduces VictoriaMetrics' line for it.
    ours = b"".join(format_vm_jsonl([SeriesSamples(*next(iter(back.batch.iter_series())))]))
    assert ours.strip() == raw.strip()


def test_victoriametrics_rejects_null_so_drop_mode_exists(vm):
    line = b'{"metric":{"__name__":"pi_interop_null"},"values":[1,null],"timestamps":[%d,%d]}' % (
        T0,
        T0 + 1000,
    )
    vm.post("/api/v1/import", content=line)
    assert parse_vm_jsonl(_export(vm, "pi_interop_null")).batch.values.tolist() == []
