"""PromQL passed through to a remote TSDB's own query API (``storage.remote.promql``).

The other way to answer a query over the remote store is perfintel's engine
over samples fetched with ``/api/v1/export``; passing it through sends the
query text to ``<read_url>/api/v1/query`` or ``/api/v1/query_range`` and
relays the answer's ``data``. The remote engine is then the judge of the
language: on VictoriaMetrics that is MetricsQL, a superset of PromQL whose
answers differ from Prometheus' in places (``rate`` without extrapolation,
windows that look back one step further, ...). ``benchmarks/remote_store.py``
measures both ways and how many answers of the compatibility corpus agree.

With a namespace (``name=value``) the query carries VictoriaMetrics'
``extra_label`` argument, which restricts every selector of the query to the
namespace, and the label is removed from the answer. Safe to call from many
worker threads at once; nothing here touches an event loop.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from perfintel.errors import QueryError, QueryTimeoutError, StorageError

__all__ = ["RemotePromQL"]


class RemotePromQL:
    """Evaluate PromQL on the remote TSDB under ``read_url`` (its Prometheus API prefix)."""

    def __init__(
        self,
        read_url: str,
        *,
        timeout_s: float = 30.0,
        namespace: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        before_read: Callable[[], None] | None = None,
    ) -> None:
        self.read_url = read_url.rstrip("/")
        self.before_read = before_read  # the store's read-after-write flush
        self.namespace = namespace
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers=headers or {},
            transport=transport,
        )

    def instant(self, query: str, at_ms: int) -> bytes:
        """The ``data`` of an instant query's answer, as JSON."""
        return self._call("/api/v1/query", [("query", query), ("time", _seconds(at_ms))])

    def range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> bytes:
        """The ``data`` of a range query's answer, as JSON."""
        return self._call(
            "/api/v1/query_range",
            [
                ("query", query),
                ("start", _seconds(start_ms)),
                ("end", _seconds(end_ms)),
                ("step", _seconds(step_ms)),
            ],
        )

    def _call(self, path: str, params: list[tuple[str, str]]) -> bytes:
        if self.before_read is not None:
            self.before_read()
        if self.namespace is not None:
            params.append(("extra_label", "=".join(self.namespace)))
        try:
            resp = self._client.post(
                self.read_url + path,
                content=urllib.parse.urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.TimeoutException as exc:
            raise QueryTimeoutError(f"remote query timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise StorageError(f"remote query failed: {exc}") from exc
        try:
            doc: dict[str, Any] = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            doc = {}
        if resp.status_code in (400, 422) and doc.get("status") == "error":
            raise QueryError(str(doc.get("error", resp.text[:300])))
        if resp.status_code >= 300 or doc.get("status") != "success":
            raise StorageError(f"remote query answered HTTP {resp.status_code}: {resp.text[:300]}")
        data = doc["data"]
        if self.namespace is not None and isinstance(data.get("result"), list):
            hidden = self.namespace[0]
            for item in data["result"]:
                if isinstance(item, dict) and isinstance(item.get("metric"), dict):
                    item["metric"].pop(hidden, None)
        return orjson.dumps(data)

    def close(self) -> None:
        self._client.close()


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"
