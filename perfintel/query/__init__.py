"""Query layer: PromQL evaluation over a ``SampleReader``."""

from perfintel.query.settings import QuerySettings

__all__ = ["QuerySettings"]
