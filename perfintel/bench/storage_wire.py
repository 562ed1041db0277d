"""The storage benchmark's workload on the wire: remote-write and Influx
line-protocol request bodies, encoded before any timing, and their headers."""

from __future__ import annotations

from typing import Any

from perfintel.batch import SampleBatch
from perfintel.model import metric_name

RW_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "User-Agent": "perfintel-bench/0.1",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
LP_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "perfintel-bench/0.1"}


def encode_rw(shards: list[list[SampleBatch]]) -> list[list[bytes]]:
    from perfintel.ingest.remote_write import encode_remote_write

    return [[encode_remote_write(b) for b in shard] for shard in shards]


def _lp_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def encode_lp(shards: list[list[SampleBatch]]) -> list[list[bytes]]:
    """``name,tag=v,... value=<float> <ms>`` lines (metric ``<name>_value`` once mapped)."""
    prefixes: dict[Any, str] = {}
    out: list[list[bytes]] = []
    for shard in shards:
        bodies = []
        for b in shard:
            pre = []
            for ls in b.series:
                p = prefixes.get(ls)
                if p is None:
                    tags = ",".join(
                        f"{_lp_escape(k)}={_lp_escape(v)}" for k, v in ls if k != "__name__"
                    )
                    p = prefixes[ls] = f"{_lp_escape(metric_name(ls))},{tags} value="
                pre.append(p)
            lines = [
                f"{pre[i]}{v!r} {t}"
                for i, v, t in zip(
                    b.series_idx.tolist(), b.values.tolist(), b.timestamps.tolist(), strict=True
                )
            ]
            bodies.append(("\n".join(lines) + "\n").encode())
        out.append(bodies)
    return out
