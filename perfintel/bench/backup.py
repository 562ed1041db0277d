"""The backup/restore round trip: load, ``perfintel backup``, ``perfintel restore``, compare.

What ``benchmarks/backup_restore.py`` runs (and, smaller, ``tests/e2e``):

1. start a perfintel (host collector and anomaly detection off, so it holds
   only what it is sent) and load a seeded workload by remote write;
2. ``perfintel backup FILE --url A`` — the documented command, as a process;
3. start a second, empty perfintel and ``perfintel restore FILE --url B``;
4. compare sample for sample: a digest per series (sample count and a
   64-bit sum of a mix of each timestamp with the value's exact bits) of the
   samples sent, of the backup file and of B's export must be equal.

The server's resident memory is sampled during the backup and the restore
(``RssSampler``); the figures come out as a dict the script prints.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import numpy as np

from perfintel.batch import SampleBatch
from perfintel.bench.harness import BenchError, rss_bytes
from perfintel.ingest.vm_export import VmJsonlStream
from perfintel.model import STALE_NAN, LabelSet

__all__ = [
    "Digest",
    "RssSampler",
    "digest_batch",
    "digest_jsonl",
    "main",
    "perfintel_command",
    "round_trip",
    "run_cli",
    "with_special_values",
]

#: Per series: (sample count, sum of mixed (timestamp, value bits) mod 2**64).
Digest = dict[LabelSet, tuple[int, int]]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(ts: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """splitmix64 of (timestamp, value bits): any change to either changes the sum."""
    with np.errstate(over="ignore"):
        h = ts.astype(np.uint64) * _M1 ^ bits
        h ^= h >> np.uint64(30)
        h *= _M2
        h ^= h >> np.uint64(27)
        h *= _M3
        h ^= h >> np.uint64(31)
    return h


def digest_batch(batch: SampleBatch, into: Digest) -> Digest:
    """Add a batch's samples to a per-series digest (order of samples does not matter)."""
    if not len(batch):
        return into
    order = np.argsort(batch.series_idx, kind="stable")
    idx = batch.series_idx[order]
    mixed = _mix(batch.timestamps[order], batch.values[order].view(np.uint64))
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    sums = np.add.reduceat(mixed, starts)
    counts = np.diff(np.r_[starts, len(idx)])
    for i, total, n in zip(idx[starts].tolist(), sums.tolist(), counts.tolist(), strict=True):
        labels = batch.series[i]
        c, s = into.get(labels, (0, 0))
        into[labels] = (c + n, (s + total) % (1 << 64))
    return into


def digest_jsonl(chunks: Iterable[bytes]) -> tuple[Digest, int]:
    """The digest of an export (VictoriaMetrics JSON lines, in pieces) and its number of bad lines."""
    digest: Digest = {}
    bad = 0
    parser = VmJsonlStream(max_line_bytes=1 << 30)
    for chunk in chunks:
        for result in parser.feed(chunk):
            digest_batch(result.batch, digest)
            bad += len(result.errors)
    for result in parser.finish():
        digest_batch(result.batch, digest)
        bad += len(result.errors)
    return digest, bad


def with_special_values(batch: SampleBatch, every: int = 9973) -> SampleBatch:
    """The batch with a staleness marker, +Inf, -Inf and -0.0 sprinkled in (they must survive too)."""
    vals = batch.values.copy()
    specials = np.array([STALE_NAN, np.inf, -np.inf, -0.0])
    picks = np.arange(every // 2, len(vals), every)
    vals[picks] = specials[np.arange(len(picks)) % len(specials)]
    return SampleBatch(batch.series, batch.series_idx, batch.timestamps, vals)


def file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        while block := f.read(size):
            yield block


def export_chunks(url: str, selector: str = '{__name__=~".+"}') -> Iterator[bytes]:
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(None, connect=10)) as client,
        client.stream("GET", "/api/v1/export", params={"match[]": selector}) as r,
    ):
        if r.status_code != 200:
            r.read()
            raise BenchError(f"export from {url} failed: HTTP {r.status_code}: {r.text[:300]}")
        yield from r.iter_bytes(1 << 20)


def perfintel_command() -> list[str]:
    script = Path(sys.executable).with_name("perfintel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "perfintel"]


def run_cli(*args: str, timeout_s: float = 3600) -> tuple[float, str]:
    """Run ``perfintel ARGS`` as a user would; (seconds, its stderr). Fails loudly."""
    began = time.monotonic()
    done = subprocess.run(
        [*perfintel_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    took = time.monotonic() - began
    if done.returncode != 0:
        raise BenchError(f"perfintel {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return took, done.stderr


class RssSampler:
    """Samples a process's resident set every ``interval_s`` in a thread; ``peak`` is the largest."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid)[0])
            except OSError:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def round_trip(
    workdir: Path,
    *,
    n_series: int,
    hours: float,
    step_s: int,
    seed: int = 0,
    gzip_file: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, float | int | bool]:
    """Load, back up, restore and compare; the figures (times, rates, peak RSS, equality)."""
    from perfintel.bench.harness import free_port, perfintel_server, send_sharded
    from perfintel.bench.workload import generate_workload, request_batches
    from perfintel.ingest.remote_write import encode_remote_write

    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int(hours * 3_600_000) - 60_000
    workload = with_special_values(
        generate_workload(
            n_series=n_series, hours=hours, step_s=step_s, seed=seed, start_ms=start_ms
        )
    )
    n = len(workload)
    sent = digest_batch(workload, {})
    bodies = [
        [encode_remote_write(b) for b in shard]
        for shard in request_batches(workload, shards=2, samples_per_request=200_000)
    ]
    del workload
    backup_file = workdir / ("backup.jsonl.gz" if gzip_file else "backup.jsonl")
    figures: dict[str, float | int | bool] = {"samples": n, "series": n_series}
    a_port, b_port = free_port(), free_port()
    with perfintel_server(workdir / "a", a_port, workdir / "a.log") as a:
        log(f"loading {n:,} samples of {n_series:,} series into server A ...")
        report = send_sharded(
            a.base_url,
            "/api/v1/write",
            bodies,
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        )
        del bodies
        figures["load_s"] = report.seconds
        log(f"  loaded in {report.seconds:.1f} s; perfintel backup {backup_file.name} ...")
        figures["backup_server_rss_before"] = rss_bytes(a.pid)[0]
        with RssSampler(a.pid) as rss:
            took, _ = run_cli("backup", str(backup_file), "--url", a.base_url)
        figures.update(
            backup_s=took,
            backup_samples_per_s=n / took,
            backup_bytes=backup_file.stat().st_size,
            backup_server_peak_rss=rss.peak,
        )
    log(
        f"  backup: {took:.1f} s, {backup_file.stat().st_size / 2**20:.0f} MiB; digesting the file ..."
    )
    in_file, bad_in_file = digest_jsonl(file_chunks(backup_file))
    with perfintel_server(workdir / "b", b_port, workdir / "b.log") as b:
        log("perfintel restore into an empty server B ...")
        with RssSampler(b.pid) as rss:
            took, _ = run_cli("restore", str(backup_file), "--url", b.base_url)
        figures.update(
            restore_s=took, restore_samples_per_s=n / took, restore_server_peak_rss=rss.peak
        )
        log(f"  restore: {took:.1f} s; exporting B to compare ...")
        restored, bad_restored = digest_jsonl(export_chunks(b.base_url))
    figures["file_equals_sent"] = in_file == sent and bad_in_file == 0
    figures["restored_equals_sent"] = restored == sent and bad_restored == 0
    figures["mismatched_series"] = sum(
        1 for k in sent.keys() | restored.keys() if sent.get(k) != restored.get(k)
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import tempfile

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--series", type=int, default=2000)
    p.add_argument(
        "--hours", type=float, default=167.0, help="history per series (default ~7 days)"
    )
    p.add_argument("--step", type=int, default=60, help="seconds between samples")
    p.add_argument("--gzip", action="store_true", help="back up to a .jsonl.gz file")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="perfintel-backup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        f = round_trip(
            workdir, n_series=args.series, hours=args.hours, step_s=args.step, gzip_file=args.gzip
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    mib = 2**20
    print(f"samples                 {f['samples']:,} in {f['series']:,} series")
    print(f"load (remote write)     {f['load_s']:.1f} s")
    print(
        f"perfintel backup        {f['backup_s']:.1f} s, {f['backup_samples_per_s'] / 1e6:.2f} M samples/s, "
        f"file {f['backup_bytes'] / mib:.0f} MiB, server peak RSS {f['backup_server_peak_rss'] / mib:.0f} MiB "
        f"({f['backup_server_rss_before'] / mib:.0f} MiB before)"
    )
    print(
        f"perfintel restore       {f['restore_s']:.1f} s, {f['restore_samples_per_s'] / 1e6:.2f} M samples/s, "
        f"server peak RSS {f['restore_server_peak_rss'] / mib:.0f} MiB"
    )
    print(f"backup file == sent     {f['file_equals_sent']}")
    print(
        f"restored == sent        {f['restored_equals_sent']} ({f['mismatched_series']} series differ)"
    )
    return 0 if f["restored_equals_sent"] and f["file_equals_sent"] else 1
