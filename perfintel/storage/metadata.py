"""Metric-family metadata (type, help, unit): kept across restarts, bounded in size.

Every ingest path that carries metadata feeds it here: Prometheus text and
OpenMetrics (``# TYPE``/``# HELP``/``# UNIT``), remote write 1.0 (field 3) and
2.0 (per series), the scraper, and the host collector for its own metrics. The
Prometheus API's ``/api/v1/metadata`` reads it (Grafana shows the help text
and type beside a metric).

File: ``metadata.json`` in the data directory, one JSON object
``{family: {"type", "help", "unit"}}``, written whole to a temporary file and
renamed into place (a crash leaves the old file or the new one), at most every
``save_interval_s`` while families change and at ``close``. Bounds: at most
``max_families`` families (new ones beyond are dropped and counted in
``dropped``; known ones still update) and help texts cut to ``MAX_HELP_CHARS``,
so one request cannot grow it without limit. Thread-safe: ingest runs on
worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from perfintel.batch import MetricMetadata

log = logging.getLogger(__name__)

MAX_HELP_CHARS = 1024
MAX_UNIT_CHARS = 64
MAX_TYPE_CHARS = 32


class MetadataStore(Mapping[str, MetricMetadata]):
    """Family name → ``MetricMetadata``, persisted to ``path`` (``None``: memory only)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_families: int = 100_000,
        save_interval_s: float = 5.0,
    ) -> None:
        self.path = path
        self.max_families = max_families
        self.save_interval_s = save_interval_s
        self.dropped = 0
        self._lock = threading.Lock()
        self._families: dict[str, MetricMetadata] = {}
        self._dirty = False
        self._saved_at = 0.0
        if path is not None and path.exists():
            self._families = _read(path, max_families)

    def __getitem__(self, name: str) -> MetricMetadata:
        return self._families[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._families))

    def __len__(self) -> int:
        return len(self._families)

    def update(self, metadata: Mapping[str, MetricMetadata]) -> None:
        """Record ``metadata`` (later values win); saves when due."""
        with self._lock:
            for name, md in metadata.items():
                md = _bounded(md)
                if self._families.get(name) == md:
                    continue
                if name not in self._families and len(self._families) >= self.max_families:
                    self.dropped += 1
                    continue
                self._families[name] = md
                self._dirty = True
            due = self._dirty and time.monotonic() - self._saved_at >= self.save_interval_s
        if due:
            self.save()

    def add_missing(self, metadata: Mapping[str, MetricMetadata]) -> None:
        """Record the families not known yet (what a collector says of its own metrics
        never overrides what an exposition said)."""
        new = {k: v for k, v in metadata.items() if k not in self._families}
        if new:
            self.update(new)

    def save(self) -> None:
        """Write the file now if anything changed (no-op without a path)."""
        with self._lock:
            if not self._dirty or self.path is None:
                return
            snapshot = {
                k: {"type": v.type, "help": v.help, "unit": v.unit}
                for k, v in self._families.items()
            }
            self._dirty = False
            self._saved_at = time.monotonic()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(snapshot, ensure_ascii=False, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:  # metadata is a convenience: never fail ingest for it
            log.warning("cannot save metric metadata to %s: %s", self.path, exc)
            with self._lock:
                self._dirty = True

    def close(self) -> None:
        self.save()


def _bounded(md: MetricMetadata) -> MetricMetadata:
    if (
        len(md.help) <= MAX_HELP_CHARS
        and len(md.unit) <= MAX_UNIT_CHARS
        and len(md.type) <= MAX_TYPE_CHARS
    ):
        return md
    return MetricMetadata(
        md.type[:MAX_TYPE_CHARS], md.help[:MAX_HELP_CHARS], md.unit[:MAX_UNIT_CHARS]
    )


def _read(path: Path, max_families: int) -> dict[str, MetricMetadata]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable metric metadata file %s: %s", path, exc)
        return {}
    out: dict[str, MetricMetadata] = {}
    if not isinstance(raw, dict):
        return out
    for name, v in raw.items():
        if len(out) >= max_families:
            break
        if isinstance(name, str) and isinstance(v, dict):
            out[name] = _bounded(
                MetricMetadata(
                    str(v.get("type", "unknown")), str(v.get("help", "")), str(v.get("unit", ""))
                )
            )
    return out
