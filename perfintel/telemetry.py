"""perfintel's own metrics: a small, dependency-free registry rendered as Prometheus text 0.0.4.

Three metric kinds, each with optional labels:

* ``Counter`` - ``inc(amount)``; only goes up.
* ``Gauge`` - ``set``, ``inc``, ``dec``, or ``set_function(fn)``: ``fn`` is called at
  render time (store size, queue depth), so nothing has to push the value.
* ``Histogram`` - ``observe(value)`` into fixed buckets; rendered as cumulative
  ``_bucket{le=...}`` series ending at ``le="+Inf"``, plus ``_sum`` and ``_count``.

A labelled metric hands out one child per label-value tuple through
``labels(...)``; keep the child when the labels are known in advance, because
the lookup is a dict access while ``inc`` on a child is only a lock and an add:

>>> registry = Registry()
>>> requests = Counter("app_requests_total", "Requests.", ["code"], registry=registry)
>>> ok = requests.labels("200")
>>> ok.inc()
>>> print(registry.render().decode(), end="")
# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200"} 1

Thread-safety: every child guards its value with its own lock, and creating a
child or registering a metric takes the parent's lock, so the hot path of
unrelated series never contends. ``render()`` takes a consistent snapshot per
child, not across the registry (as every Prometheus client does).

``ServiceMetrics`` declares the metrics perfintel itself exports on ``/metrics``.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from perfintel.model import LABEL_NAME_RE, METRIC_NAME_RE

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "ServiceMetrics",
    "register_process_metrics",
]

log = logging.getLogger(__name__)

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip


def format_value(value: float) -> str:
    """Render a sample value as Prometheus clients do (``+Inf``, ``-Inf``, ``NaN``, shortest repr)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _format_le(bound: float) -> str:
    # Canonical float rendering, as OpenMetrics asks for le values: 1.0, 0.005, +Inf.
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Sample:
    __slots__ = ("labels", "suffix", "value")

    def __init__(self, suffix: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        self.suffix = suffix
        self.labels = labels
        self.value = value


class _Child:
    """One series' state; subclasses add the operations of their metric kind."""

    __slots__ = ()

    def samples(self) -> list[_Sample]:
        raise NotImplementedError


C = TypeVar("C", bound=_Child)


class _Metric(Generic[C]):
    """A metric family: name, help, label names and its children."""

    kind = "untyped"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: Registry | None = None,
    ) -> None:
        if not METRIC_NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if (
                not LABEL_NAME_RE.match(label)
                or label.startswith("__")
                or label in self._reserved()
            ):
                raise ValueError(f"invalid label name {label!r} for metric {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"metric {name} repeats a label name")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], C] = {}
        if not self.labelnames:
            self._children[()] = self._new_child()
        if registry is not None:
            registry.register(self)

    def _reserved(self) -> frozenset[str]:
        return frozenset()

    def _new_child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: str, **kwvalues: str) -> C:
        """The child for these label values, created on first use (positional or by name)."""
        if not self.labelnames:
            raise ValueError(f"metric {self.name} has no labels")
        if values and kwvalues:
            raise ValueError("pass label values either positionally or by name, not both")
        if kwvalues:
            if set(kwvalues) != set(self.labelnames):
                raise ValueError(
                    f"metric {self.name} takes labels {self.labelnames}, got {sorted(kwvalues)}"
                )
            key = tuple(str(kwvalues[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError(f"metric {self.name} takes {len(self.labelnames)} label values")
            key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self._new_child()
        return child

    def remove(self, *values: str) -> None:
        """Forget one child (a target that went away, say)."""
        with self._lock:
            self._children.pop(tuple(str(v) for v in values), None)

    def _unlabelled(self) -> C:
        if self.labelnames:
            raise ValueError(
                f"metric {self.name} has labels {self.labelnames}: call .labels(...) first"
            )
        return self._children[()]

    def render_into(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.documentation)}\n")
        out.append(f"# TYPE {self.name} {self.kind}\n")
        with self._lock:
            children = sorted(self._children.items())
        for values, child in children:
            base = tuple(zip(self.labelnames, values, strict=True))
            for s in child.samples():
                labels = base + s.labels
                if labels:
                    rendered = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in labels)
                    out.append(f"{self.name}{s.suffix}{{{rendered}}} {format_value(s.value)}\n")
                else:
                    out.append(f"{self.name}{s.suffix} {format_value(s.value)}\n")


class _ValueChild(_Child):
    """A single float, or a callback evaluated at render time instead."""

    __slots__ = ("_fn", "_fn_failed", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0
        self._fn: Callable[[], float] | None = None
        self._fn_failed = False

    def set_function(self, fn: Callable[[], float] | None) -> None:
        """Evaluate ``fn`` at every render instead of holding a value (``None`` undoes it)."""
        self._fn = fn

    def get(self) -> float:
        fn = self._fn
        return float(fn()) if fn is not None else self._value

    def samples(self) -> list[_Sample]:
        try:
            return [_Sample("", (), self.get())]
        except Exception:  # a broken callback must not break /metrics; the series goes missing
            # Full traceback the first time, then quietly: /metrics is scraped every few seconds.
            log.log(
                logging.DEBUG if self._fn_failed else logging.WARNING,
                "metric callback failed",
                exc_info=True,
            )
            self._fn_failed = True
            return []


class CounterChild(_ValueChild):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter can only go up")
        with self._lock:
            self._value += amount


class Counter(_Metric[CounterChild]):
    """A monotonically increasing count; the name should end in ``_total``.

    ``set_function(fn)`` exposes a count kept elsewhere (``fn`` must never decrease).
    """

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def set_function(self, fn: Callable[[], float] | None) -> None:
        self._unlabelled().set_function(fn)

    def get(self) -> float:
        return self._unlabelled().get()


class GaugeChild(_ValueChild):
    __slots__ = ()

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount


class Gauge(_Metric[GaugeChild]):
    """A value that goes up and down, or a callback evaluated at render time."""

    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._unlabelled().dec(amount)

    def set_function(self, fn: Callable[[], float] | None) -> None:
        self._unlabelled().set_function(fn)

    def get(self) -> float:
        return self._unlabelled().get()


class HistogramChild(_Child):
    __slots__ = ("_bounds", "_counts", "_lock", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds  # ends with +Inf
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # le semantics: a value equal to a bound falls in that bound's bucket.
        if math.isnan(value):  # NaN compares false with every bound: count it under +Inf only
            i = len(self._bounds) - 1
        else:
            i = bisect.bisect_left(self._bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe the wall-clock duration of the ``with`` block, in seconds."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    def snapshot(self) -> tuple[list[int], float]:
        """(cumulative bucket counts, sum), taken atomically."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        running = 0
        for i, c in enumerate(counts):
            running += c
            counts[i] = running
        return counts, total

    def samples(self) -> list[_Sample]:
        cumulative, total = self.snapshot()
        out = [
            _Sample("_bucket", (("le", _format_le(b)),), float(c))
            for b, c in zip(self._bounds, cumulative, strict=True)
        ]
        out.append(_Sample("_sum", (), total))
        out.append(_Sample("_count", (), float(cumulative[-1])))
        return out


class Histogram(_Metric[HistogramChild]):
    """Observations counted into cumulative ``le`` buckets (``+Inf`` is always added)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        registry: Registry | None = None,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if any(math.isnan(b) for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: buckets must be distinct and increasing")
        if not bounds or not math.isinf(bounds[-1]):
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry=registry)

    def _reserved(self) -> frozenset[str]:
        return frozenset({"le"})

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def observe(self, value: float) -> None:
        self._unlabelled().observe(value)

    @contextmanager
    def time(self) -> Iterator[None]:
        with self._unlabelled().time():
            yield


class Registry:
    """The set of metrics rendered together on one ``/metrics`` page, in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric[_Child]] = {}

    def register(self, metric: _Metric[C]) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric  # type: ignore[assignment]

    def unregister(self, metric: _Metric[C]) -> None:
        with self._lock:
            if self._metrics.get(metric.name) is metric:
                del self._metrics[metric.name]

    def get(self, name: str) -> _Metric[_Child] | None:
        return self._metrics.get(name)

    def render(self) -> bytes:
        """Prometheus text exposition 0.0.4 (``CONTENT_TYPE_LATEST``)."""
        with self._lock:
            metrics = list(self._metrics.values())
        out: list[str] = []
        for metric in metrics:
            metric.render_into(out)
        return "".join(out).encode("utf-8")


class _ProcReader:
    """Reads one process's accounting from a ``/proc`` tree (Linux), for render-time callbacks."""

    def __init__(self, proc_root: Path, pid: str, ticks_per_second: int, page_size: int) -> None:
        self.dir = proc_root / pid
        self.proc_root = proc_root
        self.hz = float(ticks_per_second)
        self.page_size = page_size

    def _stat(self) -> list[str]:
        raw = (self.dir / "stat").read_text()
        return raw[raw.rfind(")") + 2 :].split()  # fields from 3 (state) on

    def cpu_seconds(self) -> float:
        f = self._stat()
        return (int(f[11]) + int(f[12])) / self.hz  # utime + stime

    def virtual_bytes(self) -> float:
        return float(self._stat()[20])

    def resident_bytes(self) -> float:
        return float(int(self._stat()[21]) * self.page_size)

    def start_time(self) -> float:
        for line in (self.proc_root / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1]) + int(self._stat()[19]) / self.hz
        raise ValueError("no btime in stat")

    def open_fds(self) -> float:
        return float(len(os.listdir(self.dir / "fd")))

    def max_fds(self) -> float:
        for line in (self.dir / "limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return math.inf if soft == "unlimited" else float(soft)
        raise ValueError("no 'Max open files' in limits")


def register_process_metrics(
    registry: Registry,
    *,
    proc_root: Path = Path("/proc"),
    pid: str = "self",
    ticks_per_second: int | None = None,
    page_size: int | None = None,
) -> None:
    """Add the standard ``process_*`` metrics of one process, read from ``proc_root`` at render.

    Names match every Prometheus client library's process collector
    (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...). A
    value that cannot be read (no such file, non-Linux host) is left out of
    the page rather than failing it.
    """
    if ticks_per_second is None:
        ticks_per_second = int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100
    if page_size is None:
        page_size = int(os.sysconf("SC_PAGE_SIZE")) if hasattr(os, "sysconf") else 4096
    r = _ProcReader(Path(proc_root), pid, ticks_per_second, page_size)
    Counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        registry=registry,
    ).set_function(r.cpu_seconds)
    specs: list[tuple[str, str, Callable[[], float]]] = [
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", r.virtual_bytes),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", r.resident_bytes),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            r.start_time,
        ),
        ("process_open_fds", "Number of open file descriptors.", r.open_fds),
        ("process_max_fds", "Maximum number of open file descriptors.", r.max_fds),
    ]
    for name, doc, fn in specs:
        Gauge(name, doc, registry=registry).set_function(fn)


_QUERY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class ServiceMetrics:
    """The metrics perfintel exports about itself.

    Counters and the histogram are updated by the code that owns the event
    (ingest handlers, the query API, the scraper); the callback gauges are bound
    once at start-up by whoever owns the store and the write queue. The
    standard ``process_*`` metrics of this process are added too, unless
    ``proc_root`` is ``None``::

        metrics = ServiceMetrics(Registry())
        metrics.write_queue_depth.set_function(writer.queue.qsize)
        metrics.ingested_samples.labels(protocol="remote_write").inc(len(batch))
    """

    def __init__(
        self,
        registry: Registry,
        *,
        version: str | None = None,
        proc_root: Path | None = Path("/proc"),
        pid: str = "self",
    ) -> None:
        if version is None:
            from perfintel import __version__

            version = __version__
        self.registry = registry
        r = registry
        self.ingested_samples = Counter(
            "perfintel_ingested_samples_total",
            "Samples accepted for storage.",
            ["protocol"],
            registry=r,
        )
        self.rejected_samples = Counter(
            "perfintel_rejected_samples_total",
            "Samples rejected at ingest, by reason.",
            ["protocol", "reason"],
            registry=r,
        )
        self.ingest_requests = Counter(
            "perfintel_ingest_requests_total",
            "Ingest requests, by protocol and HTTP status code.",
            ["protocol", "code"],
            registry=r,
        )
        self.write_queue_depth = Gauge(
            "perfintel_write_queue_depth",
            "Samples in the write head waiting for a flush to disk.",
            registry=r,
        )
        self.store_bytes = Gauge(
            "perfintel_store_bytes", "Bytes the sample store occupies on disk.", registry=r
        )
        self.series = Gauge("perfintel_series", "Series known to the sample store.", registry=r)
        self.wal_damaged = Counter(
            "perfintel_wal_damaged_regions_total",
            "Damaged stretches of the write-ahead log skipped by replay since start-up "
            "(moved aside beside the log; `kind` torn_tail is a write cut by a crash).",
            ["kind"],
            registry=r,
        )
        self.wal_damaged_bytes = Counter(
            "perfintel_wal_damaged_bytes_total",
            "Bytes of the write-ahead log that replay skipped as damaged since start-up.",
            registry=r,
        )
        self.wal_recovered_records = Counter(
            "perfintel_wal_replayed_records_total",
            "Write-ahead log records replayed at start-up.",
            registry=r,
        )
        self.wal_write_errors = Counter(
            "perfintel_wal_write_errors_total",
            "Write-ahead log appends or fsyncs that failed (disk full, I/O error).",
            registry=r,
        )
        self.query_duration = Histogram(
            "perfintel_query_duration_seconds",
            "Time spent evaluating queries, by API endpoint.",
            ["endpoint"],
            buckets=_QUERY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "perfintel_http_requests_total",
            "HTTP requests served, by route template, method and status code.",
            ["route", "method", "code"],
            registry=r,
        )
        self.scrapes = Counter(
            "perfintel_scrapes_total",
            "Scrapes of configured targets, by job and result (success or failure).",
            ["job", "result"],
            registry=r,
        )
        self.build_info = Gauge(
            "perfintel_build_info",
            "Always 1; the version label says which perfintel runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=version).set(1)
        if proc_root is not None:
            register_process_metrics(registry, proc_root=proc_root, pid=pid)
