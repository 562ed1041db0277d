"""``RemoteStore``: samples kept in VictoriaMetrics (or another Prometheus-compatible TSDB).

Wire protocols, all plain HTTP through one synchronous ``httpx.Client``:

* **write**: Prometheus remote_write 1.0 (snappy-compressed protobuf, the
  project's own ``encode_remote_write``) to ``write_url`` — VictoriaMetrics
  single-node ``http://vm:8428/api/v1/write``; cluster ``vminsert``
  ``http://vminsert:8480/insert/<tenant>/prometheus/api/v1/write``; Mimir
  ``/api/v1/push``; Thanos Receive ``/api/v1/receive``. Batches are cut into
  requests of at most ``max_samples_per_request`` samples; while the server
  ingests one, the next is encoded (a pool of four threads per store posts them).
* **read**: under ``read_url`` (the Prometheus API prefix: ``http://vm:8428``
  single-node, ``http://vmselect:8481/select/<tenant>/prometheus`` cluster):
  raw samples from ``/api/v1/export`` (VictoriaMetrics' JSON lines, parsed by
  ``ingest.vm_export``, streamed so a read stops as soon as it crosses its
  ``QueryLimits``), series from ``/api/v1/series``, label names and values from
  ``/api/v1/labels`` and ``/api/v1/label/<name>/values``. The export endpoint is
  VictoriaMetrics-only: Mimir and Thanos can take our writes, not serve
  ``select``.
* **flush**: ``flush_url`` (single-node ``/internal/force_flush``) makes
  acknowledged samples searchable at once; VictoriaMetrics otherwise shows
  new samples within about a second. A read after a write in the same
  process flushes first (one cheap call, only when something was written
  since), so a reader sees every sample an ``append`` acknowledged. Cluster
  setups have no such endpoint: leave it unset and reads see writes after
  that delay.

**Namespace.** With ``namespace=("name", "value")`` every written series gets
that label, every read is restricted to it and the label is removed from what
reads return: several perfintel deployments (or tests) share one TSDB without
seeing each other's series.

**What differs from the embedded store** (the contract suite,
``tests/storage/test_contract.py``, runs on both and states each difference):

* an ordinary NaN sample is dropped by VictoriaMetrics on ingest (it treats NaN
  as "no value"); Prometheus staleness markers are kept bit-exact (exported as
  ``null``), as are ``+Inf``/``-Inf``;
* values go through VictoriaMetrics' decimal encoding: about 12 significant
  digits are kept (``1/3`` reads back as ``0.333333333333``; ``0.1`` and
  ``123456.789`` exactly), and ``-0.0`` reads back as ``0``;
* a range starting at 0 ms reads from 1 ms (VictoriaMetrics takes ``start=0``
  as "no start");
* rewriting a timestamp keeps both samples in VictoriaMetrics (there is no
  last-write-wins): reads keep the *largest* value of a repeated timestamp,
  which is what VictoriaMetrics' own deduplication keeps, so the answer is
  deterministic and the same as its query engine's;
* series, label names and label values come from VictoriaMetrics' per-day
  index: a series with samples on the same UTC day as the range, but not in
  it, is listed too (Prometheus' block-granular index behaves alike);
* rollups are computed on read from raw samples (``select_rollup`` answers for
  every resolution in ``rollup_resolutions_ms``, as the in-memory store does).

Thread-safety: the ``httpx.Client`` (a connection pool) is shared; every
method may be called from any number of worker threads at once. Nothing here
touches an event loop.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from perfintel.batch import SampleBatch
from perfintel.errors import OverloadedError, QueryError, StorageError
from perfintel.ingest.remote_write import encode_remote_write
from perfintel.ingest.vm_export import VmJsonlStream
from perfintel.model import LabelSet, Matcher, MatchOp, Selector, label_set
from perfintel.storage.base import (
    AppendResult,
    FlushReport,
    QueryLimits,
    SeriesRollup,
    SeriesSamples,
    StoreSize,
    StoreStats,
    check_limits,
    rollups_from_raw,
)
from perfintel.storage.samples import in_range

__all__ = ["RemoteStore", "RemoteStoreOptions"]

_ALL_SERIES = Matcher("__name__", MatchOp.RE, ".+")
_DAY_MS = 86_400_000
_MAX_EXPORT_LINE = 64 << 20  # VictoriaMetrics splits a long series into lines far below this
_NAMESPACE_CACHE = 1 << 18  # series whose namespaced label set is kept (about 50 MB at most)
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_WRITE = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
# Exports are large and usually cross a LAN: compressing them costs both ends more CPU
# than the bytes cost (measured on loopback: a third of a read's time went to gzip).
_EXPORT = {**_FORM, "Accept-Encoding": "identity"}


def _form(params: list[tuple[str, str]]) -> bytes:
    """A POST form with repeated keys (``match[]``): no URL length limit."""
    return urllib.parse.urlencode(params).encode()


@dataclass(frozen=True)
class RemoteStoreOptions:
    write_url: str
    read_url: str
    flush_url: str | None = None
    timeout_s: float = 30.0
    max_samples_per_request: int = 50_000
    namespace: tuple[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Mimir's X-Scope-OrgID
    rollup_resolutions_ms: tuple[int, ...] = (300_000, 3_600_000)

    @classmethod
    def single_node(cls, base_url: str, **kw: Any) -> RemoteStoreOptions:
        """Options for a VictoriaMetrics single-node server at ``base_url``."""
        base = base_url.rstrip("/")
        return cls(
            write_url=f"{base}/api/v1/write",
            read_url=base,
            flush_url=f"{base}/internal/force_flush",
            **kw,
        )


def _keep_largest(ts: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by timestamp, one sample per timestamp: the largest value of a repeat
    (VictoriaMetrics' own dedup rule; NaN-valued staleness markers lose to numbers)."""
    key = np.where(np.isnan(vals), -np.inf, vals)
    order = np.lexsort((key, ts))
    ts, vals = ts[order], vals[order]
    keep = np.ones(len(ts), bool)
    keep[:-1] = ts[1:] != ts[:-1]
    return ts[keep], vals[keep]


class RemoteStore:
    """A ``Store`` whose samples live in a remote Prometheus-compatible TSDB (see module doc)."""

    def __init__(
        self, options: RemoteStoreOptions, *, transport: httpx.BaseTransport | None = None
    ):
        self.opts = options
        self._client = httpx.Client(
            timeout=httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 5.0)),
            headers=options.headers,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._last_series = 0  # from the last ``stats``; ``size`` never calls out
        # Samples acknowledged so far, and how many of them the last *completed* flush
        # covers: a read flushes first unless they are equal, so it never trusts a flush
        # another thread has started but not finished.
        self._written = 0
        self._visible_upto = 0
        self._flush_lock = threading.Lock()  # one flush at a time
        self._flushes = 0  # completed flushes
        # each written series' label set with the namespace label: building it cost more
        # than encoding the samples (a worker writes the same output series every round)
        self._in_namespace: dict[LabelSet, LabelSet] = {}
        # a batch of several requests keeps one in flight while it encodes the next
        self._posts = ThreadPoolExecutor(4, thread_name_prefix="remote-write")

    # -- HTTP, foreign errors translated here ---------------------------------
    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise StorageError(f"remote store: {what} timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise StorageError(f"remote store: {what} failed: {exc}") from exc

    def _check(self, resp: httpx.Response, what: str, *, reading: bool) -> None:
        if resp.status_code < 300:
            return
        body = resp.text[:300]
        if resp.status_code == 429:
            raise OverloadedError(f"remote store is shedding load ({what}): {body}")
        if reading and resp.status_code in (400, 422):
            # e.g. a read over VictoriaMetrics' own -search.max* limits
            raise QueryError(f"remote store rejected {what}: {body}")
        # a write we validated was refused, or the server failed: the backend's fault
        raise StorageError(f"remote store: {what} answered HTTP {resp.status_code}: {body}")

    def visible(self) -> None:
        """Flush if this process wrote since the last completed flush (cheap otherwise):
        what a reader calls first, so it sees every acknowledged sample."""
        if self._visible_upto < self._written and self.opts.flush_url:
            self.flush()

    def _get_json(self, path: str, params: list[tuple[str, str]], what: str) -> object:
        self.visible()
        with self._call(what):
            resp = self._client.post(
                self.opts.read_url + path, content=_form(params), headers=_FORM
            )
            self._check(resp, what, reading=True)
            try:
                doc = resp.json()
            except ValueError as exc:  # not JSON: a proxy's page, a truncated body
                raise StorageError(f"remote store: {what} answered no JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise StorageError(f"remote store: unexpected answer to {what}: {str(doc)[:300]}")
        return doc.get("data")

    # -- selectors and the namespace ---------------------------------------------
    def _scoped(self, selector: Selector) -> str:
        matchers = list(selector.matchers)
        if self.opts.namespace is not None:
            # added to the reader's own matchers, as VictoriaMetrics' extra_label does for
            # passed-through queries: a matcher on the namespace label cannot widen a read
            name, value = self.opts.namespace
            matchers.append(Matcher(name, MatchOp.EQ, value))
        elif all(m.matches_empty for m in matchers):
            # a TSDB refuses a selector that matches everything; every series has a name
            matchers.append(_ALL_SERIES)
        return str(Selector(tuple(matchers)))

    def _matches(self, selectors: Sequence[Selector]) -> list[tuple[str, str]]:
        return [("match[]", self._scoped(s)) for s in (selectors or [Selector()])]

    def _unscoped(self, labels: LabelSet) -> LabelSet:
        if self.opts.namespace is None:
            return labels
        name = self.opts.namespace[0]
        return tuple(kv for kv in labels if kv[0] != name)

    @staticmethod
    def _range(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
        start_ms = max(start_ms, 1)  # start=0 means "no start" to VictoriaMetrics
        if start_ms < end_ms and end_ms % _DAY_MS == 0:
            # VictoriaMetrics leaves out the day a range ends on when it ends exactly at 00:00
            # UTC and begins the day before: the midnight sample goes missing (Debian's 1.79.5);
            # ask one millisecond more, the reads keep the asked range
            end_ms += 1
        return [("start", f"{start_ms / 1000:.3f}"), ("end", f"{end_ms / 1000:.3f}")]

    # -- writes --------------------------------------------------------------------
    def append(self, batch: SampleBatch) -> AppendResult:
        if not len(batch):
            return AppendResult(accepted=0)
        if self.opts.namespace is not None:
            batch = SampleBatch(
                [self._namespaced(ls) for ls in batch.series],
                batch.series_idx,
                batch.timestamps,
                batch.values,
            )
        step = self.opts.max_samples_per_request
        in_flight: Future[None] | None = None
        try:
            for lo in range(0, len(batch), step):
                body = encode_remote_write(
                    SampleBatch(
                        batch.series,
                        batch.series_idx[lo : lo + step],
                        batch.timestamps[lo : lo + step],
                        batch.values[lo : lo + step],
                    )
                )
                if lo + step >= len(batch):  # the last (or only) request: no thread needed
                    self._post(body)
                    break
                # the server ingests this request while the next one is encoded here
                posting = self._posts.submit(self._post, body)
                if in_flight is not None:
                    in_flight.result()
                in_flight = posting
        finally:
            if in_flight is not None:
                in_flight.result()  # raises its error, after the others have ended
        with self._lock:
            self._written += len(batch)
        return AppendResult(accepted=len(batch))

    def _post(self, body: bytes) -> None:
        with self._call("remote_write"):
            resp = self._client.post(self.opts.write_url, content=body, headers=_WRITE)
        self._check(resp, "remote_write", reading=False)

    def _namespaced(self, labels: LabelSet) -> LabelSet:
        got = self._in_namespace.get(labels)
        if got is None:
            if len(self._in_namespace) >= _NAMESPACE_CACHE:
                self._in_namespace.clear()  # bounded: start over (a dict op is thread-safe)
            name, value = self.opts.namespace or ("", "")
            got = self._in_namespace[labels] = label_set({**dict(labels), name: value})
        return got

    def flush(self, *, compact: bool = False) -> FlushReport:
        """Make every sample acknowledged before this call searchable (``compact`` has
        nothing more to do); ``flushed`` counts the samples it made visible."""
        target, seq = self._written, self._flushes  # acknowledged before this call
        with self._flush_lock:
            if self._flushes > seq and self._visible_upto >= target:
                return FlushReport()  # a flush that began after our writes covered them
            if self.opts.flush_url:
                with self._call("flush"):
                    resp = self._client.get(self.opts.flush_url)
                self._check(resp, "flush", reading=False)
            before = self._visible_upto
            self._visible_upto = max(before, target)
            self._flushes += 1
        return FlushReport(flushed=max(0, target - before))

    # -- reads ---------------------------------------------------------------------
    def select(
        self, selector: Selector, start_ms: int, end_ms: int, *, limits: QueryLimits | None = None
    ) -> list[SeriesSamples]:
        self.visible()
        parts: dict[LabelSet, list[tuple[np.ndarray, np.ndarray]]] = {}
        samples = 0
        stream = VmJsonlStream(max_line_bytes=_MAX_EXPORT_LINE)
        params = [("match[]", self._scoped(selector)), *self._range(start_ms, end_ms)]

        def take(batch: SampleBatch) -> None:
            nonlocal samples
            for labels, ts, vals in batch.iter_series():
                parts.setdefault(self._unscoped(labels), []).append((ts, vals))
            samples += len(batch)
            check_limits(limits, len(parts), samples)  # stop reading once over a limit

        with self._call("export"):
            with self._client.stream(
                "POST",
                self.opts.read_url + "/api/v1/export",
                content=_form(params),
                headers=_EXPORT,
            ) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    self._check(resp, "export", reading=True)
                for chunk in resp.iter_bytes(1 << 20):
                    for res in stream.feed(chunk):
                        self._parsed(res.errors)
                        take(res.batch)
            for res in stream.finish():
                self._parsed(res.errors)
                take(res.batch)
        out = []
        for labels in sorted(parts):
            ts = np.concatenate([p[0] for p in parts[labels]])
            vals = np.concatenate([p[1] for p in parts[labels]])
            ts, vals = _keep_largest(ts, vals)
            sl = in_range(ts, start_ms, end_ms)
            if sl.stop > sl.start:
                out.append(SeriesSamples(labels, ts[sl], vals[sl]))
        return out

    @staticmethod
    def _parsed(errors: Sequence[object]) -> None:
        if errors:
            raise StorageError(f"remote store: unreadable export: {errors[0]}")

    def select_rollup(
        self,
        selector: Selector,
        start_ms: int,
        end_ms: int,
        resolution_ms: int,
        *,
        limits: QueryLimits | None = None,
    ) -> list[SeriesRollup] | None:
        return rollups_from_raw(
            self, selector, start_ms, end_ms, resolution_ms, self.opts.rollup_resolutions_ms, limits
        )

    def series(
        self, selectors: Sequence[Selector], start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> list[LabelSet]:
        params = self._matches(selectors) + self._range(start_ms, end_ms)
        if limit:
            params.append(("limit", str(limit)))
        data = self._get_json("/api/v1/series", params, "series")
        if not isinstance(data, list):
            raise StorageError("remote store: /api/v1/series did not answer a list")
        out = sorted({self._unscoped(label_set(d)) for d in data})
        return out[:limit] if limit else out

    def label_names(self, selectors: Sequence[Selector], start_ms: int, end_ms: int) -> list[str]:
        data = self._get_json(
            "/api/v1/labels", self._matches(selectors) + self._range(start_ms, end_ms), "labels"
        )
        hidden = self.opts.namespace[0] if self.opts.namespace else None
        return sorted(str(n) for n in data or [] if n != hidden)  # type: ignore[attr-defined]

    def label_values(
        self, name: str, selectors: Sequence[Selector], start_ms: int, end_ms: int
    ) -> list[str]:
        if self.opts.namespace and name == self.opts.namespace[0]:
            return []
        data = self._get_json(
            f"/api/v1/label/{httpx.URL(name)}/values",
            self._matches(selectors) + self._range(start_ms, end_ms),
            "label values",
        )
        return sorted(str(v) for v in data or [])  # type: ignore[attr-defined]

    # -- status ----------------------------------------------------------------------
    def size(self) -> StoreSize:
        """Last known series count (from ``stats``); nothing waits in a local head."""
        return StoreSize(series=self._last_series, samples_in_head=0, disk_bytes=0)

    def stats(self) -> StoreStats:
        """Series count: VictoriaMetrics' ``/api/v1/series/count`` (the whole TSDB, cheap) or,
        in a namespace, the namespace's series listed (bounded by its ``-search.maxSeries``)."""
        if self.opts.namespace is None:
            data = self._get_json("/api/v1/series/count", [], "series count")
            if not isinstance(data, list) or not data or not isinstance(data[0], int):
                raise StorageError(f"remote store: unexpected series count {str(data)[:100]}")
            n = data[0]
        else:
            now = int(time.time() * 1000)
            n = len(self.series([], 1, now + 86_400_000))
        self._last_series = n
        return StoreStats(series=n, samples_in_head=0, disk_bytes=0)

    def close(self) -> None:
        self._posts.shutdown()
        self._client.close()
