"""The sections of the settings object, one pydantic model each (storage and
its tiers, query and request limits, auth, the host collector, anomaly
detection, alerting, the dashboard, costs and recommendations, the bus), and
the value types they share: durations and sizes.

``config.py`` composes them into ``Settings``, loads it and documents the
sources; every field's description is its documentation (``docs/configuration.md``
is checked against them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from perfintel.errors import PerfintelError
from perfintel.timeparse import parse_duration_seconds

_SIZES = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _duration(value: object) -> float:
    """Seconds from a number or a duration string (``perfintel.timeparse``); never negative."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(
            f"a duration must be a number of seconds or a string such as 30s, got {value!r}"
        )
    seconds = parse_duration_seconds(value)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZES:
            return int(float(m.group(1)) * _SIZES[m.group(2).lower()])
    raise ValueError(f"{value!r} is not a size (examples: 1048576, 64MiB, 1GB)")


Duration = Annotated[float, BeforeValidator(_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
MIN_TOKEN_LENGTH = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierSettings(_Section):
    name: str = Field(description="Tier name used in status output, e.g. `5m`.")
    resolution: Duration = Field(description="Bucket width of the tier.")
    retention: Duration = Field(
        description="How long the tier's buckets are kept (dropped a whole window at a time)."
    )
    window: Duration = Field(
        description="Unit in which the tier is built and stored: one row per series and window (a multiple of the resolution)."
    )


class RemoteStorageSettings(_Section):
    write_url: str = Field(
        "http://127.0.0.1:8428/api/v1/write",
        description="Where samples are sent with Prometheus remote_write: VictoriaMetrics "
        "`/api/v1/write`, cluster vminsert `/insert/0/prometheus/api/v1/write`, Mimir "
        "`/api/v1/push`, Thanos Receive `/api/v1/receive`.",
    )
    read_url: str = Field(
        "http://127.0.0.1:8428",
        description="Prefix of the Prometheus-style read API (`/api/v1/export`, `/series`, "
        "`/labels`, `/query_range` under it): VictoriaMetrics single-node `http://host:8428`, "
        "cluster vmselect `http://host:8481/select/0/prometheus`.",
    )
    flush_url: str = Field(
        "http://127.0.0.1:8428/internal/force_flush",
        description="Called before a read that follows a write, so reads see every acknowledged "
        "sample (VictoriaMetrics single-node); empty when there is none (cluster: reads then "
        "see writes after about a second).",
    )
    timeout: Duration = Field(30.0, description="Timeout of one request to the remote store.")
    max_samples_per_request: int = Field(
        50_000, gt=0, description="Most samples in one remote_write request."
    )
    namespace: str = Field(
        "",
        description="`name=value`: a label added to every series written and required of every "
        "series read (and hidden from answers), so deployments can share one TSDB.",
    )
    promql: Literal["engine", "passthrough"] = Field(
        "engine",
        description="How `/api/v1/query` and `/api/v1/query_range` are answered: by perfintel's "
        "engine over fetched samples, or passed through to the TSDB's own query API "
        "(faster, but its dialect: MetricsQL on VictoriaMetrics). A request's `promql` "
        "parameter (`engine` or `passthrough`) overrides it.",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*=.+", value):
            raise ValueError("namespace must be name=value, e.g. tenant=team-a")
        return value


class StorageSettings(_Section):
    backend: Literal["duckdb", "victoriametrics"] = Field(
        "duckdb",
        description="Where samples live: the embedded DuckDB store under `data_dir`, or a "
        "remote VictoriaMetrics (`storage.remote`).",
    )
    remote: RemoteStorageSettings = Field(
        default_factory=RemoteStorageSettings,
        description="The remote store (`storage.backend: victoriametrics`).",
    )
    block: Duration = Field(
        7200.0,
        description="Width of a raw chunk's time window; compaction merges a window's chunks into one.",
    )
    raw_retention: Duration = Field(
        15 * 86400.0,
        description="How long raw samples are kept; older samples are refused at ingest.",
    )
    max_future: Duration = Field(
        3600.0,
        description="Samples further ahead of the server's clock than this are refused at ingest.",
    )
    tiers: list[TierSettings] = Field(
        default_factory=lambda: [
            TierSettings(name="5m", resolution=300, retention=90 * 86400, window=86400),
            TierSettings(name="1h", resolution=3600, retention=730 * 86400, window=8 * 86400),
        ],
        description="Downsampling tiers (min, max, sum, count, last per bucket), finest first.",
    )
    head_max_samples: int = Field(
        2_000_000,
        gt=0,
        description="Flush complete blocks from the in-memory head once it holds this many samples; if half of it is still there after that, flush everything; at four times refuse writes (HTTP 429) until a flush catches up.",
    )
    head_max_age: Duration = Field(120.0, description="Flush the head at least this often.")
    seal_grace: Duration = Field(
        3600.0,
        description="How long after a block ends late samples are still expected before rollups are built for it.",
    )
    wal_fsync: bool = Field(
        True,
        description="fsync the write-ahead log before acknowledging a write (turn off only for benchmarks of the rest).",
    )
    memory_limit: str = Field(
        "256MB",
        description="DuckDB's memory limit (its block cache; the service's RSS is this plus the index and head).",
    )
    maintenance_interval: Duration = Field(
        5.0, description="How often the background flush/compaction/rollup/retention pass runs."
    )


class QueryLimitsSettings(_Section):
    max_series: int = Field(
        100_000, gt=0, description="Most series one query may touch (HTTP 422 beyond)."
    )
    max_samples: int = Field(
        50_000_000, gt=0, description="Most samples one query may load (HTTP 422 beyond)."
    )
    timeout: Duration = Field(30.0, description="Query deadline (HTTP 503 beyond).")
    lookback_delta: Duration = Field(
        300.0, description="How far back an instant selector looks for a sample."
    )
    max_concurrency: int = Field(
        8,
        gt=0,
        le=256,
        description="Queries evaluated at once, each on its own worker thread (never on the "
        "event loop); further queries wait their turn.",
    )
    max_length: int = Field(
        65_536,
        gt=0,
        description="Longest PromQL expression accepted, in characters (HTTP 400 beyond, before parsing).",
    )
    max_depth: int = Field(
        128,
        gt=0,
        le=256,
        description="Deepest PromQL expression accepted: nested brackets, function calls and "
        "chains of operators such as a+b+c count (HTTP 400 beyond, before parsing; at most 256, "
        "which keeps evaluation within Python's recursion limit).",
    )


class LimitsSettings(_Section):
    max_body_bytes: Size = Field(
        64 * 1024**2,
        description="Largest request body accepted as sent (HTTP 413 beyond); the streaming "
        "import (`POST /api/v1/import`) reads bodies of any size and is not bound by it.",
    )
    max_decompressed_bytes: Size = Field(
        256 * 1024**2, description="Largest request body after decompression (HTTP 413 beyond)."
    )
    max_body_members: int = Field(
        1000,
        gt=0,
        description="Most gzip members (or zstd frames) one request body may hold (HTTP 413 beyond).",
    )
    max_import_line_bytes: Size = Field(
        8 * 1024**2,
        description="Longest line the streaming import accepts (after decompression); a longer "
        "line is rejected with its number and the lines around it are still imported.",
    )
    max_errors_reported: int = Field(
        100, gt=0, description="How many per-line errors an ingest response lists."
    )
    max_new_series_per_request: int = Field(
        100_000,
        gt=0,
        description="Most new series one ingest request (or one batch of a streamed import) may "
        "create; beyond, the request is refused whole (HTTP 400).",
    )
    max_new_series_per_minute: int = Field(
        1_000_000,
        gt=0,
        description="Most new series created per minute (a token bucket, so bursts up to this "
        "many pass); beyond, requests with new series are refused (HTTP 429, retry later).",
    )


class TokenSettings(_Section):
    token: SecretStr = Field(
        description="The bearer token (at least 16 characters); never printed or logged."
    )
    scopes: list[Literal["read", "write", "admin"]] = Field(
        description="What the token may do: read, write, admin."
    )
    name: str = Field("", description="Who holds the token (for logs).")

    @field_validator("token")
    @classmethod
    def _token_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters long")
        return value


class AuthSettings(_Section):
    tokens: list[TokenSettings] = Field(
        default_factory=list,
        description="Bearer tokens; empty means no authentication, allowed only on a loopback address.",
    )
    public_metrics: bool = Field(
        False,
        description="Serve /metrics (perfintel's own metrics) without a token, for a Prometheus "
        "that scrapes without credentials; off: /metrics needs a read token like every route "
        "but /healthz and /readyz.",
    )


class HostCollectorSettings(_Section):
    enabled: bool = Field(
        True,
        description="Collect this host's metrics (CPU, memory, disk, filesystem, network, load, processes).",
    )
    interval: Duration = Field(15.0, description="Host collection interval.")
    proc_root: Path = Field(
        Path("/proc"),
        description="Where to read procfs from (a container may mount the host's elsewhere).",
    )


class OutlierGroupSettings(_Section):
    selector: str = Field(description='Series selector of the members, e.g. `cpu_busy{job="api"}`.')
    by: list[str] = Field(
        default_factory=list,
        description="Labels whose values define a peer group (e.g. `[service]`: the hosts of "
        "each service are compared with each other); empty: every matching series is one group.",
    )
    step: Duration = Field(
        60.0, description="Members are compared once per step (their mean in it)."
    )
    window: Duration = Field(
        3600.0,
        description="Window of the outlier score: the share of steps outside the peer band, "
        "exponentially weighted over about this long.",
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        from perfintel.model import parse_selector

        try:
            parse_selector(value)
        except PerfintelError as exc:
            raise ValueError(str(exc)) from None
        return value


class AnomalySettings(_Section):
    enabled: bool = Field(
        True,
        description="Score every ingested sample with the streaming anomaly detector and store "
        "anomaly_score, yhat, yhat_lower and yhat_upper series (vmanomaly names, with a `for` label).",
    )
    kernel: bool = Field(
        True,
        description="The detect API scores each series in its own call of the compiled detector; "
        "off: all series of a request in one call (the same code and numbers).",
    )
    selectors: list[str] = Field(
        default_factory=lambda: [
            '{__name__=~".+",__name__!~".*_(total|count|sum|bucket|created)"}'
        ],
        description="Series selectors of the series to analyse (a series matching any of them); "
        "the default skips counters and histogram parts, whose raw values only ever grow "
        "(analyse their rates with the detect API instead); model outputs (anomaly_score, "
        "yhat*, series with a `for` label) are never analysed.",
    )
    max_series: int = Field(
        100_000,
        gt=0,
        description="Most series analysed online (about 4 KB of state each); further series "
        "are refused and counted in perfintel_anomaly_refused_series_total (the same bound "
        "applies to members of outlier groups).",
    )
    compact_state: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Keep the online detector's per-series state compact (about 900 bytes "
        "instead of 4 KB: part of the novelty table folded to 256 bits a grid, seasonal profiles "
        "and likelihood histograms as dithered integer codes); scores differ slightly from the "
        "exact detector's (NAB figures in BENCHMARKS.md). auto: on for role worker, off "
        "elsewhere. A saved state of the other kind is not loaded (the detector relearns).",
    )
    queue_batches: int = Field(
        256,
        gt=0,
        description="Ingested batches waiting for the detector; beyond, batches are dropped "
        "(perfintel_anomaly_dropped_batches_total) so ingest never waits for it.",
    )
    queue_samples: int = Field(
        2_000_000,
        gt=0,
        description="Samples waiting for the detector (about 20 bytes each); beyond, batches are "
        "dropped like a full queue's, so a bulk import cannot pile up gigabytes for it.",
    )
    state_interval: Duration = Field(
        300.0,
        description="How often the detector state is saved to data_dir/analysis (also at shutdown).",
    )
    outlier_groups: list[OutlierGroupSettings] = Field(
        default_factory=list,
        description="Peer groups scored online for outliers among their members "
        "(outlier_score series with a `for` label).",
    )
    outlier_tolerance: float = Field(
        3.0,
        gt=0,
        description="A member is outside the peer band when more than this many peer spreads "
        "(scaled MAD across members) from the group median.",
    )
    outlier_pct: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="A member is an outlier when outside the peer band for more than this share "
        "of the window.",
    )

    @field_validator("selectors")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        from perfintel.model import parse_selector

        for text in value:
            try:
                parse_selector(text)
            except PerfintelError as exc:
                raise ValueError(str(exc)) from None
        return value


class AlertingSettings(_Section):
    enabled: bool = Field(
        True, description="Evaluate alerting rules and run the notification pipeline."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the alerting state database; default: SQLite file "
        "alerting.db in data_dir; PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    rule_files: list[str] = Field(
        default_factory=list,
        description="Prometheus rule files (paths or globs) with perfintel's extra rule kinds; "
        "reloaded on SIGHUP, POST /api/v1/admin/rules/reload and POST /-/reload; a "
        "comma-separated list in the environment variable.",
    )
    builtin_rules: bool = Field(
        False,
        description="Also load perfintel's starter rules for the host metrics it collects "
        "(perfintel/alerting/rules/builtin/host.yml: disk nearly full or filling within a day, "
        "memory low or running out within 6h, CPU saturated, a collector failing); "
        "scripts/serve turns it on.",
    )
    alertmanager_config: Path | None = Field(
        None,
        description="An alertmanager.yml (route tree, receivers, inhibit rules, time intervals) "
        "read as it is, with perfintel's extensions under their own keys.",
    )
    evaluation_interval: Duration = Field(
        60.0, description="Default evaluation interval of rule groups that set none."
    )
    resend_delay: Duration = Field(
        60.0,
        description="A firing alert is sent to the notification pipeline again once this long "
        "has passed since it was last sent (Prometheus's --rules.alert.resend-delay).",
    )
    external_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to every alert the rules send (unless the alert has them) "
        "and available to rule templates as $externalLabels.",
    )
    flap_window: Duration = Field(
        3600.0,
        description="Window over which an alert's changes between firing and not firing are "
        "counted for flap detection.",
    )
    flap_threshold: int = Field(
        4,
        ge=0,
        description="Changes within flap_window that make an alert flapping: it then stays "
        "firing (annotation flapping=true) and notifies once, until fewer than half as many "
        "changes remain in the window; 0 turns flap detection off.",
    )
    rule_workers: int = Field(
        2, gt=0, description="Threads that evaluate rule groups (off the event loop)."
    )
    rule_shards: int = Field(
        16,
        ge=1,
        le=4096,
        description="With process roles (role api): rule groups are spread over this many "
        "shards by a hash of (file, group name), and each shard is evaluated by one api process "
        "at a time (lease rules:<shard> in the shared database). The same in every process.",
    )
    external_url: str = Field(
        "http://127.0.0.1:9470",
        description="perfintel's URL as users reach it: links in notifications point here.",
    )
    notify_extensions: Path | None = Field(
        None,
        description="A YAML file with perfintel's notification extensions (incidents, flapping, "
        "escalation_policies, SMS receivers, templates), so alertmanager.yml stays valid for "
        "Alertmanager itself; the same keys may instead sit under `perfintel:` in alertmanager.yml.",
    )
    signing_key: str | None = Field(
        None,
        description="Secret for the HMAC-signed acknowledge links in notifications; default: a "
        "random key kept in the alerting database.",
    )
    max_alerts: int = Field(
        100_000,
        gt=0,
        description="Most alerts the notification pipeline holds; POST /api/v2/alerts beyond it "
        "gets HTTP 429.",
    )
    delivery_workers: int = Field(
        4, gt=0, description="Notifications delivered in parallel by the outbox worker."
    )
    delivery_timeout: Duration = Field(
        10.0, description="Timeout of one notification delivery (HTTP request or SMTP session)."
    )
    delivery_max_age: Duration = Field(
        86400.0,
        description="How long a notification that fails with a retryable error (network, 5xx, "
        "429) is retried before it is marked failed.",
    )

    @field_validator("rule_files", mode="before")
    @classmethod
    def _rule_files(cls, value: object) -> object:
        # PERFINTEL_ALERTING__RULE_FILES=rules/*.yml or a comma-separated list
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


class DashboardSettings(_Section):
    refresh_interval: Duration = Field(
        15.0, gt=0, description="How often the overview re-reads health signals and anomaly scores."
    )
    anomaly_interval: Duration = Field(
        60.0, gt=0, description="How often the overview re-explains its top anomalies."
    )
    capacity_interval: Duration = Field(
        300.0, gt=0, description="How often the overview re-plans the capacity of disks and memory."
    )
    tick: Duration = Field(
        1.0,
        gt=0,
        description="How often the cheap figures (ingest rate, queues, store size) are sampled.",
    )
    anomaly_window: Duration = Field(
        3 * 3600.0, gt=0, description="The overview's top anomalies are those of this last span."
    )
    top_anomalies: int = Field(
        10, gt=0, le=100, description="How many anomalies the overview lists."
    )
    capacity_horizon: Duration = Field(
        30 * 86400.0, description="How far ahead the overview's capacity risks look (1d to 365d)."
    )
    stream_max_clients: int = Field(
        1000, gt=0, description="Most WebSocket stream clients at once (more are refused)."
    )
    stream_queue_messages: int = Field(
        256,
        gt=0,
        description="Messages waiting for one slow stream client; beyond, the oldest are dropped "
        "(the client is told how many) and a client far behind is disconnected.",
    )

    @field_validator("capacity_horizon")
    @classmethod
    def _horizon(cls, value: float) -> float:
        if not 86400 <= value <= 365 * 86400:
            raise ValueError("must be between 1d and 365d")
        return value


class CostSettings(_Section):
    core_hour: float = Field(
        0.04, ge=0, description="Price of one CPU core for one hour (recommendations' impact)."
    )
    memory_gib_month: float = Field(
        3.0, ge=0, description="Price of one GiB of memory for one month."
    )
    disk_gib_month: float = Field(0.10, ge=0, description="Price of one GiB of disk for one month.")
    hours_per_month: float = Field(
        730.0, gt=0, description="Hours in the month the core-hour price is multiplied by."
    )
    currency: str = Field(
        "USD", min_length=1, max_length=8, description="Currency the prices are in (a label)."
    )


class RecommendationSettings(_Section):
    window: Duration = Field(
        14 * 86400.0,
        description="History the optimisation recommendations look at by default (hourly "
        "buckets from the rollup tiers).",
    )
    cost: CostSettings = Field(
        default_factory=CostSettings,
        description="The cost model every recommendation's monthly impact is computed with.",
    )


class BusSettings(_Section):
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis of the bus between ingest and worker processes (roles other than all).",
    )
    stream_prefix: str = Field(
        "perfintel", min_length=1, description="Key prefix of the bus streams (<prefix>:shard:<n>)."
    )
    shards: int = Field(
        16, ge=1, le=4096, description="Stream shards the series are spread over (by label hash)."
    )
    group: str = Field("workers", min_length=1, description="Consumer group of the workers.")
    max_behind: int = Field(
        10_000,
        ge=1,
        description="Ingest answers 503 with Retry-After while the workers are this many batches "
        "behind on a shard (undelivered plus unacknowledged).",
    )
    retry_after: Duration = Field(1.0, description="Retry-After of the bus's 503 answers.")
    lease_ttl: Duration = Field(
        10.0,
        description="Leases (shard ownership, notifier): a dead holder's lease is taken over "
        "after this long; its pending batches are claimed after this much idle time.",
    )
    checkpoint_interval: Duration = Field(
        10.0, description="How often a worker checkpoints its shards' detector state."
    )
    trim_interval: Duration = Field(
        5.0, description="How often ingest trims what every group has acknowledged."
    )
    output_url: str | None = Field(
        None,
        description="Workers write their scores by remote write to this URL (e.g. an ingest "
        "process's /api/v1/write) instead of their own store, when the store is not shared.",
    )
    output_token: SecretStr | None = Field(
        None,
        description="Bearer token the workers send to bus.output_url: a token with the write "
        "scope when that ingest process has auth.tokens; never printed or logged.",
    )
    live: bool = Field(
        True,
        description="api processes follow the shard streams (XREAD, no consumer group) to feed "
        "the live stream, the overview's ingest figures and online peer outliers; workers "
        "append their scores to the outputs stream the api processes' live streams show.",
    )
    live_max_lag: Duration = Field(
        5.0,
        description="An api process that falls this far behind a shard stream skips to its end "
        "(counted in perfintel_live_tail_dropped_entries_total) instead of catching up.",
    )
