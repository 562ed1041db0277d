"""Pull metrics from Prometheus exposition endpoints, as a Prometheus server scrapes them.

``Scraper`` scrapes every target of every ``ScrapeConfig`` on the config's
interval and hands each scrape's samples to an async ``sink`` (the store's
append, typically). What it writes per scrape follows Prometheus:

* the scraped samples, each labelled with the target labels ``job``,
  ``instance`` (the target's ``host:port``) and the config's ``labels``. A
  scraped label that collides with a target label is kept as
  ``exported_<name>`` unless ``honor_labels`` is set, in which case the
  scraped value wins and the target label is only added where missing;
* the report series ``up``, ``scrape_duration_seconds``,
  ``scrape_samples_scraped``, ``scrape_samples_post_metric_relabeling`` and
  ``scrape_series_added``, with the target labels only;
* staleness markers (``perfintel.model.STALE_NAN``) at the scrape's timestamp
  for every series the previous successful scrape of the target returned and
  this one did not, and for all of them when the target is down. Series
  exposed with an explicit timestamp are exempt (when ``honor_timestamps``),
  as in Prometheus.

A scrape *fails* (``up`` is 0, no scraped sample is kept, and the previous
series are marked stale) when the request errors or times out, the status is
not 200, the body is over ``body_size_limit_bytes`` or cannot be decoded, the
payload has **any** parse error, or it holds more than ``sample_limit``
samples. Prometheus does the same: a partially invalid exposition is wholly
erroneous (OpenMetrics says so explicitly), and keeping half a scrape would
leave dashboards silently incomplete. ``ScrapeOutcome.parse_errors`` lists
what was wrong.

Scheduling: each target runs at a fixed phase inside its interval, derived from
a stable hash of the job and URL (plus an optional per-server seed), so targets
spread over the interval and keep their phase across restarts.

Content negotiation: the ``Accept`` header prefers OpenMetrics 1.0.0 and then
text 0.0.4; ``Accept-Encoding: gzip`` is sent and the body is decoded with
``perfintel.ingest.encoding.decode_body`` under the size limit, in the worker
thread that parses it (never on the event loop).

The sink is an ``async`` callable (``Callable[[SampleBatch], Awaitable[None]]``):
the scraper runs in the event loop, and a sink that needs a thread (DuckDB's
single writer) can hand the batch over and await a future. One batch per
scrape holds scraped samples, staleness markers and report series together.

Thread-safety: a ``Scraper`` belongs to one event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from perfintel.batch import LineError, MetricMetadata, SampleBatch
from perfintel.collect.schedule import run_every, stable_offset
from perfintel.errors import ConfigError, PerfintelError
from perfintel.ingest.encoding import decode_body
from perfintel.ingest.prometheus_text import content_type_is_openmetrics, parse_prometheus_text
from perfintel.model import LABEL_NAME_RE, METRIC_NAME, STALE_NAN, LabelSet, label_set
from perfintel.telemetry import ServiceMetrics
from perfintel.timeparse import parse_duration_seconds

__all__ = [
    "ACCEPT_HEADER",
    "ScrapeConfig",
    "ScrapeOutcome",
    "Scraper",
    "Sink",
    "Target",
]

log = logging.getLogger(__name__)

#: OpenMetrics first, then the classic text format, then anything (parsed as text).
ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

Sink = Callable[[SampleBatch], Awaitable[None]]

_REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)


def _seconds(value: object) -> object:
    """A number of seconds, or a duration string (``perfintel.timeparse``: ``30s``, ``1m``)."""
    return parse_duration_seconds(value) if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_seconds)]


class ScrapeConfig(BaseModel):
    """One scrape job: its targets and how to scrape them (a Prometheus ``scrape_config``).

    ``targets`` are ``host:port`` (scraped at ``scheme://host:port{metrics_path}``)
    or full URLs, whose own scheme, path and query win over the config's.
    """

    model_config = ConfigDict(extra="forbid")

    job_name: str = Field(min_length=1, description="The `job` label of every scraped series.")
    targets: list[str] = Field(description="`host:port` or full URLs to scrape.")
    interval_s: Seconds = Field(
        default=15.0, gt=0, description="Seconds between scrapes of a target (or a duration: 30s)."
    )
    timeout_s: Seconds = Field(
        default=10.0,
        gt=0,
        description="Seconds before a scrape is abandoned, up=0 (or a duration: 10s).",
    )
    metrics_path: str = Field("/metrics", description="Path scraped on `host:port` targets.")
    scheme: str = Field("http", description="`http` or `https` for `host:port` targets.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every series of the job."
    )
    honor_labels: bool = Field(
        False,
        description="Scraped `job`/`instance` win over the target's (else kept as `exported_*`).",
    )
    honor_timestamps: bool = Field(True, description="Keep timestamps the target exposes.")
    body_size_limit_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Larger scrape bodies fail the scrape."
    )
    sample_limit: int = Field(
        default=0, ge=0, description="Scrapes with more samples fail (0: no limit)."
    )

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        return v

    @field_validator("metrics_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("metrics_path must start with /")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not LABEL_NAME_RE.match(name) or name.startswith("__"):
                raise ValueError(f"invalid target label name {name!r}")
            if name in ("job", "instance"):
                raise ValueError(f"label {name!r} is set by the scraper; it cannot be configured")
        return v

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        for t in v:
            if not t.strip():
                raise ValueError("a target cannot be empty")
        return v

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ScrapeConfig:
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s must not exceed interval_s (as in Prometheus)")
        for t in self.targets:
            _parse_target(t, self)  # raises ValueError for a malformed target
        return self

    def target_list(self) -> list[Target]:
        """This job's targets, in configuration order, without duplicates."""
        out: dict[str, Target] = {}
        for raw in self.targets:
            t = _parse_target(raw, self)
            out.setdefault(t.url, t)
        return list(out.values())


@dataclass(frozen=True)
class Target:
    """One endpoint of one job. Identity is ``(job, url)``."""

    job: str
    url: str
    instance: str
    #: job, instance and the config's labels, as a sorted label set (no ``__name__``).
    labels: LabelSet
    config: ScrapeConfig = field(compare=False, hash=False, repr=False)


def _parse_target(raw: str, cfg: ScrapeConfig) -> Target:
    raw = raw.strip()
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"target {raw!r} is not an http(s) URL")
        path = parts.path or cfg.metrics_path
        url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        instance = parts.netloc.rsplit("@", 1)[-1]
    else:
        if "/" in raw or not raw.split(":")[0]:
            raise ValueError(f"target {raw!r} must be host:port or a URL")
        url = f"{cfg.scheme}://{raw}{cfg.metrics_path}"
        instance = raw
    labels = label_set({**cfg.labels, "job": cfg.job_name, "instance": instance})
    return Target(cfg.job_name, url, instance, labels, cfg)


@dataclass
class ScrapeOutcome:
    """What one scrape did. ``batch`` is exactly what was handed to the sink."""

    target: Target
    timestamp_ms: int
    up: bool
    duration_s: float
    samples_scraped: int
    series_added: int
    stale_markers: int
    batch: SampleBatch
    error: str | None = None
    parse_errors: list[LineError] = field(default_factory=list)


class _ScrapeFailed(PerfintelError):
    """Internal: the reason a scrape failed, caught inside ``scrape_once``."""

    def __init__(self, message: str, parse_errors: list[LineError] | None = None) -> None:
        super().__init__(message)
        self.parse_errors = parse_errors or []


@dataclass
class _TargetState:
    seen: set[LabelSet] = field(default_factory=set)  # every series of the last scrape
    tracked: set[LabelSet] = field(default_factory=set)  # those that get staleness markers
    last: ScrapeOutcome | None = None


class Scraper:
    """Scrapes configured targets forever (``run``) or on demand (``scrape_once``).

    ``clock`` (wall-clock seconds) stamps samples and schedules scrapes;
    ``timer`` (monotonic seconds) measures ``scrape_duration_seconds``. Without a
    ``client``, the scraper creates one and closes it in ``aclose()`` (or on
    leaving ``async with``). ``metrics`` counts scrapes in
    ``perfintel_scrapes_total{job,result}``.
    """

    def __init__(
        self,
        configs: Sequence[ScrapeConfig],
        sink: Sink,
        *,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
        timer: Callable[[], float] = time.perf_counter,
        metrics: ServiceMetrics | None = None,
        jitter_seed: str = "",
        user_agent: str | None = None,
        on_metadata: Callable[[dict[str, MetricMetadata]], None] | None = None,
    ) -> None:
        jobs = [c.job_name for c in configs]
        dupes = sorted({j for j in jobs if jobs.count(j) > 1})
        if dupes:
            raise ConfigError(f"scrape job_name must be unique; repeated: {', '.join(dupes)}")
        self.configs = list(configs)
        self.sink = sink
        self.clock = clock
        self.timer = timer
        self.metrics = metrics
        self.jitter_seed = jitter_seed
        #: called (on a worker thread) with the metric metadata a scrape carried
        self.on_metadata = on_metadata
        if user_agent is None:
            from perfintel import __version__

            user_agent = f"perfintel/{__version__}"
        self.user_agent = user_agent
        self._client = client
        self._owns_client = client is None
        self.targets: list[Target] = [t for c in self.configs for t in c.target_list()]
        self._state: dict[Target, _TargetState] = {t: _TargetState() for t in self.targets}

    # -- lifecycle --

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=True)
        return self._client

    # -- scheduling --

    def offset_s(self, target: Target) -> float:
        """The target's phase within its interval (stable across restarts)."""
        key = f"{target.job}\x00{target.url}"
        return stable_offset(key, target.config.interval_s, self.jitter_seed)

    async def run(self) -> None:
        """Scrape every target on its interval until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                for t in self.targets:
                    tg.create_task(self._loop(t), name=f"scrape {t.job} {t.url}")
        finally:
            await self.aclose()

    async def _loop(self, target: Target) -> None:
        await run_every(
            target.config.interval_s,
            self.offset_s(target),
            lambda: self.scrape_once(target),
            clock=self.clock,
            name=f"scrape of {target.url} (job {target.job})",
        )

    def last_outcome(self, target: Target) -> ScrapeOutcome | None:
        """The most recent scrape of ``target`` (for a targets page or health check)."""
        return self._state[target].last

    # -- one scrape --

    async def scrape_once(self, target: Target) -> ScrapeOutcome:
        """Scrape ``target`` now, hand the batch to the sink and return what happened.

        Exceptions from the sink propagate (the ``run`` loop logs them); every
        scrape failure is reported in the outcome instead.
        """
        state = self._state.get(target)
        if state is None:
            raise ValueError(f"unknown target {target.url} (job {target.job})")
        cfg = target.config
        start = self.clock()
        ts = round(start * 1000)
        t0 = self.timer()
        error: str | None = None
        parse_errors: list[LineError] = []
        scraped: SampleBatch | None = None
        try:
            async with asyncio.timeout(cfg.timeout_s):
                raw, encoding, content_type = await self._fetch(target)
            # Decoding, parsing and relabelling are CPU-bound: keep them off the event loop.
            scraped = await asyncio.to_thread(
                _parse_and_label, raw, encoding, content_type, target, ts, self.on_metadata
            )
        except TimeoutError:
            error = f"scrape timed out after {cfg.timeout_s:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _ScrapeFailed as exc:
            error = str(exc)
            parse_errors = exc.parse_errors
        except PerfintelError as exc:  # decode_body's PayloadTooLarge/UnsupportedMedia/ParseError
            error = str(exc)
        except (ValueError, UnicodeError) as exc:  # a parser bug must not take the loop down
            error = f"invalid exposition: {type(exc).__name__}: {exc}"
        duration = max(0.0, self.timer() - t0)

        current: set[LabelSet] = set(scraped.series) if scraped is not None else set()
        tracked = current
        if scraped is not None and cfg.honor_timestamps:
            # As Prometheus does, series exposed with their own timestamp get no
            # staleness markers: the exporter, not the scrape, says when they are.
            explicit = np.unique(scraped.series_idx[scraped.timestamps != ts])
            if len(explicit):
                tracked = current - {scraped.series[int(i)] for i in explicit}
        gone = state.tracked - current
        added = len(current - state.seen)
        state.seen = current
        state.tracked = tracked

        parts: list[SampleBatch] = []
        if scraped is not None:
            parts.append(scraped)
        if gone:
            stale = sorted(gone)
            parts.append(
                SampleBatch(
                    stale,
                    np.arange(len(stale), dtype=np.int32),
                    np.full(len(stale), ts, dtype=np.int64),
                    np.full(len(stale), STALE_NAN, dtype=np.float64),
                )
            )
        n_scraped = len(scraped) if scraped is not None else 0
        parts.append(
            _report_batch(
                target.labels,
                ts,
                (1.0 if scraped is not None else 0.0, duration, n_scraped, n_scraped, added),
            )
        )
        batch = SampleBatch.concat(parts)
        outcome = ScrapeOutcome(
            target=target,
            timestamp_ms=ts,
            up=scraped is not None,
            duration_s=duration,
            samples_scraped=n_scraped,
            series_added=added,
            stale_markers=len(gone),
            batch=batch,
            error=error,
            parse_errors=parse_errors,
        )
        state.last = outcome
        if error is not None:
            log.debug("scrape of %s (job %s) failed: %s", target.url, target.job, error)
        if self.metrics is not None:
            result_label = "success" if outcome.up else "failure"
            self.metrics.scrapes.labels(job=target.job, result=result_label).inc()
        await self.sink(batch)
        return outcome

    async def _fetch(self, target: Target) -> tuple[bytes, str | None, str | None]:
        """The body as sent (bounded), its Content-Encoding and its Content-Type."""
        cfg = target.config
        headers = {
            "Accept": ACCEPT_HEADER,
            "Accept-Encoding": "gzip",
            "User-Agent": self.user_agent,
            "X-Prometheus-Scrape-Timeout-Seconds": f"{cfg.timeout_s:g}",
        }
        limit = cfg.body_size_limit_bytes
        async with self._http().stream(
            "GET", target.url, headers=headers, timeout=cfg.timeout_s
        ) as resp:
            if resp.status_code != 200:
                raise _ScrapeFailed(
                    f"server returned HTTP status {resp.status_code} {resp.reason_phrase}".rstrip()
                )
            raw = bytearray()
            async for chunk in resp.aiter_raw():
                raw += chunk
                if len(raw) > limit:
                    raise _ScrapeFailed(f"body exceeds the {limit}-byte body_size_limit_bytes")
            return (
                bytes(raw),
                resp.headers.get("content-encoding"),
                resp.headers.get("content-type"),
            )


def _parse_and_label(
    raw: bytes,
    encoding: str | None,
    content_type: str | None,
    target: Target,
    ts: int,
    on_metadata: Callable[[dict[str, MetricMetadata]], None] | None = None,
) -> SampleBatch:
    """Decode and parse a scraped body and attach the target's labels; any parse error fails the scrape."""
    cfg = target.config
    body = decode_body(raw, encoding, max_bytes=cfg.body_size_limit_bytes)
    openmetrics = content_type_is_openmetrics(content_type) if content_type else None
    result = parse_prometheus_text(body, default_timestamp_ms=ts, openmetrics=openmetrics)
    if on_metadata is not None and result.metadata:
        on_metadata(result.metadata)
    if result.errors:
        errors = list(result.errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _ScrapeFailed(f"invalid exposition: {errors[0]}{more}", errors)
    if cfg.sample_limit and len(result.batch) > cfg.sample_limit:
        raise _ScrapeFailed(f"sample limit exceeded: {len(result.batch)} > {cfg.sample_limit}")
    return _relabel(result.batch, target, ts)


def _relabel(batch: SampleBatch, target: Target, ts: int) -> SampleBatch:
    """Attach target labels (honor_labels semantics) and, unless honored, the scrape timestamp."""
    cfg = target.config
    remap = np.empty(len(batch.series), np.int32)
    series: list[LabelSet] = []
    pos: dict[LabelSet, int] = {}
    for i, labels in enumerate(batch.series):
        new = _with_target_labels(labels, target.labels, honor=cfg.honor_labels)
        j = pos.get(new)
        if j is None:
            j = pos[new] = len(series)
            series.append(new)
        remap[i] = j
    idx = remap[batch.series_idx] if len(batch) else np.empty(0, np.int32)
    timestamps = batch.timestamps if cfg.honor_timestamps else np.full(len(batch), ts, np.int64)
    return SampleBatch(series, idx.astype(np.int32, copy=False), timestamps, batch.values)


def _with_target_labels(scraped: LabelSet, target: LabelSet, *, honor: bool) -> LabelSet:
    labels = dict(scraped)
    for name, value in target:
        if honor:
            labels.setdefault(name, value)
            continue
        existing = labels.get(name)
        if existing is not None:
            # Prometheus keeps the scraped value as exported_<name>, prefixing
            # again while that name is taken too.
            exported = f"exported_{name}"
            while exported in labels:
                exported = f"exported_{exported}"
            labels[exported] = existing
        labels[name] = value
    return label_set(labels)


def _report_batch(target_labels: LabelSet, ts: int, values: Iterable[float]) -> SampleBatch:
    series = [label_set([*target_labels, (METRIC_NAME, name)]) for name in _REPORT_NAMES]
    vals = np.asarray(list(values), dtype=np.float64)
    return SampleBatch(
        series,
        np.arange(len(series), dtype=np.int32),
        np.full(len(series), ts, dtype=np.int64),
        vals,
    )
