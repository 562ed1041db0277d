"""A damaged WAL record costs that record only: replay resynchronises, keeps the
damaged bytes aside, says what was lost, and never deletes the records after it."""

from __future__ import annotations

import logging
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from wal_helpers import T0, Clock, crash, open_store, records, stored, write_batch

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.model import parse_selector
from perfintel.storage.duckdb.store import LOST_SERIES_NAME

N_WRITES = 200


def _fill(tmp_path: Path) -> Path:
    st = open_store(tmp_path, Clock(T0 + 86_400_000))
    for i in range(N_WRITES):
        write_batch(st, i)
    [seg] = st.wal.segments()
    crash(st)
    return seg


@pytest.mark.parametrize("where", [0.01, 0.5, 0.99])
def test_a_flipped_byte_loses_only_its_record(
    tmp_path: Path, where: float, caplog: pytest.LogCaptureFixture
) -> None:
    seg = _fill(tmp_path)
    data = bytearray(seg.read_bytes())
    pos = int(len(data) * where)
    hit = [r for r in records(seg) if r[0] <= pos < r[1]]
    [(start, end, kind)] = hit
    data[pos] ^= 0x5A
    seg.write_bytes(bytes(data))
    # Which write the damaged record held (series records come with a write's first samples).
    damaged_write = (
        sum(1 for s, _, k in records(seg) if k == b"D" and s < start) if kind == b"D" else None
    )

    with caplog.at_level(logging.WARNING):
        st = open_store(tmp_path, Clock(T0 + 86_400_000))
    got = stored(st)
    expected = {i: 100 for i in range(N_WRITES) if i != damaged_write}
    if kind == b"S":  # the labels were lost, the samples are kept under a placeholder
        lost = st.select(parse_selector(LOST_SERIES_NAME), T0, T0 + 10**9)
        assert sum(len(s.timestamps) for s in lost) > 0
        expected = {i: n for i, n in expected.items() if i in got}
    assert got == expected
    assert st.wal.stats.damaged_regions == 1
    assert st.wal.stats.damaged_bytes == end - start
    aside = list(seg.parent.glob("*.damaged"))
    assert [p.read_bytes() for p in aside] == [bytes(data[start:end])]
    assert any(
        "damaged bytes" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )
    st.close()

    # The segment was rewritten without the damage: the next start reports nothing.
    st2 = open_store(tmp_path, Clock(T0 + 86_400_000))
    assert stored(st2) == got
    assert st2.wal.stats.damaged_regions == 0
    st2.close()


def test_a_torn_last_record_is_set_aside_and_the_log_appends_after_it(tmp_path: Path) -> None:
    seg = _fill(tmp_path)
    data = seg.read_bytes()
    start, end, _ = records(seg)[-1]
    seg.write_bytes(data[: start + (end - start) // 2])
    st = open_store(tmp_path, Clock(T0 + 86_400_000))
    assert stored(st) == {i: 100 for i in range(N_WRITES - 1)}
    assert st.wal.stats.torn_tails == 1
    # Kept aside as torn, not as damage: kill -9 mid-write leaves one (the kill -9 test's
    # server log must never say "damaged").
    assert [p.suffix for p in seg.parent.glob(f"{seg.name}.*")] == [".torn"]
    write_batch(st, N_WRITES)
    crash(st)
    st2 = open_store(tmp_path, Clock(T0 + 86_400_000))
    assert stored(st2) == {i: 100 for i in [*range(N_WRITES - 1), N_WRITES]}
    st2.close()


def test_a_segment_of_the_old_format_is_still_replayed(tmp_path: Path) -> None:
    """Before the record marker: ``u32 length | u32 crc32 | payload`` from byte 0."""
    wal = tmp_path / "wal"
    wal.mkdir()
    labels = b'[["__name__","wal_test"],["w","0"]]'
    series = b"S" + struct.pack("<III", 1, 0, len(labels)) + labels
    ts = T0 + 1000 * np.arange(100)
    samples = (
        b"D" + struct.pack("<I", 100) + np.zeros(100, "<u4").tobytes()
        + ts.astype("<i8").tobytes() + np.zeros(100, "<f8").tobytes()
    )  # fmt: skip
    old = b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in (series, samples))
    (wal / "0000000001.log").write_bytes(old + b"\x07\x00\x00")  # and a torn tail
    st = open_store(tmp_path, Clock(T0 + 86_400_000))
    assert stored(st) == {0: 100}
    assert st.wal.stats.torn_tails == 1
    st.close()


def test_damage_is_reported_in_metrics(tmp_path: Path) -> None:
    # The server's store lives in <data_dir>/samples; its clock is the real one.
    now = int(time.time() * 1000)
    st = open_store(tmp_path / "data" / "samples", Clock(now))
    for i in range(20):
        st.append(SampleBatch.from_arrays({"__name__": "m"}, np.array([now - 60_000 + i]), [1.0]))
    [seg] = st.wal.segments()
    crash(st)
    data = bytearray(seg.read_bytes())
    start, end, _ = records(seg)[10]
    data[start + 20] ^= 0xFF
    seg.write_bytes(bytes(data))
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, env={})
    with TestClient(create_app(settings, collectors=False)) as c:
        text = c.get("/metrics").text
    assert 'perfintel_wal_damaged_regions_total{kind="damaged"} 1' in text
    assert 'perfintel_wal_damaged_regions_total{kind="torn_tail"} 0' in text
    assert f"perfintel_wal_damaged_bytes_total {end - start}" in text
    assert "perfintel_wal_replayed_records_total 20" in text  # 1 series record + 19 of samples
