import perfintel

EXPECTED = {
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
}


def test_public_api_is_exactly_the_documented_list() -> None:
    assert set(perfintel.__all__) == EXPECTED
    for name in perfintel.__all__:
        assert hasattr(perfintel, name)
