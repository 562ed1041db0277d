"""Alertmanager label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

The text forms Alertmanager accepts: a list entry of ``matchers:`` in a route or
inhibit rule (``severity="critical"``, also unquoted ``severity=critical``), a
brace-wrapped list of them (``{a="b", c=~"d|e"}``, the ``filter`` of the API and
``amtool``), and the legacy ``match:``/``match_re:`` maps. Regular expressions
are anchored at both ends, as in Alertmanager; a missing label matches as the
empty string, so ``foo=""`` matches alerts without ``foo``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from perfintel.errors import BadInputError

MatchType = Literal["=", "!=", "=~", "!~"]
_OPS: tuple[MatchType, ...] = ("=~", "!~", "!=", "=")  # longest first
_NAME = re.compile(r"[^\s{}!=~,\\\"'`]+")


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: MatchType
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_re", re.compile(f"(?:{self.value})\\Z", re.S))
            except re.error as exc:
                raise BadInputError(f"matcher {self}: invalid regular expression: {exc}") from None

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def matches_value(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self._re.match(value) is not None  # type: ignore[attr-defined]
        return hit if self.op == "=~" else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'

    def to_api(self) -> dict[str, object]:
        """The API v2 shape (``isRegex``, ``isEqual``)."""
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, object]) -> LabelMatcher:
        name, value = data.get("name"), data.get("value")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise BadInputError("a matcher needs a non-empty string 'name' and a string 'value'")
        regex = bool(data.get("isRegex", False))
        equal = bool(data.get("isEqual", True))
        op: MatchType = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        return cls(name, op, value)


def matches_all(matchers: Iterable[LabelMatcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse_matcher(text: str) -> LabelMatcher:
    """One matcher, e.g. ``severity=~"crit|warn"`` or ``team=ops``."""
    s = text.strip()
    m = _NAME.match(s)
    if not m:
        raise BadInputError(f"matcher {text!r}: expected a label name first")
    name = m.group(0)
    rest = s[m.end() :].lstrip()
    for op in _OPS:
        if rest.startswith(op):
            raw = rest[len(op) :].strip()
            break
    else:
        raise BadInputError(f"matcher {text!r}: expected one of = != =~ !~ after {name!r}")
    value = _unquote(raw, text)
    return LabelMatcher(name, op, value)


def parse_matchers(text: str) -> list[LabelMatcher]:
    """A brace-wrapped or bare, comma-separated list of matchers."""
    s = text.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise BadInputError(f"matchers {text!r}: missing closing brace")
        s = s[1:-1]
    return [parse_matcher(part) for part in _split(s, text) if part.strip()]


def from_legacy(match: Mapping[str, str], match_re: Mapping[str, str]) -> list[LabelMatcher]:
    """Alertmanager's deprecated ``match`` / ``match_re`` maps as matchers."""
    out = [LabelMatcher(k, "=", str(v)) for k, v in match.items()]
    out += [LabelMatcher(k, "=~", str(v)) for k, v in match_re.items()]
    return out


def format_matchers(matchers: Sequence[LabelMatcher]) -> str:
    return "{" + ",".join(str(m) for m in matchers) + "}"


def _unquote(raw: str, text: str) -> str:
    if not raw.startswith('"'):
        if '"' in raw:
            raise BadInputError(f"matcher {text!r}: stray quote in value")
        return raw
    if len(raw) < 2 or not raw.endswith('"'):
        raise BadInputError(f"matcher {text!r}: unterminated quoted value")
    out: list[str] = []
    body = raw[1:-1]
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            raise BadInputError(f"matcher {text!r}: unescaped quote inside the value")
        out.append(c)
        i += 1
    return "".join(out)


def _split(s: str, text: str) -> list[str]:
    """Split on commas outside quoted values."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    escaped = False
    for c in s:
        if escaped:
            cur.append(c)
            escaped = False
            continue
        if c == "\\" and quoted:
            cur.append(c)
            escaped = True
            continue
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    if quoted:
        raise BadInputError(f"matchers {text!r}: unterminated quoted value")
    parts.append("".join(cur))
    return parts
