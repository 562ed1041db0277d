"""The Store protocol is the only door: code above storage never probes a backend's internals."""

from __future__ import annotations

import re
from pathlib import Path

from perfintel.alerting.rules.backtest import OverlayStore
from perfintel.storage.base import Store
from perfintel.storage.duckdb import DuckDBStore
from perfintel.storage.memory import MemoryStore
from perfintel.storage.victoriametrics import RemoteStore

PKG = Path(__file__).resolve().parents[2] / "perfintel"
ABOVE = ("api", "query", "analysis", "performance", "overview", "alerting")
PROBES = re.compile(
    r"hasattr\((?:st|store|self\.store|app\.state\.store)\b"
    r"|\b(?:st|store|state\.store)\.(?:_\w+|index|head|disk_bytes)\b"
)


def test_no_caller_probes_a_store() -> None:
    hits = [
        f"{path.relative_to(PKG)}:{n}: {line.strip()}"
        for pkg in ABOVE
        for path in sorted((PKG / pkg).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PROBES.search(line)
    ]
    assert hits == []


def test_every_store_class_implements_the_protocol() -> None:
    for cls in (DuckDBStore, MemoryStore, RemoteStore, OverlayStore):
        missing = [
            m
            for m in (
                "select",
                "select_rollup",
                "series",
                "label_names",
                "label_values",
                "append",
                "stats",
                "size",
                "flush",
                "close",
            )
            if not callable(getattr(cls, m, None))
        ]
        assert missing == [], (cls.__name__, missing)
    assert isinstance(MemoryStore(), Store)
