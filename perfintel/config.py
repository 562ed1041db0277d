"""The one settings object.

Sources, later ones winning: defaults, a YAML or TOML file (``--config`` or
``PERFINTEL_CONFIG``), then ``PERFINTEL_*`` environment variables (nested
fields with ``__``: ``PERFINTEL_STORAGE__RAW_RETENTION=30d``). Nothing reads
the environment at import time: ``load_settings`` does, once, at start-up.

Durations are numbers of seconds or strings in Prometheus's duration syntax
(``500ms``, ``30s``, ``5m``, ``1h30m``, ``15d``, ``1w``, ``1y``; one parser for
the settings, the HTTP API and the CLI: ``perfintel.timeparse``); sizes are
bytes or strings like ``64MiB``. Every setting is documented in ``docs/configuration.md``; a test
checks the two stay in step. The sections and those value types are in
``config_sections.py``; ``Settings`` composes them here.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from perfintel.collect.scrape import ScrapeConfig
from perfintel.config_sections import (
    AlertingSettings,
    AnomalySettings,
    AuthSettings,
    BusSettings,
    DashboardSettings,
    Duration,
    HostCollectorSettings,
    LimitsSettings,
    QueryLimitsSettings,
    RecommendationSettings,
    StorageSettings,
)
from perfintel.errors import ConfigError
from perfintel.redact import MASK, is_secret_key, redact, scrub, secret_values


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
    access_log: bool = Field(
        False,
        description="Log every HTTP request (client, method, path, status) at info level "
        "(`perfintel serve --access-log`).",
    )
    role: Literal["all", "ingest", "worker", "api"] = Field(
        "all",
        description="What this process does: all (one process), ingest (accept and publish "
        "to the bus), worker (online scoring of its shards) or api (queries and dashboard).",
    )
    bus: BusSettings = Field(
        default_factory=BusSettings, description="The bus between processes (roles)."
    )
    shutdown_timeout: Duration = Field(
        5.0,
        description="On SIGTERM/SIGINT, how long requests in flight get to finish before they "
        "are cancelled; then the head is flushed and the store closed.",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="The sample store."
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
    dashboard: DashboardSettings = Field(
        default_factory=DashboardSettings, description="The web dashboard, its overview and stream."
    )
    recommendations: RecommendationSettings = Field(
        default_factory=RecommendationSettings,
        description="Optimisation recommendations and their cost model.",
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
            f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
            f"{_syntax_error(exc)}"
        ) from None  # the parser's own message quotes the text
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
        # from None: pydantic's own message quotes the input (a token, perhaps)
        raise ConfigError(_describe(exc, secret_values(merged))) from None
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
        try:
            node[path[-1]] = yaml.safe_load(text) if text[:1] in "[{" else value
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key} is not valid YAML: {_syntax_error(exc)}") from None
    return out


def _syntax_error(exc: Exception) -> str:
    """Where and what, without the quoted snippet of the text (it may hold a token)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context or 'syntax error'}{where}"
    return str(exc)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _describe(exc: ValidationError, secrets: set[str]) -> str:
    """The validation errors, one per setting; secret values never shown (``perfintel.redact``)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        if err["type"] == "missing":
            lines.append(f"{loc}: required")
            continue
        secret = err["loc"][:1] == ("auth",) or any(is_secret_key(p) for p in err["loc"])
        shown = MASK if secret else repr(redact(err.get("input")))
        lines.append(f"{loc}: {msg} (got {shown})")
    return scrub("invalid settings: " + "; ".join(lines), secrets)


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
