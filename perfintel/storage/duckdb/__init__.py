"""The embedded DuckDB sample store."""

from perfintel.storage.duckdb.store import DuckDBStore, StoreOptions, Tier

__all__ = ["DuckDBStore", "StoreOptions", "Tier"]
