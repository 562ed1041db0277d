"""Fault injection: a full disk during WAL append, rotation, flush and compaction.

The disk fills by injection (``os.write``/``os.open``/``os.fdatasync`` of the
WAL raise ``OSError(ENOSPC)``, after writing part of the bytes as a real full
disk does; the database's writes raise DuckDB's own error). In every case no
acknowledged sample is lost and the store recovers by itself once space is
back. (A flipped byte and a torn record: ``test_wal_damage.py``; ``kill -9``
of a real server: ``tests/e2e/test_kill9_faults.py``.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from wal_helpers import T0, Clock, crash, open_store, stored, write_batch

from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.errors import DiskFullError, StorageError
from perfintel.model import label_set, parse_selector
from perfintel.storage.duckdb import DuckDBStore, StoreOptions
from perfintel.storage.duckdb import wal as wal_module

NOW = T0 + 86_400_000


class DiskFull:
    """Makes writes to the WAL's file descriptors fail with ENOSPC while ``on``
    (after writing half of the bytes, as a real full disk does)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, st: DuckDBStore) -> None:
        self.on = False  # writes fail
        self.open_fails = False  # creating a segment fails
        self.truncate_fails = False
        real_write, real_truncate, real_open = os.write, os.ftruncate, os.open

        def write(fd: int, data: bytes) -> int:
            if self.on and fd == st.wal._fd:
                half = len(memoryview(data)) // 2
                if half:
                    real_write(fd, memoryview(data)[:half])
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        def ftruncate(fd: int, size: int) -> None:
            if self.truncate_fails and fd == st.wal._fd:
                raise OSError(errno.EIO, "Input/output error")
            real_truncate(fd, size)

        def open_(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
            if self.open_fails and Path(path).parent == st.wal.dir:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(path, flags, mode)

        monkeypatch.setattr(wal_module.os, "write", write)
        monkeypatch.setattr(wal_module.os, "ftruncate", ftruncate)
        monkeypatch.setattr(wal_module.os, "open", open_)


def _new_series(st: DuckDBStore, i: int) -> None:
    st.append(SampleBatch.from_arrays(label_set({"__name__": "fresh", "i": str(i)}), [T0 + i], [i]))


def _fresh(st: DuckDBStore) -> dict[str, list[float]]:
    got = st.select(parse_selector("fresh"), T0, NOW)
    return {dict(s.labels)["i"]: s.values.tolist() for s in got}


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_disk_full_during_wal_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, truncate_fails: bool
) -> None:
    """The issue's sequence: a write fails on a full disk, space comes back, two
    writes are acknowledged, kill -9: both are there after the restart."""
    st = open_store(tmp_path, Clock(NOW))
    disk = DiskFull(monkeypatch, st)
    acked = []
    for i in range(5):
        write_batch(st, i)
        acked.append(i)
    disk.on, disk.truncate_fails = True, truncate_fails
    with pytest.raises(DiskFullError, match=r"disk .* is full"):
        write_batch(st, 5)
    with pytest.raises(DiskFullError):
        _new_series(st, 1)  # a new series registered while its definition failed to log
    disk.on = False
    for i in (6, 7):
        write_batch(st, i)
        acked.append(i)
    _new_series(st, 1)  # its definition is logged now, with its first stored sample
    crash(st)
    st2 = open_store(tmp_path, Clock(NOW))
    assert stored(st2) == dict.fromkeys(acked, 100)
    assert _fresh(st2) == {"1": [1.0]}
    # torn bytes that could not be cut off: set aside at replay, one per failed write
    assert st2.wal.stats.torn_tails == st2.wal.stats.damaged_regions == (2 if truncate_fails else 0)
    st2.close()


def test_failed_fsync_fails_every_append_it_covered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux reports a lost writeback once: an append whose bytes were in the
    failed fsync is never acknowledged, even if the next fsync succeeds."""
    st = open_store(tmp_path, Clock(NOW))
    calls = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(wal_module.os, "fdatasync", fdatasync)
    write_batch(st, 0)
    position = st.wal.write(st.wal.write_samples(np.array([0]), np.array([T0]), np.array([1.0])))
    with pytest.raises(OSError):
        st.wal.sync(position)
    with pytest.raises(OSError):
        st.wal.sync(position)  # asked again: still failed, though fsync would now succeed
    write_batch(st, 1)
    st.close()


def test_disk_full_during_rotation_keeps_the_log_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = open_store(tmp_path, Clock(NOW))
    disk = DiskFull(monkeypatch, st)
    for i in range(3):
        write_batch(st, i)
    disk.open_fails = True  # writes still fit, a new segment does not
    with pytest.raises(DiskFullError, match="rotate"):
        st.flush()
    write_batch(st, 3)  # no "write to closed file": the current segment stays open
    disk.open_fails = False
    assert st.flush().flushed == 400
    write_batch(st, 4)
    crash(st)
    st2 = open_store(tmp_path, Clock(NOW))
    assert stored(st2) == dict.fromkeys(range(5), 100)
    st2.close()


class DatabaseDiskFull:
    """Makes the store's database transactions fail as DuckDB does on a full disk,
    from the ``after``-th transaction on, while ``on``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, st: DuckDBStore, after: int = 0) -> None:
        self.on = False
        self.after = after
        self.attempts = 0
        real = st._transaction

        @contextlib.contextmanager
        def transaction() -> Iterator[duckdb.DuckDBPyConnection]:
            if self.on:
                self.attempts += 1
                if self.attempts > self.after:
                    raise StorageError(
                        'database write failed: Could not write file "samples.duckdb.wal": '
                        "No space left on device"
                    ) from duckdb.IOException("No space left on device")
            with real() as cur:
                yield cur

        monkeypatch.setattr(st, "_transaction", transaction)


def test_disk_full_during_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = open_store(tmp_path, Clock(NOW))
    db = DatabaseDiskFull(monkeypatch, st)
    for i in range(4):
        write_batch(st, i)
    db.on = True
    with pytest.raises(StorageError, match="No space"):
        st.flush()
    write_batch(st, 4)  # writes go on while the database cannot take the head
    assert stored(st) == dict.fromkeys(range(5), 100)
    crash_dir = st.wal.segments()
    assert crash_dir  # the segments of the failed flush were kept
    db.on = False
    assert st.flush().flushed == 500
    write_batch(st, 5)
    crash(st)
    st2 = open_store(tmp_path, Clock(NOW))
    assert stored(st2) == dict.fromkeys(range(6), 100)
    st2.close()


def test_disk_full_during_compaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = open_store(tmp_path, Clock(NOW))
    for i in range(6):  # three flushes into the same block windows: chunks to merge
        write_batch(st, i)
        if i % 2:
            st.flush()
    db = DatabaseDiskFull(monkeypatch, st)
    db.on = True
    with pytest.raises(StorageError, match="No space"):
        st.flush(compact=True)
    db.on = False
    assert stored(st) == dict.fromkeys(range(6), 100)
    st.flush(compact=True)
    crash(st)
    st2 = open_store(tmp_path, Clock(NOW))
    assert stored(st2) == dict.fromkeys(range(6), 100)
    rows = st2._db.execute(
        "SELECT count(*) FROM chunks GROUP BY series_id, window_start"
    ).fetchall()
    assert {r[0] for r in rows} == {1}  # compaction finished once space was back
    st2.close()


def test_an_invalidated_database_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB invalidates a database whose checkpoint hit a full disk (seen on a
    real 40 MB tmpfs); the store opens it again instead of failing every query."""
    st = open_store(tmp_path, Clock(NOW))
    for i in range(3):
        write_batch(st, i)
    st.flush()
    real = st._db
    cursors_before = st._cursor()

    def checkpoint() -> None:
        raise duckdb.FatalException(
            "FATAL Error: Failed to create checkpoint because of error: "
            'Could not write file "samples.duckdb": No space left on device'
        )

    monkeypatch.setattr(st, "_checkpoint", checkpoint)
    with pytest.raises(StorageError, match="checkpoint"):
        st.flush(compact=True)
    assert st._db is not real
    monkeypatch.undo()
    assert st._cursor() is not cursors_before
    write_batch(st, 3)
    assert stored(st) == dict.fromkeys(range(4), 100)
    st.close()


def test_failing_maintenance_backs_off_and_logs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk must not make the background pass retry (and re-log the head
    into the WAL) every few milliseconds, nor log a line each time."""
    st = DuckDBStore(
        tmp_path,
        StoreOptions(maintenance_interval_s=0.02, head_max_samples=50, head_max_age_s=0.0),
        clock=Clock(NOW),
    )
    try:
        db = DatabaseDiskFull(monkeypatch, st)
        db.on = True
        with caplog.at_level(logging.INFO, logger="perfintel.storage.duckdb.store"):
            write_batch(st, 0)
            time.sleep(1.5)
            attempts = db.attempts
            wal_bytes = sum(p.stat().st_size for p in st.wal.segments())
            db.on = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                "recovered" in r.getMessage() for r in caplog.records
            ):
                time.sleep(0.05)
        # Without backoff: ~75 passes in 1.5 s. With it: 0.02, 0.04, ... 0.64 s.
        assert 3 <= attempts <= 8, attempts
        assert wal_bytes < 10_000
        assert st.head.samples == 0  # recovered by itself
        lines = [r for r in caplog.records if "maintenance" in r.getMessage()]
        assert 1 <= len(lines) <= 3, [r.getMessage() for r in lines]
        assert "recovered" in lines[-1].getMessage()
    finally:
        st.close()


def test_concurrent_writers_under_an_intermittently_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four writers, the disk filling and emptying under them: every acknowledged
    write is replayed after a crash."""
    st = open_store(tmp_path, Clock(NOW))
    disk = DiskFull(monkeypatch, st)
    acked: list[int] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        for i in range(k, 400, 4):
            try:
                write_batch(st, i, n=20)
            except DiskFullError:
                continue
            with lock:
                acked.append(i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(7)
    while any(t.is_alive() for t in threads):
        disk.on = bool(rng.random() < 0.3)
        time.sleep(0.002)
    disk.on = False
    crash(st)
    st2 = open_store(tmp_path, Clock(NOW))
    got = stored(st2, n=20)
    assert 0 < len(acked) < 400
    assert {i: got.get(i) for i in acked} == dict.fromkeys(acked, 20)
    st2.close()


def test_writes_on_a_full_disk_get_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, env={})
    now = int(time.time()) * 1000
    body = {"series": [{"metric": "m", "labels": {}, "samples": [[now, 1.0]]}]}
    with TestClient(create_app(settings, collectors=False)) as c:
        disk = DiskFull(monkeypatch, c.app.state.store)  # type: ignore[attr-defined]
        disk.on = True
        r = c.post("/api/v1/ingest", json=body)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "10"
        assert "disk" in r.json()["error"] and "full" in r.json()["error"]
        disk.on = False
        assert c.post("/api/v1/ingest", json=body).status_code == 200
        assert "perfintel_wal_write_errors_total 1" in c.get("/metrics").text
