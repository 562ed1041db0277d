"""Prometheus semantics of the PromQL engine, on small hand-made data."""

from __future__ import annotations

import doctest
import math
import time
from typing import Any

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.errors import ParseError, QueryError, QueryLimitError, QueryTimeoutError
from perfintel.model import STALE_NAN
from perfintel.query import QuerySettings
from perfintel.query.promql import Engine, QueryResult
from perfintel.query.promql import format as promfmt

T0 = 1_700_000_040_000  # a whole minute, so subquery steps land on samples
MIN = 60_000


def series(name: str, ts: list[int], vals: list[float], **labels: str) -> SampleBatch:
    return SampleBatch.from_arrays(
        {"__name__": name, **labels}, np.array(ts, np.int64), np.array(vals, np.float64)
    )


def values(res: QueryResult) -> dict[tuple[tuple[str, str], ...], list[float]]:
    return {s.labels: s.values.tolist() for s in res.series}


@pytest.fixture
def engine(promql_store_factory: Any) -> Any:
    def make(*batches: SampleBatch, **settings: Any) -> Engine:
        return Engine(promql_store_factory(batches), QuerySettings(**settings))

    make.kind = promql_store_factory.kind  # type: ignore[attr-defined]
    return make


def test_lookback_window_is_closed_five_minutes(engine: Any) -> None:
    e = engine(series("g", [T0], [1.0]))
    assert values(e.instant("g", T0 + 5 * MIN)) == {(("__name__", "g"),): [1.0]}
    assert e.instant("g", T0 + 5 * MIN + 1).series == []
    assert e.instant("g", T0 - 1).series == []
    short = engine(series("g", [T0], [1.0]), lookback_ms=MIN)
    assert short.instant("g", T0 + 2 * MIN).series == []


def test_staleness_marker_ends_a_series_at_once(engine: Any) -> None:
    e = engine(series("g", [T0, T0 + 15_000, T0 + 30_000], [1.0, 2.0, STALE_NAN]))
    assert values(e.instant("g", T0 + 20_000)) == {(("__name__", "g"),): [2.0]}
    assert e.instant("g", T0 + 30_000).series == []
    assert e.instant("g", T0 + 60_000).series == []
    # Range functions skip the marker itself.
    res = e.instant("count_over_time(g[1m])", T0 + 30_000)
    assert values(res) == {(): [2.0]}


def test_ordinary_nan_is_a_value_not_staleness(engine: Any) -> None:
    e = engine(series("g", [T0], [math.nan]))
    if engine.kind == "victoriametrics":  # it drops NaN samples on ingest: nothing to see
        assert e.instant("g", T0 + MIN).series == []
        return
    [s] = e.instant("g", T0 + MIN).series
    assert math.isnan(s.values[0])


def test_rate_extrapolates_like_prometheus(engine: Any) -> None:
    # Samples every 10 s from T0+5s, +1 per sample: 30 samples in a 5 m window.
    ts = [T0 + 5_000 + i * 10_000 for i in range(60)]
    e = engine(series("c_total", ts, [float(i + 10) for i in range(60)]))
    t = T0 + 10 * MIN
    # Window [t-5m, t]: first sample t-295s, last t-5s; 29 increments over 290 s.
    # Both gaps (5 s) < 1.1 × 10 s, so extrapolate to the full 300 s.
    inc = values(e.instant("increase(c_total[5m])", t))[()][0]
    assert inc == pytest.approx(29 * 300 / 290, rel=1e-12)
    assert values(e.instant("rate(c_total[5m])", t))[()][0] == pytest.approx(29 / 290, rel=1e-12)


def test_rate_does_not_extrapolate_below_zero_and_handles_resets(engine: Any) -> None:
    ts = [T0 + i * 10_000 for i in range(7)]
    e = engine(series("c_total", ts, [5, 10, 15, 2, 7, 12, 17]))
    t = T0 + 60_000
    # resets add the value before the drop: 17 - 5 + 15 = 27 over 60 s; window [t-1m, t].
    assert values(e.instant("increase(c_total[1m])", t))[()][0] == pytest.approx(27.0)
    assert values(e.instant("resets(c_total[1m])", t))[()][0] == 1.0
    # A counter starting near zero is not extrapolated past its zero point.
    e2 = engine(series("c_total", [T0 + 30_000, T0 + 40_000, T0 + 50_000], [1, 2, 3]))
    got = values(e2.instant("increase(c_total[1m])", T0 + 60_000))[()][0]
    # to_zero = 20 s * 1/2 = 10 s < 30 s gap; to_end = 10 s < 11 s threshold.
    assert got == pytest.approx(2 * (20 + 10 + 10) / 20)


def test_range_selector_window_is_closed_and_drops_name(engine: Any) -> None:
    e = engine(series("g", [T0, T0 + MIN], [1.0, 2.0], job="x"))
    assert values(e.instant("count_over_time(g[1m])", T0 + MIN)) == {(("job", "x"),): [2.0]}
    assert values(e.instant("last_over_time(g[1m])", T0 + MIN)) == {
        (("__name__", "g"), ("job", "x")): [2.0]
    }


def test_range_query_steps_and_offset(engine: Any) -> None:
    e = engine(series("g", [T0 + i * MIN for i in range(10)], [float(i) for i in range(10)]))
    res = e.range("g offset 2m", T0 + 5 * MIN, T0 + 7 * MIN, MIN)
    assert res.result_type == "matrix"
    [s] = res.series
    assert s.timestamps.tolist() == [T0 + 5 * MIN, T0 + 6 * MIN, T0 + 7 * MIN]
    assert s.values.tolist() == [3.0, 4.0, 5.0]
    at = e.range("g @ end()", T0 + 5 * MIN, T0 + 7 * MIN, MIN)
    assert at.series[0].values.tolist() == [7.0, 7.0, 7.0]


def test_many_to_many_matching_is_an_error(engine: Any) -> None:
    e = engine(
        series("a", [T0], [1], x="1", y="1"),
        series("a", [T0], [2], x="1", y="2"),
        series("b", [T0], [3], x="1"),
    )
    with pytest.raises(QueryError, match="many-to-many matching not allowed"):
        e.instant("b + on(x) a", T0)
    with pytest.raises(QueryError, match="many-to-one matching must be explicit"):
        e.instant("a + on(x) b", T0)
    assert len(e.instant("a + on(x) group_left b", T0).series) == 2


def test_same_labelset_after_dropping_names_is_an_error(engine: Any) -> None:
    e = engine(
        series("a", [T0 - 10_000, T0], [1, 2], x="1"), series("b", [T0 - 10_000, T0], [2, 3], x="1")
    )
    with pytest.raises(QueryError, match="same labelset"):
        e.instant('abs({__name__=~"a|b"})', T0)
    with pytest.raises(QueryError, match="same labelset"):
        e.instant('rate({__name__=~"a|b"}[5m])', T0)


def test_set_operators_and_bool(engine: Any) -> None:
    e = engine(
        series("a", [T0], [1], x="1"), series("a", [T0], [5], x="2"), series("b", [T0], [0], x="2")
    )
    assert {dict(k)["x"] for k in values(e.instant("a and b", T0))} == {"2"}
    assert {dict(k)["x"] for k in values(e.instant("a unless b", T0))} == {"1"}
    assert len(e.instant("a or b", T0).series) == 2
    assert sorted(v[0] for v in values(e.instant("a > bool 2", T0)).values()) == [0.0, 1.0]


def test_limits_raise_query_limit_error(engine: Any) -> None:
    batches = [series("m", [T0], [1], i=str(i)) for i in range(5)]
    with pytest.raises(QueryLimitError):
        engine(*batches, max_series=3).instant("m", T0)
    with pytest.raises(QueryLimitError):
        engine(series("m", [T0 + i for i in range(100)], [1.0] * 100), max_samples=10).instant(
            "m", T0 + 100
        )


def test_deadline_raises_timeout(engine: Any) -> None:
    e = engine(series("m", [T0], [1]), timeout_s=0.0)
    time.sleep(0.001)
    with pytest.raises(QueryTimeoutError):
        e.instant("m", T0)


def test_bad_query_is_a_parse_error(engine: Any) -> None:
    with pytest.raises(ParseError):
        engine().instant("sum(", T0)
    with pytest.raises(ParseError):
        engine().instant("", T0)


def test_re2_regexes_stay_linear(engine: Any) -> None:
    evil = "a" * 5000 + "!"
    e = engine(series("m", [T0], [1], v=evil))
    started = time.monotonic()
    assert e.instant('m{v=~"(a+)+b"}', T0).series == []
    res = e.instant('label_replace(m, "w", "$1", "v", "(a|aa)+(a*)*!")', T0)
    assert len(res.series) == 1
    assert time.monotonic() - started < 2.0


def test_absent_and_label_functions(engine: Any) -> None:
    e = engine(series("m", [T0], [1], job="a", inst="1"))
    assert values(e.instant('absent(nope{job="x",env=~"p"})', T0)) == {(("job", "x"),): [1.0]}
    assert e.instant("absent(m)", T0).series == []
    got = e.instant('label_replace(m, "dst", "${1}-$2x", "job", "(.)(.*)")', T0).series[0].labels
    assert dict(got)["dst"] == "a-"
    joined = e.instant('label_join(m, "id", ":", "job", "inst")', T0).series[0].labels
    assert dict(joined)["id"] == "a:1"


def test_histogram_quantile_classic_buckets(engine: Any) -> None:
    buckets = [("0.1", 10.0), ("0.5", 30.0), ("1", 40.0), ("+Inf", 40.0)]
    e = engine(*[series("h_bucket", [T0], [v], le=le) for le, v in buckets])
    # rank 20 falls into (0.1, 0.5]: 0.1 + 0.4 * (20 - 10) / 20 = 0.3
    assert values(e.instant("histogram_quantile(0.5, h_bucket)", T0))[()][0] == pytest.approx(0.3)
    assert values(e.instant("histogram_quantile(1, h_bucket)", T0))[()][0] == 1.0


def test_subquery_and_scalar_results(engine: Any) -> None:
    e = engine(series("g", [T0 + i * MIN for i in range(10)], [float(i) for i in range(10)]))
    assert values(e.instant("max_over_time(g[5m:1m])", T0 + 9 * MIN))[()] == [9.0]
    res = e.instant("scalar(g) * 2", T0 + 9 * MIN)
    assert res.result_type == "scalar" and res.scalar == (T0 + 9 * MIN, 18.0)
    assert e.instant('"x"', T0).string == (T0, "x")


def test_format_doctests() -> None:
    assert doctest.testmod(promfmt).failed == 0
