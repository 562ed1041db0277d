"""Query size and depth are bounded before parsing; evaluation stays within the bound.

Issue 10, item 2: ``query=`` + 12,000 ``(`` + ``1`` + 12,000 ``)`` ended the
server with SIGSEGV (promql-parser's recursion), depth 5,000 cost 2 s and 2 GB,
``abs(`` nested 1,000 deep and ``1+1+…`` with 3,000 terms answered 500
"maximum recursion depth exceeded" after growing the process by 2.2 GB.
"""

from __future__ import annotations

import doctest
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import promql_parser as pp
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from perfintel import query_shape as guard
from perfintel.api.app import create_app
from perfintel.batch import SampleBatch
from perfintel.config import load_settings
from perfintel.errors import QueryTooComplexError
from perfintel.model import label_set
from perfintel.query.promql.engine import Engine
from perfintel.query.settings import QuerySettings
from perfintel.query_shape import check_query, scan
from perfintel.storage.memory import MemoryStore
from tests.conftest import start_server

HOSTILE = {
    "parens 12,000": "(" * 12_000 + "1" + ")" * 12_000,
    "parens 5,000": "(" * 5_000 + "1" + ")" * 5_000,
    "abs 1,000": "abs(" * 1_000 + "vector(1)" + ")" * 1_000,
    "chain 3,000": "+".join(["1"] * 3_000),
    "unary 3,000": "-" * 3_000 + "1",
    "long": "up{job=~" + '"' + "a|" * 40_000 + 'a"}',
}


def test_doctests() -> None:
    assert doctest.testmod(guard).failed == 0


@pytest.mark.parametrize(
    ("text", "brackets", "depth"),
    [
        ("up", 0, 1),
        ('up{job="(((", a=~"[[["}', 1, 2),
        ("up{job='a\\'(('}", 1, 2),
        ("up{job=`((\\`}", 1, 2),
        ("# ((((((\nup", 0, 1),
        ("a and b or c unless d", 0, 4),
        ("sand + bor", 0, 2),  # words that merely contain operators
        ("a >= b != c == d <= e", 0, 5),
        ("rate(x[5m:1m])", 2, 4),
        ("((", 2, 3),  # unbalanced: still measured
        ("))", 0, 1),
    ],
)
def test_scan(text: str, brackets: int, depth: int) -> None:
    shape = scan(text)
    assert (shape.brackets, shape.depth) == (brackets, depth)


def _tree_depth(node: Any) -> int:
    """Depth of promql-parser's tree, walked without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        children: list[Any] = []
        if isinstance(n, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
            children = [n.expr]
        elif isinstance(n, pp.BinaryExpr):
            children = [n.lhs, n.rhs]
        elif isinstance(n, pp.AggregateExpr):
            children = [n.expr] + ([n.param] if n.param is not None else [])
        elif isinstance(n, pp.Call):
            children = list(n.args)
        elif isinstance(n, pp.MatrixSelector):
            children = [n.vector_selector]
        stack.extend((c, d + 1) for c in children)
    return deepest


_leaf = st.sampled_from(["up", "1", 'x{a="(b)"}', "2.5", "-3", "time()"])


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(
            inner, st.sampled_from(["+", "-", "*", "/", "and", "or", ">", "==", "^"]), inner
        ).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        inner.map(lambda e: f"sum by (job) ({e})"),
        inner.map(lambda e: f"abs({e})"),
        inner.map(lambda e: f"max_over_time(({e})[5m:1m])"),
        inner.map(lambda e: f"topk(2, {e})"),
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(_leaf, _extend, max_leaves=40))
def test_the_bound_is_never_below_the_parser_tree(text: str) -> None:
    try:
        tree = pp.parse(text)
    except ValueError:
        return  # type errors (a scalar where a vector belongs): not a tree
    assert scan(text).depth >= _tree_depth(tree)


def test_limits_name_the_setting() -> None:
    with pytest.raises(QueryTooComplexError, match=r"query\.max_length"):
        check_query("x" * 101, max_length=100, max_depth=10)
    with pytest.raises(QueryTooComplexError, match=r"brackets 11 deep.*query\.max_depth"):
        check_query("(" * 11 + "1" + ")" * 11, max_length=100, max_depth=10)
    with pytest.raises(QueryTooComplexError, match=r"a\+b\+c.*query\.max_depth"):
        check_query("+".join("1" * 11), max_length=100, max_depth=10)
    assert check_query("(" * 9 + "1" + ")" * 9, max_length=100, max_depth=10).depth == 10


def _deep(kind: str, depth: int) -> str:
    """An expression of each kind of nesting, exactly ``depth`` deep by the guard's count."""
    if kind == "parens":
        return "(" * (depth - 1) + "x" + ")" * (depth - 1)
    if kind == "calls":
        return "abs(" * (depth - 1) + "x" + ")" * (depth - 1)
    if kind == "aggregations":
        return "sum(" * (depth - 1) + "x" + ")" * (depth - 1)
    if kind == "topk":
        return "topk(1, " * (depth - 1) + "x" + ")" * (depth - 1)
    if kind == "label_replace":
        return "label_replace(" * (depth - 1) + "x" + ', "b", "c", "a", "(.*)")' * (depth - 1)
    if kind == "chain":
        return " + ".join(["x"] * depth)
    if kind == "right chain":
        n = (depth - 1) // 2
        return "x + (" * n + "x" + ")" * n
    if kind == "unary":
        return "-" * (depth - 1) + "x"
    if kind == "subqueries":
        q = "x"
        for _ in range((depth - 1) // 3):
            q = f"max_over_time(({q})[5m:1m])"
        return q
    raise AssertionError(kind)


KINDS = [
    "parens",
    "calls",
    "aggregations",
    "topk",
    "label_replace",
    "chain",
    "right chain",
    "unary",
    "subqueries",
]


@pytest.mark.parametrize("max_depth", [QuerySettings().max_depth, 256])
def test_evaluation_at_the_depth_limit_stays_within_the_recursion_limit(max_depth: int) -> None:
    """Every kind of nesting, as deep as the limit allows (the default, and the most the
    setting accepts), evaluates in a worker thread as the server runs it."""
    store = MemoryStore()
    ts = np.arange(0, 3_600_000, 15_000)
    store.append(SampleBatch.from_arrays(label_set({"__name__": "x", "a": "1"}), ts, ts / 1e3))
    engine = Engine(store, QuerySettings(max_depth=max_depth))
    outcome: dict[str, object] = {}

    def run() -> None:
        for kind in KINDS:
            text = _deep(kind, max_depth)
            outcome[kind + " depth"] = max_depth - 3 <= scan(text).depth <= max_depth
            try:
                res = engine.range(text, 1_800_000, 3_600_000, 60_000)
                outcome[kind] = len(res.series)
            except Exception as exc:  # recorded, asserted below
                outcome[kind] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert outcome == {k: 1 for k in KINDS} | {k + " depth": True for k in KINDS}
    with pytest.raises(QueryTooComplexError):
        engine.range(_deep("calls", max_depth + 1), 1_800_000, 3_600_000, 60_000)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_selectors_are_measured_before_parsing(name: str) -> None:
    """``parse_selector`` (match[], the analysis and config selectors) used promql-parser
    unguarded: 12,000 nested parentheses in match[] ended the process too."""
    from perfintel.errors import ParseError
    from perfintel.model import parse_selector

    if name == "long":
        assert parse_selector(HOSTILE[name]).matchers  # long but flat: a fine selector
        return
    with pytest.raises(ParseError, match="not a series selector"):
        parse_selector(HOSTILE[name])


def test_selectors_with_modifiers_are_not_plain_selectors() -> None:
    from perfintel.errors import ParseError
    from perfintel.model import parse_selector

    for text in ("up offset 5m", "up @ 100", "up[5m]"):
        with pytest.raises(ParseError, match="selector"):
            parse_selector(text)


def test_depth_setting_is_bounded() -> None:
    from perfintel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"query\.max_depth"):
        load_settings(overrides={"query": {"max_depth": 10_000}}, env={})


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_queries_get_a_400_naming_the_limit(tmp_path: Path, name: str) -> None:
    settings_ = load_settings(overrides={"data_dir": tmp_path / "d"}, env={})
    with TestClient(create_app(settings_, collectors=False)) as client:
        for path in ("/api/v1/query", "/api/v1/query_range"):
            data = {"query": HOSTILE[name], "start": "0", "end": "60", "step": "15"}
            r = client.post(path, data=data)
            assert r.status_code == 400, r.text[:300]
            body = r.json()
            assert body["errorType"] == "bad_data"
            assert "query.max_depth" in body["error"] or "query.max_length" in body["error"]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_real_server_survives_the_hostile_requests(tmp_path: Path) -> None:
    """The requests of the issue against a real ``perfintel serve``: each answered with a
    400 (within the client's timeout), the process alive, its peak memory not grown."""
    server = start_server(tmp_path / "data")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/api/v1/query", data={"query": "1+1"})
            assert r.status_code == 200
            peak_before = _peak_rss_mib(server.proc.pid)
            for name, query in HOSTILE.items():
                for _ in range(3):
                    r = client.post("/api/v1/query", data={"query": query})
                    assert r.status_code == 400, (name, r.text[:200])
                    assert server.proc.poll() is None, name
                # series selectors go through the same parser
                requests = [("POST", "/api/v1/series"), ("POST", "/api/v1/labels")]
                if len(query) < 5_000:  # longer URLs are refused by the client
                    requests.append(("GET", "/api/v1/export"))
                for method, path in requests:
                    form = {"data": {"match[]": query}} if method == "POST" else {}
                    params = {"params": {"match[]": query}} if method == "GET" else {}
                    r = client.request(method, path, **form, **params)  # type: ignore[arg-type]
                    # a long but flat regex is a fine selector; the nested texts are not
                    assert r.status_code == (200 if name == "long" else 400), (name, path)
                    assert server.proc.poll() is None, (name, path)
            assert client.get("/healthz").status_code == 200
            r = client.post("/api/v1/query", data={"query": "1+1"})
            assert r.json()["data"]["result"][1] == "2"
        assert _peak_rss_mib(server.proc.pid) - peak_before < 100
    finally:
        server.stop()
