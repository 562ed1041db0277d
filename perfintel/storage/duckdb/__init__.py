"""The embedded DuckDB sample store."""

from perfintel.storage.duckdb.options import StoreOptions, Tier
from perfintel.storage.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore", "StoreOptions", "Tier"]
