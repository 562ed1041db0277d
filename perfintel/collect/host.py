"""Host metrics read straight from ``/proc`` (and a little of ``/sys``), named as node_exporter names them.

``HostCollector`` turns one read of the kernel's accounting files into a
``SampleBatch`` whose series carry node_exporter's metric and label names, so
dashboards built for node_exporter (``node_cpu_seconds_total{mode="idle"}``,
``node_filesystem_avail_bytes{mountpoint="/"}``, ...) work unchanged.

Every operating-system boundary is a constructor parameter with the real
default: the ``/proc`` root, the ``/sys`` root, the mounts file, ``statvfs``,
the clock, the clock-tick rate and the hostname. Tests point them at a
captured tree (``tests/collect/fixtures/proc``) and assert exact values.

Files read, relative to ``proc_root`` unless said otherwise:

==================  ===========================================================
``stat``            CPU ticks per mode, ``ctxt``, ``btime``, ``processes``
                    (forks), ``procs_running``, ``procs_blocked``, ``intr``
``meminfo``         every field, as ``node_memory_<Field>_bytes``
``loadavg``         ``node_load1/5/15``
``diskstats``       per whole disk; partitions, loop, ram/zram, fd skipped
``net/dev``         per interface receive/transmit counters
``<pid>/stat``      process count, threads and per-state counts
mounts file         mountpoints of real filesystems, measured with ``statvfs``
``sys_root/class/block/<dev>/partition``  marks a partition (skipped)
==================  ===========================================================

Each group ("cpu", "meminfo", ...) is read independently: a missing or
malformed file costs only its own series and shows up as
``node_scrape_collector_success{collector="..."} 0`` plus an entry in
``CollectResult.errors`` (node_exporter does the same).

Thread-safety: a collector holds no mutable state; ``collect()`` may be called
from any thread, including concurrently.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from perfintel.batch import BatchBuilder, MetricMetadata, SampleBatch, conventional_metadata
from perfintel.collect.schedule import run_every, stable_offset
from perfintel.model import label_set

__all__ = ["CollectResult", "HostCollector", "StatvfsResult", "run_host_collector"]

# /proc/stat cpu columns, in kernel order, under node_exporter's mode names.
_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_SECTOR_BYTES = 512  # diskstats counts 512-byte sectors whatever the device's block size

# node_exporter's default --collector.diskstats.device-exclude, widened to
# multi-letter sd names and mmcblk partitions.
_DISK_EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$")
# node_exporter's defaults for --collector.filesystem.{fs-types,mount-points}-exclude.
_FS_TYPES_EXCLUDE = re.compile(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    r"iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|"
    r"squashfs|erofs|sysfs|tracefs)$"
)
_MOUNT_POINTS_EXCLUDE = re.compile(
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
_MEMINFO_NAME = re.compile(r"[^a-zA-Z0-9_]")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class StatvfsResult(Protocol):
    """The fields of ``os.statvfs_result`` the collector reads."""

    @property
    def f_frsize(self) -> int: ...
    @property
    def f_blocks(self) -> int: ...
    @property
    def f_bfree(self) -> int: ...
    @property
    def f_bavail(self) -> int: ...
    @property
    def f_files(self) -> int: ...
    @property
    def f_ffree(self) -> int: ...


@dataclass
class CollectResult:
    """One collection: the samples, and ``collector -> error`` for each group that failed."""

    batch: SampleBatch
    errors: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, MetricMetadata]:
        """Type and help of the families collected (node_exporter's help texts)."""
        names = {dict(ls)["__name__"] for ls in self.batch.series}
        helps = {n: _help(n) for n in names}
        return conventional_metadata(names, helps)


#: node_exporter's help texts for the metrics this collector writes
HELP = {
    "node_scrape_collector_success": "node_exporter: Whether a collector succeeded.",
    "node_time_seconds": "System time in seconds since epoch (1970).",
    "node_cpu_seconds_total": "Seconds the CPUs spent in each mode.",
    "node_cpu_guest_seconds_total": "Seconds the CPUs spent in guests (VMs) for each mode.",
    "node_context_switches_total": "Total number of context switches.",
    "node_boot_time_seconds": "Node boot time, in unixtime.",
    "node_forks_total": "Total number of forks.",
    "node_procs_running": "Number of processes in runnable state.",
    "node_procs_blocked": "Number of processes blocked waiting for I/O to complete.",
    "node_intr_total": "Total number of interrupts serviced.",
    "node_load1": "1m load average.",
    "node_load5": "5m load average.",
    "node_load15": "15m load average.",
    "node_disk_reads_completed_total": "The total number of reads completed successfully.",
    "node_disk_reads_merged_total": "The total number of reads merged.",
    "node_disk_read_bytes_total": "The total number of bytes read successfully.",
    "node_disk_read_time_seconds_total": "The total number of seconds spent by all reads.",
    "node_disk_writes_completed_total": "The total number of writes completed successfully.",
    "node_disk_writes_merged_total": "The number of writes merged.",
    "node_disk_written_bytes_total": "The total number of bytes written successfully.",
    "node_disk_write_time_seconds_total": "This is the total number of seconds spent by all writes.",
    "node_disk_io_now": "The number of I/Os currently in progress.",
    "node_disk_io_time_seconds_total": "Total seconds spent doing I/Os.",
    "node_disk_io_time_weighted_seconds_total": "The weighted # of seconds spent doing I/Os.",
    "node_disk_discards_completed_total": "The total number of discards completed successfully.",
    "node_disk_discarded_sectors_total": "The total number of sectors discarded successfully.",
    "node_processes_pids": "Number of PIDs",
    "node_processes_threads": "Allocated threads in system",
    "node_processes_state": "Number of processes in each state.",
    "node_filesystem_device_error": "Whether an error occurred while getting statistics for the given device.",
    "node_filesystem_size_bytes": "Filesystem size in bytes.",
    "node_filesystem_free_bytes": "Filesystem free space in bytes.",
    "node_filesystem_avail_bytes": "Filesystem space available to non-root users in bytes.",
    "node_filesystem_files": "Filesystem total file nodes.",
    "node_filesystem_files_free": "Filesystem total free file nodes.",
    "node_filesystem_readonly": "Filesystem read-only status.",
}


def _help(name: str) -> str:
    if name in HELP:
        return HELP[name]
    if name.startswith("node_memory_"):
        field_name = name.removeprefix("node_memory_").removesuffix("_bytes")
        return f"Memory information field {field_name}."
    if name.startswith("node_network_"):
        what = name.removeprefix("node_network_").removesuffix("_total").replace("_", " ")
        return f"Network device statistic {what}."
    return ""


# (metric name, extra labels, value) as produced by each group's reader.
_Point = tuple[str, dict[str, str], float]


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # not POSIX, or unknown name
        return 100


class HostCollector:
    """Collect node_exporter-compatible host metrics from a ``/proc`` tree.

    >>> batch = HostCollector(hostname="vm").collect()  # the real /proc
    >>> (("__name__", "node_load1"), ("instance", "vm"), ("job", "node")) in batch.series
    True

    Every series gets ``instance`` (the hostname) and ``job`` labels; all samples
    of one collection share one timestamp, taken from ``clock`` at the start.
    """

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        sys_root: Path = Path("/sys"),
        clock: Callable[[], float] = time.time,
        mounts_file: Path | None = None,
        hostname: str | None = None,
        *,
        statvfs: Callable[[str], StatvfsResult] = os.statvfs,
        ticks_per_second: int | None = None,
        job: str = "node",
    ) -> None:
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)
        self.clock = clock
        self.mounts_file = (
            Path(mounts_file) if mounts_file is not None else self.proc_root / "mounts"
        )
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.statvfs = statvfs
        self.ticks_per_second = ticks_per_second or _clock_ticks()
        self.job = job
        self._readers: dict[str, Callable[[], Iterator[_Point]]] = {
            "stat": self._read_stat,
            "meminfo": self._read_meminfo,
            "loadavg": self._read_loadavg,
            "diskstats": self._read_diskstats,
            "netdev": self._read_netdev,
            "processes": self._read_processes,
            "filesystem": self._read_filesystems,
        }

    def collect(self) -> SampleBatch:
        """Read everything once; groups that fail are left out (see ``collect_with_errors``)."""
        return self.collect_with_errors().batch

    def collect_with_errors(self) -> CollectResult:
        now = self.clock()
        ts = round(now * 1000)
        base = {"instance": self.hostname, "job": self.job}
        builder = BatchBuilder()
        errors: dict[str, str] = {}

        def add(name: str, extra: dict[str, str], value: float) -> None:
            builder.add(label_set({**base, **extra, "__name__": name}), ts, float(value))

        for collector, reader in self._readers.items():
            try:
                points = list(reader())  # read the whole group before adding any of it
            except (OSError, ValueError, IndexError) as exc:
                errors[collector] = f"{type(exc).__name__}: {exc}"
                add("node_scrape_collector_success", {"collector": collector}, 0.0)
                continue
            for name, extra, value in points:
                add(name, extra, value)
            add("node_scrape_collector_success", {"collector": collector}, 1.0)
        add("node_time_seconds", {}, now)
        return CollectResult(builder.build(), errors)

    # -- readers: each yields (name, labels, value) or raises OSError/ValueError --

    def _read(self, relative: str) -> str:
        return (self.proc_root / relative).read_text(encoding="utf-8", errors="replace")

    def _read_stat(self) -> Iterator[_Point]:
        hz = float(self.ticks_per_second)
        for line in self._read("stat").splitlines():
            parts = line.split()
            if not parts:
                continue
            key = parts[0]
            if key.startswith("cpu") and key != "cpu":  # per-CPU lines; "cpu" is the total
                cpu = key[3:]
                ticks = [int(x) for x in parts[1:]]
                for mode, value in zip(_CPU_MODES, ticks, strict=False):
                    yield "node_cpu_seconds_total", {"cpu": cpu, "mode": mode}, value / hz
                if len(ticks) >= 10:  # guest time is also counted in user/nice
                    yield (
                        "node_cpu_guest_seconds_total",
                        {"cpu": cpu, "mode": "user"},
                        ticks[8] / hz,
                    )
                    yield (
                        "node_cpu_guest_seconds_total",
                        {"cpu": cpu, "mode": "nice"},
                        ticks[9] / hz,
                    )
            elif key == "ctxt":
                yield "node_context_switches_total", {}, float(parts[1])
            elif key == "btime":
                yield "node_boot_time_seconds", {}, float(parts[1])
            elif key == "processes":
                yield "node_forks_total", {}, float(parts[1])
            elif key == "procs_running":
                yield "node_procs_running", {}, float(parts[1])
            elif key == "procs_blocked":
                yield "node_procs_blocked", {}, float(parts[1])
            elif key == "intr":
                yield "node_intr_total", {}, float(parts[1])

    def _read_meminfo(self) -> Iterator[_Point]:
        for line in self._read("meminfo").splitlines():
            key, sep, rest = line.partition(":")
            fields = rest.split()
            if not sep or not fields:
                continue
            # "Active(anon)" -> "Active_anon", as node_exporter names it.
            name = _MEMINFO_NAME.sub("_", key.strip().replace(")", "")).strip("_")
            value = float(fields[0])
            if len(fields) > 1 and fields[1] == "kB":
                yield f"node_memory_{name}_bytes", {}, value * 1024
            else:
                yield f"node_memory_{name}", {}, value

    def _read_loadavg(self) -> Iterator[_Point]:
        parts = self._read("loadavg").split()
        yield "node_load1", {}, float(parts[0])
        yield "node_load5", {}, float(parts[1])
        yield "node_load15", {}, float(parts[2])

    def _is_partition(self, device: str) -> bool:
        return (self.sys_root / "class" / "block" / device / "partition").exists()

    def _read_diskstats(self) -> Iterator[_Point]:
        for line in self._read("diskstats").splitlines():
            parts = line.split()
            if len(parts) < 14:
                continue
            device = parts[2]
            if _DISK_EXCLUDE.match(device) or self._is_partition(device):
                continue
            f = [float(x) for x in parts[3:]]
            lab = {"device": device}
            yield "node_disk_reads_completed_total", lab, f[0]
            yield "node_disk_reads_merged_total", lab, f[1]
            yield "node_disk_read_bytes_total", lab, f[2] * _SECTOR_BYTES
            yield "node_disk_read_time_seconds_total", lab, f[3] / 1000
            yield "node_disk_writes_completed_total", lab, f[4]
            yield "node_disk_writes_merged_total", lab, f[5]
            yield "node_disk_written_bytes_total", lab, f[6] * _SECTOR_BYTES
            yield "node_disk_write_time_seconds_total", lab, f[7] / 1000
            yield "node_disk_io_now", lab, f[8]
            yield "node_disk_io_time_seconds_total", lab, f[9] / 1000
            yield "node_disk_io_time_weighted_seconds_total", lab, f[10] / 1000
            if len(f) >= 15:  # kernel 4.18+: discards
                yield "node_disk_discards_completed_total", lab, f[11]
                yield "node_disk_discarded_sectors_total", lab, f[13]

    def _read_netdev(self) -> Iterator[_Point]:
        lines = self._read("net/dev").splitlines()
        for line in lines[2:]:  # two header lines
            device, sep, rest = line.partition(":")
            if not sep:
                continue
            v = [float(x) for x in rest.split()]
            if len(v) < 16:
                raise ValueError(f"net/dev: {len(v)} columns for {device.strip()}, expected 16")
            lab = {"device": device.strip()}
            for direction, off in (("receive", 0), ("transmit", 8)):
                yield f"node_network_{direction}_bytes_total", lab, v[off]
                yield f"node_network_{direction}_packets_total", lab, v[off + 1]
                yield f"node_network_{direction}_errs_total", lab, v[off + 2]
                yield f"node_network_{direction}_drop_total", lab, v[off + 3]

    def _read_processes(self) -> Iterator[_Point]:
        pids = threads = 0
        states: dict[str, int] = {}
        for entry in os.scandir(self.proc_root):
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(entry.path, "stat").read_text(encoding="utf-8", errors="replace")
            except OSError:  # the process ended between listing and reading
                continue
            # "pid (comm) S ..." where comm may hold spaces and parentheses.
            after = raw[raw.rfind(")") + 1 :].split()
            if len(after) < 18:
                continue
            pids += 1
            states[after[0]] = states.get(after[0], 0) + 1
            threads += int(after[17])
        yield "node_processes_pids", {}, float(pids)
        yield "node_processes_threads", {}, float(threads)
        for state, count in sorted(states.items()):
            yield "node_processes_state", {"state": state}, float(count)

    def _read_filesystems(self) -> Iterator[_Point]:
        text = self.mounts_file.read_text(encoding="utf-8", errors="replace")
        seen: set[str] = set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            device, mountpoint, fstype, options = (_unescape_mount(p) for p in parts[:4])
            if (
                _FS_TYPES_EXCLUDE.match(fstype)
                or _MOUNT_POINTS_EXCLUDE.match(mountpoint)
                or mountpoint in seen
            ):
                continue
            seen.add(mountpoint)
            lab = {"device": device, "fstype": fstype, "mountpoint": mountpoint}
            try:
                st = self.statvfs(mountpoint)
            except OSError:
                yield "node_filesystem_device_error", lab, 1.0
                continue
            yield "node_filesystem_device_error", lab, 0.0
            yield "node_filesystem_size_bytes", lab, float(st.f_blocks * st.f_frsize)
            yield "node_filesystem_free_bytes", lab, float(st.f_bfree * st.f_frsize)
            yield "node_filesystem_avail_bytes", lab, float(st.f_bavail * st.f_frsize)
            yield "node_filesystem_files", lab, float(st.f_files)
            yield "node_filesystem_files_free", lab, float(st.f_ffree)
            readonly = "ro" in options.split(",")
            yield "node_filesystem_readonly", lab, 1.0 if readonly else 0.0


def _unescape_mount(field: str) -> str:
    """Undo the kernel's octal escapes in /proc/mounts (``\\040`` is a space)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


async def run_host_collector(
    collector: HostCollector,
    sink: Callable[[SampleBatch], Awaitable[None]],
    interval_s: float = 15.0,
    *,
    clock: Callable[[], float] | None = None,
) -> None:
    """Collect every ``interval_s`` seconds and await ``sink(batch)``, until cancelled.

    Collection reads files, so it runs in a worker thread and never blocks the
    event loop. Ticks are aligned to a phase derived from the hostname (see
    ``perfintel.collect.schedule``); ``clock`` defaults to the collector's. A
    failing collection or sink is logged and the loop goes on.
    """
    tick_clock = clock or collector.clock

    async def tick() -> None:
        batch = await asyncio.to_thread(collector.collect)
        await sink(batch)

    offset = stable_offset(f"node\x00{collector.hostname}", interval_s)
    await run_every(interval_s, offset, tick, clock=tick_clock, name="host collector")
