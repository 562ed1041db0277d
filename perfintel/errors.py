"""The one exception tree of perfintel.

Callers catch these, never a third-party exception: backends translate
``duckdb.Error``, ``redis.ConnectionError`` and friends at their edge and raise
one of these ``from`` the original. ``perfintel.api.errors`` maps each class to
an HTTP status in one place.
"""

from __future__ import annotations


class PerfintelError(Exception):
    """Base of every error perfintel raises on purpose."""


class ConfigError(PerfintelError):
    """A setting is missing or invalid; the message names the setting."""


class ConfigFileError(ConfigError):
    """A configuration file (``alertmanager.yml``, a rule file) is invalid at ``path:line``."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class BadInputError(PerfintelError):
    """Client input that cannot be used (maps to HTTP 400)."""


class InvalidSeriesError(BadInputError):
    """A metric name, label name or label value breaks the Prometheus rules."""


class ParseError(BadInputError):
    """A payload or expression could not be parsed; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.reason = message


class TimeParseError(ParseError, ValueError):
    """A duration or time that cannot be read (``perfintel.timeparse``; HTTP 400).

    Also a ``ValueError``, so a pydantic validator that raises it reports a
    validation error naming the field."""


class QueryTooComplexError(BadInputError):
    """A PromQL expression longer or more deeply nested than the query limits allow
    (HTTP 400, refused before it is parsed); the message names the limit."""


class PayloadTooLargeError(BadInputError):
    """A request body (compressed or decompressed) exceeds the configured limit (HTTP 413)."""


class UnsupportedMediaError(BadInputError):
    """A content type or encoding the endpoint does not speak (HTTP 415)."""


class QueryError(PerfintelError):
    """An expression that parses but cannot be evaluated (HTTP 422)."""


class QueryLimitError(QueryError):
    """A query touched more series or samples than allowed (HTTP 422)."""


class QueryTimeoutError(PerfintelError):
    """A query ran past its deadline (HTTP 503)."""


class NotFoundError(PerfintelError):
    """A named resource does not exist (HTTP 404)."""


class AuthError(PerfintelError):
    """Missing or wrong credentials (HTTP 401)."""


class ForbiddenError(PerfintelError):
    """Valid credentials without the needed scope (HTTP 403)."""


class StorageError(PerfintelError):
    """The storage backend failed; retryable from the client's view (HTTP 503)."""


class DiskFullError(StorageError):
    """The store's disk is full (HTTP 503 with Retry-After): nothing of the request was
    stored, and the store recovers by itself once space is free."""


class OverloadedError(PerfintelError):
    """The server is shedding load; the client should retry later (HTTP 429)."""


class TooManyNewSeriesError(BadInputError):
    """One request would create more new series than ``limits.max_new_series_per_request``
    (HTTP 400: the same request would fail again); nothing of it is stored."""


class SeriesRateLimitError(OverloadedError):
    """New series arrive faster than ``limits.max_new_series_per_minute`` (HTTP 429):
    nothing of the request is stored; retry later."""


class LeaseLostError(StorageError):
    """A write fenced by a lease whose token is no longer current: another process
    holds the lease now, and this one's writes are refused (HTTP 503)."""


class BackpressureError(StorageError):
    """The workers are too far behind on the bus: ingest refuses for ``retry_after``
    seconds (HTTP 503 with ``Retry-After``) instead of queueing without bound."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
