"""``perfintel rules test``: rule unit tests in ``promtool test rules``'s file format.

A test file names ``rule_files`` (relative to the test file; globs allowed),
an ``evaluation_interval`` (default 1m), an optional ``group_eval_order``,
and ``tests``, each with ``interval`` (spacing of the input samples; default
the evaluation interval), ``input_series`` (``series`` and ``values`` in
expanding notation), ``alert_rule_test`` (``eval_time``, ``alertname``,
``exp_alerts`` of ``exp_labels`` and ``exp_annotations``),
``promql_expr_test`` (``expr``, ``eval_time``, ``exp_samples`` of ``labels``
and ``value``), ``external_labels``, ``external_url`` and ``name``.

Semantics follow promtool: the input series are loaded into a fresh store
(sample ``i`` at ``i × interval`` from the epoch); every group is evaluated at
every evaluation interval from 0 to the latest ``eval_time``, in
``group_eval_order`` (else file order); an alert test compares the *firing*
alerts of its ``alertname`` (labels, with ``alertname`` added, and
annotations) at the last evaluation not after its ``eval_time``; an
expression test runs an instant query at ``eval_time`` after all
evaluations and compares the samples exactly. perfintel's rule kinds may be
used too (``promtool`` refuses them).

Expanding notation: ``a+bxn`` is ``a, a+b, ..., a+n*b``; ``a-bxn`` counts
down; ``axn`` is ``a`` n+1 times; ``_`` is a missing sample, ``_xn`` n of
them; ``stale`` a staleness marker.
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perfintel.alerting.rules.files import RuleFileError, load_rule_file
from perfintel.alerting.rules.group import EvalOptions, GroupRuntime
from perfintel.alerting.rules.lifecycle import FlapSettings
from perfintel.alerting.rules.spec import GroupSpec
from perfintel.batch import SampleBatch
from perfintel.errors import PerfintelError
from perfintel.model import STALE_NAN, LabelSet, label_set
from perfintel.query.promql.engine import Engine
from perfintel.storage.memory import MemoryStore
from perfintel.timeparse import parse_prometheus_duration_seconds

_ITEM = re.compile(
    r"^(?P<a>[-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|Inf|NaN|inf|nan))"
    r"(?:(?P<op>[-+])(?P<b>[0-9.]+(?:[eE][-+]?\d+)?|Inf|NaN))?x(?P<n>\d+)$"
)
_SINGLE = re.compile(r"^[-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|Inf|NaN|inf|nan)$")


class TestFileError(PerfintelError):
    """A unit-test file that cannot be used (its message says where)."""


def expand_values(text: str) -> list[float | None]:
    """Expanding notation to values (``None`` = missing, ``STALE_NAN`` = stale)."""
    out: list[float | None] = []
    for item in str(text).split():
        if item == "_":
            out.append(None)
        elif item.startswith("_x") and item[2:].isdigit():
            out.extend([None] * int(item[2:]))
        elif item == "stale":
            out.append(STALE_NAN)
        elif _SINGLE.match(item):
            out.append(float(item))
        else:
            m = _ITEM.match(item)
            if m is None:
                raise ValueError(f"invalid value {item!r} in series values {text!r}")
            a = float(m.group("a"))
            b = float(m.group("b")) if m.group("b") else 0.0
            if m.group("op") == "-":
                b = -b
            n = int(m.group("n"))
            out.extend(a + i * b for i in range(n + 1))
    return out


def parse_metric(text: str) -> LabelSet:
    """``name{a="b"}`` to a label set (promtool's ``parser.ParseMetric``); ``{}`` is empty."""
    from perfintel.model import parse_selector

    if text.strip() in ("{}", ""):
        return ()
    sel = parse_selector(text)
    labels = {}
    for m in sel.matchers:
        if m.op.value != "=":
            raise ValueError(f"{text!r} is not a series (only = matchers)")
        labels[m.name] = m.value
    return label_set(labels)


@dataclass
class TestResult:
    file: str
    ok: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _duration(value: Any, what: str) -> float:
    try:
        return parse_prometheus_duration_seconds(value)
    except ValueError as exc:
        raise TestFileError(f"{what}: {exc}") from None


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TestFileError(str(exc)) from None
    if not isinstance(doc, dict):
        raise TestFileError("a test file must be a mapping")
    allowed = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
    for key in doc:
        if key not in allowed:
            raise TestFileError(f"field {key} not found in type main.unitTestFile")
    return doc


def run_test_file(path: Path, *, options: EvalOptions | None = None) -> TestResult:
    """Run one test file; never raises for a bad file (the result says why)."""
    try:
        return _run(path, options or EvalOptions())
    except (TestFileError, RuleFileError) as exc:
        return TestResult(str(path), False, [str(exc)])


def _run(path: Path, options: EvalOptions) -> TestResult:
    doc = _load(path)
    warnings: list[str] = []
    interval = _duration(doc.get("evaluation_interval") or "1m", "evaluation_interval")
    if interval <= 0:
        interval = 60.0
    rule_files: list[Path] = []
    for pattern in doc.get("rule_files") or []:
        # promtool treats every entry as a glob: one that matches nothing is only a warning
        full = (
            Path(str(pattern)) if Path(str(pattern)).is_absolute() else path.parent / str(pattern)
        )
        found = sorted(Path(p) for p in glob.glob(str(full)) if Path(p).is_file())
        if not found:
            warnings.append(f"  WARNING: no file match pattern {pattern}")
        rule_files.extend(found)
    specs: list[GroupSpec] = []
    for f in rule_files:
        specs.extend(load_rule_file(f))
    order = [str(n) for n in doc.get("group_eval_order") or []]
    if order:
        names = {g.name for g in specs}
        for n in order:
            if n not in names:
                raise TestFileError(
                    f"group name provided in group_eval_order not present in loaded groups: {n}"
                )
        rank = {n: i for i, n in enumerate(order)}
        specs.sort(key=lambda g: rank.get(g.name, len(rank)))
    errors: list[str] = []
    for tg in doc.get("tests") or []:
        if not isinstance(tg, dict):
            raise TestFileError("each test must be a mapping")
        errors.extend(_test_group(tg, specs, interval, options))
    return TestResult(str(path), not errors, errors, warnings)


def _test_group(
    tg: Mapping[str, Any], specs: Sequence[GroupSpec], eval_interval: float, base: EvalOptions
) -> list[str]:
    allowed = {
        "interval",
        "input_series",
        "alert_rule_test",
        "promql_expr_test",
        "external_labels",
        "external_url",
        "name",
    }
    for key in tg:
        if key not in allowed:
            raise TestFileError(f"field {key} not found in type main.testGroup")
    step = _duration(tg.get("interval") or 0, "interval") or eval_interval
    store = MemoryStore()
    for s in tg.get("input_series") or []:
        try:
            labels = parse_metric(str(s.get("series", "")))
            values = expand_values(str(s.get("values", "")))
        except (ValueError, PerfintelError) as exc:
            raise TestFileError(str(exc)) from None
        ts = [round(i * step * 1000) for i, v in enumerate(values) if v is not None]
        vs = [v for v in values if v is not None]
        if ts:
            store.append(SampleBatch.from_arrays(labels, np.array(ts), np.array(vs)))
    ext = {str(k): str(v) for k, v in (tg.get("external_labels") or {}).items()}
    options = EvalOptions(
        default_interval_s=eval_interval,
        resend_delay_s=base.resend_delay_s,
        external_url=str(tg.get("external_url") or ""),
        external_labels=ext,
        flap=FlapSettings(threshold=0),  # promtool has no flap control
        query=base.query,
    )
    groups = [GroupRuntime(g, options) for g in specs]
    alert_tests = list(tg.get("alert_rule_test") or [])
    expr_tests = list(tg.get("promql_expr_test") or [])
    name = f" (in TestGroup {tg['name']})" if tg.get("name") else ""
    for a in alert_tests:
        if not a.get("alertname"):
            return [
                f"an item under alert_rule_test misses required attribute alertname at eval_time {a.get('eval_time')}{name}"
            ]
    times: list[float] = [_duration(a.get("eval_time") or 0, "eval_time") for a in alert_tests]
    times += [_duration(e.get("eval_time") or 0, "eval_time") for e in expr_tests]
    max_t = max(times, default=0.0)
    errors: list[str] = []
    pending = sorted(
        ((_duration(a.get("eval_time") or 0, "eval_time"), i) for i, a in enumerate(alert_tests)),
    )
    k = 0
    steps = int(max_t // eval_interval + 1e-9)
    for n in range(steps + 1):
        now = n * eval_interval
        eval_errors = []
        for g in groups:
            g.evaluate(now, store, None)
            for r in g.rules:
                if r.health == "err":
                    eval_errors.append(
                        f"    rule: {r.spec.name}, time: {_fmt(now)}, err: {r.last_error}"
                    )
        if eval_errors:
            return errors + eval_errors
        while k < len(pending) and now <= pending[k][0] < now + eval_interval:
            errors.extend(_check_alerts(alert_tests[pending[k][1]], groups))
            k += 1
    engine = Engine(store, options.query)
    for e in expr_tests:
        errors.extend(_check_expr(e, engine))
    return errors


def _check_alerts(case: Mapping[str, Any], groups: Sequence[GroupRuntime]) -> list[str]:
    name = str(case["alertname"])
    got = []
    for g in groups:
        for r in g.rules:
            if r.spec.is_alerting and r.spec.name == name:
                for a in r.active.values():
                    if a.state == "firing":
                        got.append((dict(a.labels), dict(a.annotations)))
    exp = []
    for a in case.get("exp_alerts") or []:
        labels = {str(k): str(v) for k, v in (a.get("exp_labels") or {}).items()}
        labels["alertname"] = name
        ann = {str(k): str(v) for k, v in (a.get("exp_annotations") or {}).items()}
        exp.append((labels, ann))

    def key(
        x: tuple[dict[str, str], dict[str, str]],
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return sorted(x[0].items()), sorted(x[1].items())

    if sorted(exp, key=key) == sorted(got, key=key):
        return []
    t = _fmt(_duration(case.get("eval_time") or 0, "eval_time"))
    return [
        f"    alertname: {name}, time: {t}, \n        exp:{_show(exp)}, \n        got:{_show(got)}"
    ]


def _check_expr(case: Mapping[str, Any], engine: Engine) -> list[str]:
    expr = str(case.get("expr", ""))
    t = _duration(case.get("eval_time") or 0, "eval_time")
    try:
        res = engine.instant(expr, round(t * 1000))
    except PerfintelError as exc:
        return [f"    expr: {expr!r}, time: {_fmt(t)}, err: {exc}"]
    got: list[tuple[LabelSet, float]] = []
    if res.result_type == "scalar" and res.scalar is not None:
        got.append(((), res.scalar[1]))
    else:
        got.extend((s.labels, float(s.values[0])) for s in res.series)
    exp = []
    for s in case.get("exp_samples") or []:
        try:
            labels = parse_metric(str(s.get("labels", ""))) if s.get("labels") else ()
        except (ValueError, PerfintelError) as exc:
            return [f"    expr: {expr!r}, time: {_fmt(t)}, err: labels {s.get('labels')!r}: {exc}"]
        value = s.get("value", 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TestFileError(f"cannot unmarshal {value!r} into float64 (exp_samples value)")
        exp.append((labels, float(value)))
    if _same_samples(exp, got):
        return []
    return [f"    expr: {expr!r}, time: {_fmt(t)},\n        exp: {exp}\n        got: {got}"]


def _same_samples(a: list[tuple[LabelSet, float]], b: list[tuple[LabelSet, float]]) -> bool:
    if len(a) != len(b):
        return False
    for (la, va), (lb, vb) in zip(
        sorted(a, key=lambda x: x[0]), sorted(b, key=lambda x: x[0]), strict=True
    ):
        # promtool compares with reflect.DeepEqual: exact values, and NaN never equals NaN
        if la != lb or va != vb or math.isnan(va):
            return False
    return True


def _show(items: list[tuple[dict[str, str], dict[str, str]]]) -> str:
    parts = []
    for labels, ann in items:
        ls = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        an = ", ".join(f'{k}="{v}"' for k, v in sorted(ann.items()))
        parts.append(f"0:\n           Labels:{{{ls}}}\n           Annotations:{{{an}}}")
    return "[" + " ".join(parts) + "]"


def _fmt(seconds: float) -> str:
    s = int(seconds)
    if s == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


__all__ = ["TestResult", "expand_values", "parse_metric", "run_test_file"]
