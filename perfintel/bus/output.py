"""Where a worker writes its scores when the store is not shared: Prometheus
remote write to a URL (an ingest process, or any remote-write receiver).

A ``SampleWriter``: ``append`` returns once the receiver answered 2xx, and
raises ``StorageError`` otherwise (the detector counts and logs it).
"""

from __future__ import annotations

import httpx

from perfintel.batch import SampleBatch
from perfintel.errors import StorageError
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.storage.base import AppendResult


class RemoteWriteOutput:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url
        headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(timeout=timeout_s, headers=headers)

    def append(self, batch: SampleBatch) -> AppendResult:
        try:
            r = self.http.post(self.url, content=encode_remote_write(batch))
        except httpx.HTTPError as exc:
            raise StorageError(f"remote write to {self.url}: {exc}") from exc
        if r.status_code // 100 != 2:
            raise StorageError(f"remote write to {self.url}: HTTP {r.status_code} {r.text[:200]}")
        return AppendResult(accepted=len(batch))

    def close(self) -> None:
        self.http.close()
