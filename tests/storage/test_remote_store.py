"""What the VictoriaMetrics store adds to the contract: namespaces, request splitting, threads,
read-after-write, and foreign errors translated (against the real server)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from perfintel.batch import SampleBatch
from perfintel.errors import StorageError
from perfintel.model import label_set, parse_selector
from perfintel.storage.victoriametrics import RemoteStore, RemoteStoreOptions

pytestmark = pytest.mark.external

T0 = 1_700_000_000_000


def _store(url: str, **kw: object) -> RemoteStore:
    ns = ("pi_test", uuid.uuid4().hex)
    return RemoteStore(RemoteStoreOptions.single_node(url, namespace=ns, **kw))


def _batch(name: str, n: int, **labels: str) -> SampleBatch:
    ts = T0 + 1000 * np.arange(n, dtype=np.int64)
    return SampleBatch.from_arrays(label_set({"__name__": name, **labels}), ts, np.arange(n) * 0.5)


def test_namespaces_do_not_see_each_other(victoria_metrics: str) -> None:
    a, b = _store(victoria_metrics), _store(victoria_metrics)
    a.append(_batch("shared_name", 10, who="a"))
    b.append(_batch("shared_name", 5, who="b"))
    [sa] = a.select(parse_selector("shared_name"), T0, T0 + 10**6)
    [sb] = b.select(parse_selector("shared_name"), T0, T0 + 10**6)
    assert (dict(sa.labels)["who"], len(sa.values)) == ("a", 10)
    assert (dict(sb.labels)["who"], len(sb.values)) == ("b", 5)
    assert "pi_test" not in a.label_names([], T0, T0 + 10**6)
    assert a.label_values("who", [], T0, T0 + 10**6) == ["a"]
    assert a.stats().series == 1 and a.size().series == 1
    a.close()
    b.close()


def test_a_range_ending_at_midnight_utc_keeps_the_midnight_sample(victoria_metrics: str) -> None:
    """VictoriaMetrics leaves out the last day of a range that ends exactly at 00:00 UTC and
    begins the day before, for a series with no sample that day before: data begun at
    midnight read nothing at `@ start() offset 1h`."""
    # yesterday's midnight: a day the server indexes per day (an old day went unnoticed)
    midnight = int(time.time() * 1000) // 86_400_000 * 86_400_000 - 86_400_000
    st = _store(victoria_metrics)
    ts = midnight + 60_000 * np.arange(5, dtype=np.int64)  # nothing before midnight
    st.append(SampleBatch.from_arrays(label_set({"__name__": "m"}), ts, np.arange(5.0)))
    sel = parse_selector("m")
    [s] = st.select(sel, midnight - 300_000, midnight)  # the range ends at midnight
    assert s.timestamps.tolist() == [midnight] and s.values.tolist() == [0.0]
    assert len(st.series([sel], midnight - 1, midnight)) == 1
    assert st.select(sel, midnight - 300_000, midnight - 1) == []  # never more than asked
    st.close()


def test_big_batches_are_split_and_reads_see_every_acknowledged_sample(
    victoria_metrics: str,
) -> None:
    st = _store(victoria_metrics, max_samples_per_request=1000)
    n = 20_000
    st.append(_batch("big", n))  # 20 requests; no explicit flush before reading
    [s] = st.select(parse_selector("big"), T0, T0 + n * 1000)
    assert len(s.values) == n and np.array_equal(s.values, np.arange(n) * 0.5)
    assert st.flush().flushed == 0  # the read already flushed what was written
    st.close()


def test_concurrent_writers_and_readers(victoria_metrics: str) -> None:
    st = _store(victoria_metrics)

    def work(i: int) -> int:
        st.append(_batch("threads", 500, worker=str(i)))
        return len(st.select(parse_selector(f'threads{{worker="{i}"}}'), T0, T0 + 10**6)[0].values)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(16))) == [500] * 16
    assert len(st.series([parse_selector("threads")], T0, T0 + 10**6)) == 16
    st.close()


def test_unreachable_server_is_a_storage_error() -> None:
    st = RemoteStore(RemoteStoreOptions.single_node("http://127.0.0.1:9", timeout_s=2))
    with pytest.raises(StorageError, match="remote_write failed"):
        st.append(_batch("x", 3))
    with pytest.raises(StorageError):
        st.select(parse_selector("x"), T0, T0 + 1000)
    st.close()


def test_server_errors_are_storage_errors(victoria_metrics: str) -> None:
    st = RemoteStore(
        RemoteStoreOptions(write_url=victoria_metrics + "/no/such/path", read_url=victoria_metrics)
    )
    with pytest.raises(StorageError, match="HTTP 4"):
        st.append(_batch("x", 3))
    st.close()


def test_a_split_batch_refused_or_unreachable_is_a_storage_error(victoria_metrics: str) -> None:
    """The requests of a split batch overlap (one in flight while the next is encoded): an
    error of any of them is the append's, raised once every request has ended."""
    for url, error in (
        (victoria_metrics + "/no/such/path", "HTTP 4"),
        ("http://127.0.0.1:9/api/v1/write", "remote_write failed"),
    ):
        st = RemoteStore(
            RemoteStoreOptions(
                write_url=url, read_url=victoria_metrics, max_samples_per_request=100, timeout_s=2
            )
        )
        with pytest.raises(StorageError, match=error):
            st.append(_batch("x", 1000))  # 10 requests
        st.close()


def test_stats_without_a_namespace_count_the_whole_tsdb(victoria_metrics: str) -> None:
    whole = RemoteStore(RemoteStoreOptions.single_node(victoria_metrics))
    before = whole.stats().series
    mine = _store(victoria_metrics)
    mine.append(_batch("counted", 3, k="1"))
    mine.append(_batch("counted", 3, k="2"))
    mine.flush()
    assert whole.stats().series == before + 2 and whole.size().series == before + 2
    whole.close()
    mine.close()


def test_a_selector_cannot_leave_its_namespace(victoria_metrics: str) -> None:
    a, b = _store(victoria_metrics), _store(victoria_metrics)
    a.append(_batch("secret", 4))
    other = b.opts.namespace
    assert other is not None
    for sel in (
        "secret",
        '{pi_test=~".+",__name__="secret"}',
        f'secret{{pi_test="{a.opts.namespace[1]}"}}',
    ):  # type: ignore[index]
        assert b.select(parse_selector(sel), T0, T0 + 10**6) == []
        assert b.series([parse_selector(sel)], T0, T0 + 10**6) == []
    assert b.label_values("__name__", [], T0, T0 + 10**6) == []
    a.close()
    b.close()


def test_an_answer_that_is_not_json_is_a_storage_error(victoria_metrics: str) -> None:
    # VictoriaMetrics' /metrics answers 200 in its text format: not the API it expects
    st = RemoteStore(
        RemoteStoreOptions(write_url="", read_url=victoria_metrics + "/metrics?x=", flush_url=None)
    )
    with pytest.raises(StorageError, match="no JSON"):
        st.label_names([], T0, T0 + 1000)
    st.close()
