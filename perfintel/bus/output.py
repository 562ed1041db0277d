"""Where a worker writes its scores when the store is not shared: Prometheus
remote write to a URL (an ingest process, or any remote-write receiver).

A ``SampleWriter``: ``append`` returns once the receiver answered 2xx. It
retries (backing off to ``max_backoff_s``) until then, or until ``close``:
the detector's state has already moved past the samples, so a score not
written now is never written, and the shard had better wait (its entries stay
unacknowledged meanwhile, and the bus pushes back on ingest).
"""

from __future__ import annotations

import logging
import threading

import httpx

from perfintel.batch import SampleBatch
from perfintel.errors import StorageError
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.storage.base import AppendResult

log = logging.getLogger(__name__)


class RemoteWriteOutput:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = url
        self.max_backoff_s = max_backoff_s
        self._closed = threading.Event()
        self.retries = 0
        headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(timeout=timeout_s, headers=headers)

    def append(self, batch: SampleBatch) -> AppendResult:
        body = encode_remote_write(batch)
        wait = 0.1
        while True:
            try:
                return self._post(body, len(batch))
            except _Retryable as exc:
                if self._closed.is_set():
                    raise StorageError(str(exc)) from exc
                self.retries += 1
                log.warning("%s; retrying in %.1f s", exc, wait)
                self._closed.wait(wait)
                wait = min(self.max_backoff_s, 2 * wait)

    def _post(self, body: bytes, n: int) -> AppendResult:
        try:
            r = self.http.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise _Retryable(f"remote write to {self.url}: {exc}") from exc
        if r.status_code // 100 != 2:
            message = f"remote write to {self.url}: HTTP {r.status_code} {r.text[:200]}"
            if r.status_code >= 500 or r.status_code == 429:
                raise _Retryable(message)
            raise StorageError(message)  # refused for good (auth, bad data): not retried
        return AppendResult(accepted=n)

    def stop_retrying(self) -> None:
        """Make a retry in progress give up (shutdown)."""
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        self.http.close()


class _Retryable(StorageError):
    """The receiver is away or overloaded (connection error, 5xx, 429)."""
