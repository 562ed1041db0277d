"""Rule files: Prometheus's format as it is, plus perfintel's rule kinds.

A file is YAML with one top-level key, ``groups``; each group has ``name``,
``rules`` and optionally ``interval``, ``limit``, ``query_offset`` and
``labels`` (added to every rule's results). A rule is a recording rule
(``record``, ``expr``, ``labels``) or an alerting rule (``alert``, ``expr``,
``for``, ``keep_firing_for``, ``labels``, ``annotations``), validated as
``promtool check rules`` does: unknown keys, duplicate keys, bad durations,
unparsable PromQL, invalid label names, broken templates and repeated group
names are errors.

perfintel adds, next to ``alert``:

* ``kind: <name>`` with the kind's own keys, for the rule kinds of
  :mod:`perfintel.alerting.rules.kinds` (``expr`` is then a kind parameter,
  required only by the kinds that use it);
* ``keep_firing_while: <PromQL>`` (any alerting rule): hysteresis — an alert
  that is pending or firing stays so while this expression returns a series
  with the alert's labels, even when ``expr`` no longer does.

Every error is a :class:`RuleFileError` naming the file, the line and the
reason; a file with any error is refused as a whole.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from perfintel.alerting.rules.spec import (
    ALERT,
    RECORD,
    GroupSpec,
    RuleSpec,
)
from perfintel.alerting.rules.template import RuleTemplate, TemplateError
from perfintel.errors import BadInputError
from perfintel.model import LABEL_NAME_RE, METRIC_NAME_RE
from perfintel.timeparse import parse_prometheus_duration_seconds

__all__ = [
    "RuleFileError",
    "load_rule_file",
    "load_rule_files",
    "parse_group",
    "parse_rules",
    "resolve_rule_files",
]

_GROUP_KEYS = {"name", "interval", "limit", "query_offset", "labels", "rules"}
_RULE_KEYS = {
    "record",
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
}
#: perfintel's additions to an alerting rule (besides the kinds' own keys)
_EXTRA_ALERT_KEYS = {"kind", "keep_firing_while"}


class RuleFileError(BadInputError):
    """A rule file that cannot be used: ``file``, 1-based ``line`` (0: unknown) and ``reason``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")


class _Located(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


# --- YAML with line numbers ---------------------------------------------------------------


class YMap(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys are (1-based lines)."""

    line = 0
    lines: dict[str, int]


class YList(list[Any]):
    line = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    out = YMap()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Located(line, f"mapping key {key!r} must be a string")
        if key in out:
            raise _Located(line, f'mapping key "{key}" already defined at line {out.lines[key]}')
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, file: str) -> Any:
    """YAML with line numbers (``YMap``/``YList``); errors as ``RuleFileError``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _Located as exc:
        raise RuleFileError(file, exc.line, exc.reason) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise RuleFileError(file, line, f"invalid YAML: {reason}") from None
    except yaml.YAMLError as exc:
        raise RuleFileError(file, 0, f"invalid YAML: {exc}") from None


# --- values ------------------------------------------------------------------------------


def _at(node: object) -> int:
    return int(getattr(node, "line", 0))


def _line(node: Mapping[str, Any], key: str) -> int:
    lines = getattr(node, "lines", {})
    return int(lines.get(key, getattr(node, "line", 0)))


def _string_map(node: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = node.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Located(_line(node, key), f"{key} must be a mapping of {what} names to strings")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool | list | dict) or v is None:
            raise _Located(_line(value, k), f"{what} {k!r} must have a string value")
        out[str(k)] = v if isinstance(v, str) else _scalar_text(v)
    return out


def _scalar_text(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _duration(node: Mapping[str, Any], key: str) -> float:
    if key not in node or node[key] is None:
        return 0.0
    try:
        return parse_prometheus_duration_seconds(node[key])
    except ValueError as exc:
        raise _Located(_line(node, key), str(exc)) from None


def _check_expr(expr: str, line: int) -> None:
    from perfintel.query.promql.engine import parse

    try:
        parse(expr)
    except BadInputError as exc:
        raise _Located(line, f"could not parse expression: {exc}") from None


def _check_templates(
    rule_name: str, values: Mapping[str, str], kind: str, node: Mapping[str, Any], key: str
) -> None:
    sub = node.get(key) or {}
    for k, v in values.items():
        try:
            RuleTemplate(v, f"__alert_{rule_name}")
        except TemplateError as exc:
            raise _Located(_line(sub, k), f"{kind} {k!r}: {exc}") from None


# --- rules and groups --------------------------------------------------------------------


def _rule(node: Any, line: int) -> RuleSpec:
    from perfintel.alerting.rules.kinds import kinds

    if not isinstance(node, Mapping):
        raise _Located(line, "a rule must be a mapping")
    record, alert = node.get("record"), node.get("alert")
    if record not in (None, "") and alert not in (None, ""):
        raise _Located(_at(node), "only one of 'record' and 'alert' must be set")
    if record in (None, "") and alert in (None, ""):
        raise _Located(_at(node), "one of 'record' or 'alert' must be set")
    kind_name = node.get("kind")
    kind = None
    if kind_name is not None:
        if record not in (None, ""):
            raise _Located(_line(node, "kind"), "'kind' is for alerting rules only")
        kind = kinds().get(str(kind_name))
        if kind is None:
            raise _Located(
                _line(node, "kind"),
                f"unknown rule kind {kind_name!r} (known: {', '.join(sorted(kinds()))})",
            )
    allowed = set(_RULE_KEYS)
    if alert not in (None, ""):
        allowed |= _EXTRA_ALERT_KEYS
    if kind is not None:
        allowed |= set(kind.params.model_fields)
    for key in node:
        if key not in allowed:
            hint = ""
            if kind is None and alert not in (None, "") and _is_kind_key(key):
                hint = " (a perfintel rule-kind key: set 'kind')"
            where = "recording rule" if record not in (None, "") else "rule"
            raise _Located(_line(node, key), f"field {key} not found in {where}{hint}")
    name = str(record if record not in (None, "") else alert)
    expr_raw = node.get("expr")
    expr = "" if expr_raw is None else str(expr_raw).strip()
    labels = _string_map(node, "labels", "label")
    annotations = _string_map(node, "annotations", "annotation")
    for k in labels:
        if not LABEL_NAME_RE.match(k) or k == "__name__":
            raise _Located(_line(node["labels"], k), f"invalid label name: {k}")
    for k in annotations:
        if not LABEL_NAME_RE.match(k):
            raise _Located(_line(node["annotations"], k), f"invalid annotation name: {k}")
    if record not in (None, ""):
        for key in ("annotations", "for", "keep_firing_for"):
            if key in node and node[key] not in (None, {}, 0, "0", "0s"):
                raise _Located(_line(node, key), f"invalid field '{key}' in recording rule")
        if not METRIC_NAME_RE.match(name):
            raise _Located(_line(node, "record"), f"invalid recording rule name: {name}")
        if not expr:
            raise _Located(_at(node), "field 'expr' must be set in rule")
        _check_expr(expr, _line(node, "expr"))
        return RuleSpec(RECORD, name, expr, labels=labels, line=_at(node))
    for_s = _duration(node, "for")
    keep_for = _duration(node, "keep_firing_for")
    keep_while = str(node.get("keep_firing_while") or "").strip()
    if keep_while:
        _check_expr(keep_while, _line(node, "keep_firing_while"))
    _check_templates(name, labels, "label", node, "labels")
    _check_templates(name, annotations, "annotation", node, "annotations")
    if kind is None:
        if not expr:
            raise _Located(_at(node), "field 'expr' must be set in rule")
        _check_expr(expr, _line(node, "expr"))
        return RuleSpec(
            ALERT, name, expr, for_s, keep_for, keep_while, labels, annotations, None, _at(node)
        )
    raw = {k: v for k, v in node.items() if k in kind.params.model_fields}
    try:
        params: BaseModel = kind.params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "kind"
        line_no = _line(node, key) if key in node else _line(node, "kind")
        where = ".".join(str(p) for p in err["loc"])
        msg = "required" if err["type"] == "missing" else err["msg"]
        raise _Located(line_no, f"{kind.name} rule: {where}: {msg}") from None
    for key, text in kind.expressions(params):
        _check_expr(text, _line(node, key))
    return RuleSpec(
        kind.name, name, expr, for_s, keep_for, keep_while, labels, annotations, params, _at(node)
    )


def _is_kind_key(key: str) -> bool:
    from perfintel.alerting.rules.kinds import kinds

    return any(key in k.params.model_fields for k in kinds().values())


def _group(node: Any, line: int, file: str) -> GroupSpec:
    if not isinstance(node, Mapping):
        raise _Located(line, "a group must be a mapping")
    for key in node:
        if key not in _GROUP_KEYS:
            raise _Located(_line(node, key), f"field {key} not found in rule group")
    name = node.get("name")
    if name in (None, ""):
        raise _Located(_at(node), "Groupname must not be empty")
    interval = None
    if node.get("interval") is not None:
        interval = _duration(node, "interval")
        if interval <= 0:
            interval = None
    limit = node.get("limit") or 0
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise _Located(_line(node, "limit"), f"limit must be a non-negative integer, got {limit!r}")
    labels = _string_map(node, "labels", "label")
    for k in labels:
        if not LABEL_NAME_RE.match(k) or k == "__name__":
            raise _Located(_line(node["labels"], k), f"invalid label name: {k}")
    rules_node = node.get("rules")
    if rules_node is None:
        rules_node = YList()
    if not isinstance(rules_node, list):
        raise _Located(_line(node, "rules"), "rules must be a list")
    lines = getattr(rules_node, "lines", [line] * len(rules_node))
    rules = []
    for i, r in enumerate(rules_node):
        try:
            rules.append(_rule(r, lines[i]))
        except _Located as exc:
            rule_name = ""
            if isinstance(r, Mapping):
                rule_name = str(r.get("alert") or r.get("record") or "")
            raise _Located(
                exc.line, f'group "{name}", rule {i + 1}, "{rule_name}": {exc.reason}'
            ) from None
    source = yaml.safe_dump(_plain(node), sort_keys=False, allow_unicode=True)
    return GroupSpec(
        str(name),
        file,
        tuple(rules),
        interval,
        int(limit),
        _duration(node, "query_offset"),
        labels,
        _at(node),
        source,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_rules(text: str, file: str) -> list[GroupSpec]:
    """The groups of one rule file's text (``file`` names it in errors and in the groups)."""
    doc = load_yaml(text, file)
    if doc is None:
        return []
    try:
        if not isinstance(doc, Mapping):
            raise _Located(1, "a rule file must be a mapping with a 'groups' list")
        for key in doc:
            if key != "groups":
                raise _Located(_line(doc, key), f"field {key} not found in rule file")
        groups_node = doc.get("groups") or YList()
        if not isinstance(groups_node, list):
            raise _Located(_line(doc, "groups"), "groups must be a list")
        lines = getattr(groups_node, "lines", [1] * len(groups_node))
        out: list[GroupSpec] = []
        seen: dict[str, int] = {}
        for i, g in enumerate(groups_node):
            group = _group(g, lines[i], file)
            if group.name in seen:
                raise _Located(
                    group.line, f'groupname: "{group.name}" is repeated in the same file'
                )
            seen[group.name] = group.line
            out.append(group)
        return out
    except _Located as exc:
        raise RuleFileError(file, exc.line, exc.reason) from None


def parse_group(text: str, file: str) -> GroupSpec:
    """One group given on its own (the rules API's body): a mapping with ``name`` and ``rules``."""
    doc = load_yaml(text, file)
    try:
        if not isinstance(doc, Mapping):
            raise _Located(1, "a rule group must be a mapping with 'name' and 'rules'")
        return _group(doc, _at(doc), file)
    except _Located as exc:
        raise RuleFileError(file, exc.line, exc.reason) from None


def load_rule_file(path: str | Path) -> list[GroupSpec]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(str(p), 0, f"cannot read: {exc}") from None
    return parse_rules(text, str(p))


def resolve_rule_files(patterns: Iterable[str], base: Path | None = None) -> list[Path]:
    """Paths named by ``patterns`` (paths or globs), sorted and without repeats.

    A plain path that does not exist is an error (a typo must not silently
    load no rules); a glob may match nothing.
    """
    out: list[Path] = []
    for pattern in patterns:
        full = (
            str(base / pattern) if base is not None and not Path(pattern).is_absolute() else pattern
        )
        if glob.has_magic(full):
            out.extend(
                Path(p) for p in sorted(glob.glob(full, recursive=True)) if Path(p).is_file()
            )
        else:
            if not Path(full).is_file():
                raise RuleFileError(full, 0, "no such rule file")
            out.append(Path(full))
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def load_rule_files(patterns: Iterable[str]) -> list[GroupSpec]:
    """Every group of every file; the first error refuses the whole set."""
    groups: list[GroupSpec] = []
    for path in resolve_rule_files(patterns):
        groups.extend(load_rule_file(path))
    return groups
