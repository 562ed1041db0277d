"""The one settings object.

Sources, later ones winning: defaults, a YAML or TOML file (``--config`` or
``PERFINTEL_CONFIG``), then ``PERFINTEL_*`` environment variables (nested
fields with ``__``: ``PERFINTEL_STORAGE__RAW_RETENTION=30d``). Nothing reads
the environment at import time: ``load_settings`` does, once, at start-up.

Durations are numbers of seconds or strings with a unit (``500ms``, ``30s``,
``5m``, ``2h``, ``15d``, ``1w``, ``1y``); sizes are bytes or strings like
``64MiB``. Every setting is documented in ``docs/configuration.md``; a test
checks the two stay in step.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from perfintel.collect.scrape import ScrapeConfig
from perfintel.errors import ConfigError, PerfintelError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")
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


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"15d"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
        total = 0.0
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
        if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
            for number, unit in parts:
                total += float(number) * _UNITS[unit]
            return total
    raise ValueError(f"{value!r} is not a duration (examples: 30s, 5m, 2h, 15d)")


def parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZES:
            return int(float(m.group(1)) * _SIZES[m.group(2).lower()])
    raise ValueError(f"{value!r} is not a size (examples: 1048576, 64MiB, 1GB)")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


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


class StorageSettings(_Section):
    block: Duration = Field(
        7200.0,
        description="Width of a raw chunk's time window; compaction merges a window's chunks into one.",
    )
    raw_retention: Duration = Field(15 * 86400.0, description="How long raw samples are kept.")
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


class LimitsSettings(_Section):
    max_body_bytes: Size = Field(
        64 * 1024**2, description="Largest request body accepted as sent (HTTP 413 beyond)."
    )
    max_decompressed_bytes: Size = Field(
        256 * 1024**2, description="Largest request body after decompression (HTTP 413 beyond)."
    )
    max_errors_reported: int = Field(
        100, gt=0, description="How many per-line errors an ingest response lists."
    )


class TokenSettings(_Section):
    token: str = Field(min_length=16, description="The bearer token (at least 16 characters).")
    scopes: list[Literal["read", "write", "admin"]] = Field(
        description="What the token may do: read, write, admin."
    )
    name: str = Field("", description="Who holds the token (for logs).")


class AuthSettings(_Section):
    tokens: list[TokenSettings] = Field(
        default_factory=list,
        description="Bearer tokens; empty means no authentication, allowed only on a loopback address.",
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


class AnomalySettings(_Section):
    enabled: bool = Field(
        True,
        description="Score every ingested sample with the streaming anomaly detector and store "
        "anomaly_score, yhat, yhat_lower and yhat_upper series (vmanomaly names, with a `for` label).",
    )
    kernel: bool = Field(
        True,
        description="Use the compiled (numba) single-series kernel for the detect API when available; off: the vectorised path (same scores, slower).",
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
        description="Most series analysed online (about 2.7 KB of state each); further series "
        "are refused and counted in perfintel_anomaly_refused_series_total.",
    )
    queue_batches: int = Field(
        256,
        gt=0,
        description="Ingested batches waiting for the detector; beyond, batches are dropped "
        "(perfintel_anomaly_dropped_batches_total) so ingest never waits for it.",
    )
    state_interval: Duration = Field(
        300.0,
        description="How often the detector state is saved to data_dir/analysis (also at shutdown).",
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
    external_url: str = Field(
        "http://127.0.0.1:9470",
        description="perfintel's URL as users reach it: links in notifications point here.",
    )

    @field_validator("rule_files", mode="before")
    @classmethod
    def _rule_files(cls, value: object) -> object:
        # PERFINTEL_ALERTING__RULE_FILES=rules/*.yml or a comma-separated list
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERFINTEL_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(
        Path("perfintel-data"),
        description="Directory holding the sample database, write-ahead log and state.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(9470, ge=1, le=65535, description="Port to listen on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log verbosity."
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="The embedded store."
    )
    query: QueryLimitsSettings = Field(
        default_factory=QueryLimitsSettings, description="Query limits."
    )
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Request limits.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Authentication.")
    host_collector: HostCollectorSettings = Field(
        default_factory=HostCollectorSettings, description="This host's metrics."
    )
    anomaly: AnomalySettings = Field(
        default_factory=AnomalySettings, description="Online anomaly detection."
    )
    alerting: AlertingSettings = Field(
        default_factory=AlertingSettings, description="Alerting rules and notifications."
    )
    scrape: list[ScrapeConfig] = Field(
        default_factory=list,
        description="Prometheus endpoints to scrape (job_name, targets, interval_s, ...).",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        return v

    @property
    def is_loopback(self) -> bool:
        if self.host in ("localhost", "ip6-localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> Settings:
        """Cross-field rules, with messages that name the setting."""
        if not self.is_loopback and not self.auth.tokens:
            raise ConfigError(
                f"auth.tokens: listening on {self.host} (not loopback) needs at least one bearer token; "
                "set auth.tokens in the config file or listen on 127.0.0.1"
            )
        for t in self.storage.tiers:
            if t.window % t.resolution:
                raise ConfigError(
                    f"storage.tiers[{t.name}].window must be a multiple of its resolution"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges file < environment < CLI flags itself (a list setting such as
        # PERFINTEL_ALERTING__RULE_FILES=a.yml,b.yml would not survive pydantic's env parsing)
        return (init_settings,)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top level")
    return data


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Build and validate the settings; raise ``ConfigError`` naming the bad setting.

    ``env`` defaults to ``os.environ``; it is a parameter so tests need not touch the process.
    """
    import os

    environ = dict(os.environ if env is None else env)
    if config_file is None and environ.get("PERFINTEL_CONFIG"):
        config_file = Path(environ["PERFINTEL_CONFIG"])
    file_values = _read_file(config_file) if config_file else {}
    env_values = _env_values(environ)
    merged = _deep_merge(
        _deep_merge(file_values, env_values),
        {k: v for k, v in (overrides or {}).items() if v is not None},
    )
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    return settings.check()


def _env_values(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith("PERFINTEL_") or key == "PERFINTEL_CONFIG":
            continue
        path = key[len("PERFINTEL_") :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        text = value.strip()
        node[path[-1]] = yaml.safe_load(text) if text[:1] in "[{" else value
    return out


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(
            f"{loc}: {msg} (got {err.get('input')!r})"
            if err["type"] != "missing"
            else f"{loc}: required"
        )
    return "invalid settings: " + "; ".join(lines)


def iter_fields(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted name, description) of every setting, nested sections included (for the docs test)."""
    out = []
    for name, f in model.model_fields.items():
        out.append((prefix + name, f.description or ""))
        ann = f.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                out.extend(iter_fields(c, prefix + name + "."))
                break
    return out
