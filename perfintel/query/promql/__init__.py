"""PromQL evaluation over a ``SampleReader`` (see ``engine`` for the design)."""

from perfintel.query.promql.engine import Engine, QueryResult, Series

__all__ = ["Engine", "QueryResult", "Series"]
