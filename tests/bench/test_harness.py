"""Pieces of the storage benchmark that run without servers: sizes, RSS, body encodings."""

from __future__ import annotations

from pathlib import Path

import cramjam
import numpy as np
import pytest

from perfintel.bench.harness import dir_bytes, rss_bytes
from perfintel.bench.storage_wire import encode_lp, encode_rw
from perfintel.bench.workload import generate_workload, request_batches
from perfintel.ingest.influx import parse_influx_line_protocol
from perfintel.ingest.remote_write import decode_remote_write


def test_dir_bytes_is_the_apparent_size(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    assert dir_bytes(tmp_path) == 1024


def test_rss_from_a_captured_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text(
        "Name:\tvictoria-metrics\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    )
    assert rss_bytes(42, proc_root=tmp_path) == (100 * 2**20, 200 * 2**20)


def test_bodies_decode_back_to_the_workload() -> None:
    wl = generate_workload(n_series=12, hours=0.5, step_s=10, seed=3, start_ms=1_764_000_000_000)
    shards = request_batches(wl, shards=2, samples_per_request=600)
    rw = encode_rw(shards)
    lp = encode_lp(shards)
    for batches, rw_bodies, lp_bodies in zip(shards, rw, lp, strict=True):
        for b, rw_body, lp_body in zip(batches, rw_bodies, lp_bodies, strict=True):
            got = decode_remote_write(bytes(cramjam.snappy.decompress_raw(rw_body)))
            assert not got.errors
            assert sorted(got.batch.series) == sorted(b.series)
            np.testing.assert_array_equal(np.sort(got.batch.values), np.sort(b.values))
            parsed = parse_influx_line_protocol(lp_body, precision="ms", default_timestamp_ms=0)
            assert not parsed.errors
            assert len(parsed.batch) == len(b)
            np.testing.assert_array_equal(np.sort(parsed.batch.timestamps), np.sort(b.timestamps))
            np.testing.assert_array_equal(np.sort(parsed.batch.values), np.sort(b.values))
            names = {dict(s)["__name__"] for s in parsed.batch.series}
            assert names == {dict(s)["__name__"] + "_value" for s in b.series}


def test_queries_only_needs_a_kept_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perfintel.bench.storage import _parser, main

    opts = _parser().parse_args(["--skip-lp", "--inprocess-repeats", "0", "--queries-only", "x"])
    assert opts.skip_lp and opts.inprocess_repeats == 0 and opts.queries_only == Path("x")
    assert main(["--queries-only", str(tmp_path), "--work-dir", str(tmp_path)]) == 1
    assert "not a kept benchmark directory" in capsys.readouterr().err
