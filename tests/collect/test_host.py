"""HostCollector against a captured /proc tree (exact values) and the real /proc (plausibility).

``fixtures/proc`` holds hand-trimmed copies of this machine's files. Two lines are
synthetic, to exercise code paths the VM lacks: the ``vda1`` partition line in
``diskstats`` (with ``fixtures/sys/class/block/vda1/partition``) and the
``/mnt/data\\040disk`` xfs mount in ``mounts``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from perfintel.batch import SampleBatch
from perfintel.collect.host import HostCollector
from perfintel.model import format_series, label_set

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_795_800_000.25


@dataclass(frozen=True)
class FakeStatvfs:
    f_frsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int


STATVFS = {
    "/": FakeStatvfs(4096, 66_053_021, 59_903_196, 20_447_903, 16_777_216, 16_338_715),
    "/mnt/data disk": FakeStatvfs(1024, 1000, 600, 500, 64, 60),
}


def fake_statvfs(path: str) -> FakeStatvfs:
    try:
        return STATVFS[path]
    except KeyError:
        raise FileNotFoundError(path) from None


def fixture_collector(proc: Path = FIXTURES / "proc") -> HostCollector:
    return HostCollector(
        proc,
        FIXTURES / "sys",
        clock=lambda: NOW,
        hostname="testhost",
        statvfs=fake_statvfs,
        ticks_per_second=100,
    )


def as_dict(batch: SampleBatch) -> dict[str, float]:
    """``format_series(labels) -> value``; fails if a series appears twice."""
    out: dict[str, float] = {}
    for labels, _ts, values in batch.iter_series():
        assert len(values) == 1, format_series(labels)
        out[format_series(labels)] = float(values[0])
    return out


def key(name: str, **labels: str) -> str:
    return format_series(
        label_set({"__name__": name, "instance": "testhost", "job": "node", **labels})
    )


@pytest.fixture(scope="module")
def samples() -> dict[str, float]:
    return as_dict(fixture_collector().collect())


def expect(samples: Mapping[str, float], name: str, value: float, **labels: str) -> None:
    k = key(name, **labels)
    assert k in samples, f"missing {k}"
    assert samples[k] == pytest.approx(value, rel=1e-12, abs=1e-12), k


def test_all_samples_share_the_clock_timestamp_and_target_labels() -> None:
    batch = fixture_collector().collect()
    assert set(batch.timestamps.tolist()) == {1_795_800_000_250}
    for labels in batch.series:
        d = dict(labels)
        assert d["instance"] == "testhost"
        assert d["job"] == "node"
    assert len(set(batch.series)) == len(batch.series)


def test_cpu_seconds_per_mode(samples: dict[str, float]) -> None:
    # cpu0 2171 0 1229 38717 18 0 23 5 0 0 at 100 ticks per second
    for mode, value in {
        "user": 21.71,
        "nice": 0.0,
        "system": 12.29,
        "idle": 387.17,
        "iowait": 0.18,
        "irq": 0.0,
        "softirq": 0.23,
        "steal": 0.05,
    }.items():
        expect(samples, "node_cpu_seconds_total", value, cpu="0", mode=mode)
    expect(samples, "node_cpu_seconds_total", 44.92, cpu="1", mode="user")
    expect(samples, "node_cpu_seconds_total", 353.89, cpu="1", mode="idle")
    expect(samples, "node_cpu_guest_seconds_total", 0.0, cpu="1", mode="nice")
    # The aggregate "cpu" line is not exported (node_exporter only has per-CPU series).
    assert not any('cpu=""' in k for k in samples)
    assert sum(k.startswith("node_cpu_seconds_total{") for k in samples) == 16


def test_stat_counters(samples: dict[str, float]) -> None:
    expect(samples, "node_context_switches_total", 924025)
    expect(samples, "node_boot_time_seconds", 1795731945)
    expect(samples, "node_forks_total", 9184)
    expect(samples, "node_intr_total", 309713)
    expect(samples, "node_procs_running", 3)
    expect(samples, "node_procs_blocked", 0)
    expect(samples, "node_time_seconds", NOW)


def test_memory(samples: dict[str, float]) -> None:
    expect(samples, "node_memory_MemTotal_bytes", 24684092 * 1024)
    expect(samples, "node_memory_MemFree_bytes", 23534360 * 1024)
    expect(samples, "node_memory_MemAvailable_bytes", 23994612 * 1024)
    expect(samples, "node_memory_Buffers_bytes", 14252 * 1024)
    expect(samples, "node_memory_Cached_bytes", 658240 * 1024)
    expect(samples, "node_memory_SwapTotal_bytes", 0)
    expect(samples, "node_memory_SwapFree_bytes", 0)
    expect(samples, "node_memory_Active_anon_bytes", 22208 * 1024)  # "Active(anon)"
    expect(samples, "node_memory_HugePages_Total", 0)  # no unit, no _bytes suffix
    expect(samples, "node_memory_Hugepagesize_bytes", 2048 * 1024)


def test_load(samples: dict[str, float]) -> None:
    expect(samples, "node_load1", 0.15)
    expect(samples, "node_load5", 0.14)
    expect(samples, "node_load15", 0.08)


def test_disk_whole_devices_only(samples: dict[str, float]) -> None:
    # vda 37064 8637 2931546 6629 33287 38177 4596184 11137 0 4988 18362 10230 24 772792 ...
    expect(samples, "node_disk_reads_completed_total", 37064, device="vda")
    expect(samples, "node_disk_read_bytes_total", 2931546 * 512, device="vda")
    expect(samples, "node_disk_read_time_seconds_total", 6.629, device="vda")
    expect(samples, "node_disk_writes_completed_total", 33287, device="vda")
    expect(samples, "node_disk_written_bytes_total", 4596184 * 512, device="vda")
    expect(samples, "node_disk_io_time_seconds_total", 4.988, device="vda")
    expect(samples, "node_disk_io_time_weighted_seconds_total", 18.362, device="vda")
    expect(samples, "node_disk_discards_completed_total", 10230, device="vda")
    disk_devices = {
        k.split('device="')[1].split('"')[0] for k in samples if k.startswith("node_disk_")
    }
    assert disk_devices == {"vda"}  # loop0, zram0 and the partition vda1 are skipped


def test_network(samples: dict[str, float]) -> None:
    expect(samples, "node_network_receive_bytes_total", 279906240, device="eth0")
    expect(samples, "node_network_receive_packets_total", 6616, device="eth0")
    expect(samples, "node_network_transmit_bytes_total", 312325, device="eth0")
    expect(samples, "node_network_transmit_packets_total", 2911, device="eth0")
    expect(samples, "node_network_receive_errs_total", 0, device="eth0")
    expect(samples, "node_network_transmit_drop_total", 0, device="eth0")
    expect(samples, "node_network_receive_bytes_total", 108087, device="lo")
    devices = {
        k.split('device="')[1].split('"')[0] for k in samples if k.startswith("node_network_")
    }
    assert devices == {"lo", "ifb0", "ifb1", "eth0"}


def test_processes(samples: dict[str, float]) -> None:
    # fixtures/proc/1/stat (14 threads, S) and fixtures/proc/2189/stat (1 thread, S)
    expect(samples, "node_processes_pids", 2)
    expect(samples, "node_processes_threads", 15)
    expect(samples, "node_processes_state", 2, state="S")


def test_filesystems_real_ones_only(samples: dict[str, float]) -> None:
    root = {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}
    expect(samples, "node_filesystem_size_bytes", 66_053_021 * 4096, **root)
    expect(samples, "node_filesystem_free_bytes", 59_903_196 * 4096, **root)
    expect(samples, "node_filesystem_avail_bytes", 20_447_903 * 4096, **root)
    expect(samples, "node_filesystem_files", 16_777_216, **root)
    expect(samples, "node_filesystem_files_free", 16_338_715, **root)
    expect(samples, "node_filesystem_readonly", 0, **root)
    data = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": "/mnt/data disk"}
    expect(samples, "node_filesystem_size_bytes", 1000 * 1024, **data)
    expect(samples, "node_filesystem_avail_bytes", 500 * 1024, **data)
    expect(samples, "node_filesystem_readonly", 1, **data)
    mounts = {
        k.split('mountpoint="')[1].split('"')[0]
        for k in samples
        if k.startswith("node_filesystem_")
    }
    # proc, sysfs, devtmpfs, cgroups and anything under /dev, /sys are not real filesystems
    assert mounts == {"/", "/mnt/data disk"}


def test_statvfs_failure_is_a_device_error(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    (proc / "mounts").write_text("/dev/vdc /gone ext4 rw 0 0\n")
    samples = as_dict(fixture_collector(proc).collect())
    lab = {"device": "/dev/vdc", "fstype": "ext4", "mountpoint": "/gone"}
    expect(samples, "node_filesystem_device_error", 1, **lab)
    assert key("node_filesystem_size_bytes", **lab) not in samples


def test_every_group_reports_success(samples: dict[str, float]) -> None:
    for group in ("stat", "meminfo", "loadavg", "diskstats", "netdev", "processes", "filesystem"):
        expect(samples, "node_scrape_collector_success", 1, collector=group)


def test_missing_or_malformed_file_fails_only_its_group(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    (proc / "loadavg").unlink()
    (proc / "net" / "dev").write_text("header\nheader\n  eth0: 1 2 3\n")
    result = fixture_collector(proc).collect_with_errors()
    assert set(result.errors) == {"loadavg", "netdev"}
    samples = as_dict(result.batch)
    expect(samples, "node_scrape_collector_success", 0, collector="loadavg")
    expect(samples, "node_scrape_collector_success", 0, collector="netdev")
    expect(samples, "node_scrape_collector_success", 1, collector="meminfo")
    assert key("node_load1") not in samples
    assert not any(k.startswith("node_network_") for k in samples)
    expect(samples, "node_memory_MemTotal_bytes", 24684092 * 1024)


def test_comm_with_spaces_and_parentheses(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    (proc / "77").mkdir()
    fields = ["R", *["0"] * 16, "3", *["0"] * 5]
    (proc / "77" / "stat").write_text("77 (a) b (c) " + " ".join(fields) + "\n")
    samples = as_dict(fixture_collector(proc).collect())
    expect(samples, "node_processes_pids", 3)
    expect(samples, "node_processes_threads", 18)
    expect(samples, "node_processes_state", 1, state="R")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a Linux /proc")
def test_real_proc_has_the_key_series_and_they_are_plausible() -> None:
    collector = HostCollector(hostname="real")
    result = collector.collect_with_errors()
    assert result.errors == {}
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for labels, _ts, values in result.batch.iter_series():
        d = dict(labels)
        by_name.setdefault(d["__name__"], []).append((d, float(values[0])))

    def one(name: str) -> float:
        (entry,) = by_name[name]
        return entry[1]

    cpus = {d["cpu"] for d, _ in by_name["node_cpu_seconds_total"]}
    assert 1 <= len(cpus) <= (os.cpu_count() or 1)  # offline CPUs are not listed
    assert all(v >= 0 for _, v in by_name["node_cpu_seconds_total"])
    assert 0 < one("node_memory_MemAvailable_bytes") <= one("node_memory_MemTotal_bytes")
    assert one("node_memory_MemTotal_bytes") > 64 * 1024 * 1024
    assert one("node_load1") >= 0
    assert 1e9 < one("node_boot_time_seconds") < one("node_time_seconds")
    assert one("node_context_switches_total") > 0
    assert one("node_procs_running") >= 1  # this process is running
    assert one("node_processes_pids") >= 1
    assert {d["device"] for d, _ in by_name["node_network_receive_bytes_total"]} >= {"lo"}
    mountpoints = {d["mountpoint"] for d, _ in by_name["node_filesystem_size_bytes"]}
    assert "/" in mountpoints
    avail = {d["mountpoint"]: v for d, v in by_name["node_filesystem_avail_bytes"]}
    for d, size in by_name["node_filesystem_size_bytes"]:
        assert 0 <= avail[d["mountpoint"]] <= size
