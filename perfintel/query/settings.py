"""Limits and defaults of one PromQL query."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuerySettings:
    """Bounds and defaults applied to every PromQL query.

    ``max_series`` and ``max_samples`` are passed to the store on every read
    and also bound the points a result may hold; crossing either raises
    ``QueryLimitError`` (HTTP 422). ``timeout_s`` is a deadline checked
    between evaluation steps (``QueryTimeoutError``, HTTP 503).
    ``lookback_ms`` is how far back an instant selector looks for a sample
    (Prometheus's ``--query.lookback-delta``). ``subquery_step_ms`` is the
    step of a subquery written without one (Prometheus's global evaluation
    interval). ``use_rollups`` lets the planner answer coarse range queries
    from rollup tiers (see ``perfintel.query.promql.planner``).
    ``max_length`` (characters) and ``max_depth`` (nesting of brackets, calls
    and operator chains) bound a query's text before it is parsed
    (``perfintel.query_shape``; HTTP 400 beyond).
    """

    max_series: int = 100_000
    max_samples: int = 50_000_000
    timeout_s: float = 30.0
    lookback_ms: int = 300_000
    subquery_step_ms: int = 60_000
    use_rollups: bool = True
    max_length: int = 65_536
    max_depth: int = 128
