"""perfintel: self-hosted performance intelligence.

The names below are the public Python API; everything else is internal and
may change. ``tests/test_public_api.py`` guards this list.
"""

from perfintel.batch import SampleBatch
from perfintel.errors import (
    BadInputError,
    ConfigError,
    InvalidSeriesError,
    ParseError,
    PerfintelError,
    QueryError,
    StorageError,
)
from perfintel.model import (
    STALE_NAN,
    LabelSet,
    Matcher,
    MatchOp,
    Selector,
    label_set,
    parse_selector,
)
from perfintel.storage.duckdb import DuckDBStore, StoreOptions

__version__ = "0.1.0"

__all__ = [
    "STALE_NAN",
    "BadInputError",
    "ConfigError",
    "DuckDBStore",
    "InvalidSeriesError",
    "LabelSet",
    "MatchOp",
    "Matcher",
    "ParseError",
    "PerfintelError",
    "QueryError",
    "SampleBatch",
    "Selector",
    "StorageError",
    "StoreOptions",
    "__version__",
    "label_set",
    "parse_selector",
]
