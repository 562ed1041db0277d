"""The VictoriaMetrics (remote, Prometheus-compatible) sample store."""

from perfintel.storage.victoriametrics.store import RemoteStore, RemoteStoreOptions

__all__ = ["RemoteStore", "RemoteStoreOptions"]
