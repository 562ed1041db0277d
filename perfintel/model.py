"""The shared vocabulary: series, labels, samples and matchers.

perfintel uses Prometheus's data model. A *series* is identified by its label
set, which includes the metric name as the ``__name__`` label. A *sample* is a
``(timestamp_ms: int64, value: float64)`` pair. NaN and ±Inf are values like any
other, and the Prometheus staleness marker (a NaN with a specific bit pattern)
is stored bit-exactly so it can be told apart from an ordinary NaN.

``LabelSet`` is a plain tuple of ``(name, value)`` pairs sorted by name: hashable,
cheap, and usable as a dict key on the ingest hot path.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import re2

from perfintel.errors import InvalidSeriesError, ParseError
from perfintel.query_shape import scan

LabelSet = tuple[tuple[str, str], ...]

METRIC_NAME = "__name__"
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Prometheus's staleness marker: a NaN whose payload says "this series ended".
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = float(np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0])

#: Timestamps (milliseconds) and integer values are stored as int64: a wider one is an error.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

MAX_LABEL_VALUE_BYTES = 16 * 1024
MAX_LABELS_PER_SERIES = 64


def is_stale(values: np.ndarray) -> np.ndarray:
    """Elementwise: is this float64 the staleness marker (bit-exact)?"""
    return np.asarray(values, dtype=np.float64).view(np.uint64) == np.uint64(STALE_NAN_BITS)


def label_set(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> LabelSet:
    """Normalise labels into a sorted ``LabelSet``, dropping empty values (as Prometheus does)."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((str(k), str(v)) for k, v in items if v != ""))


def metric_name(labels: LabelSet) -> str:
    for k, v in labels:
        if k == METRIC_NAME:
            return v
    return ""


def validate_label_set(labels: LabelSet) -> None:
    """Raise ``InvalidSeriesError`` naming the first rule the series breaks."""
    name = metric_name(labels)
    if not name:
        raise InvalidSeriesError("series has no metric name (__name__ label)")
    if not METRIC_NAME_RE.match(name):
        raise InvalidSeriesError(
            f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        )
    if len(labels) > MAX_LABELS_PER_SERIES:
        raise InvalidSeriesError(
            f"series {name} has {len(labels)} labels (limit {MAX_LABELS_PER_SERIES})"
        )
    prev = ""
    for k, v in labels:
        if k == prev:
            raise InvalidSeriesError(f"series {name} repeats label {k!r}")
        prev = k
        if k != METRIC_NAME and not LABEL_NAME_RE.match(k):
            raise InvalidSeriesError(
                f"invalid label name {k!r} in series {name}: must match [a-zA-Z_][a-zA-Z0-9_]*"
            )
        if len(v.encode("utf-8", "surrogatepass")) > MAX_LABEL_VALUE_BYTES:
            raise InvalidSeriesError(
                f"label {k!r} of series {name} is longer than {MAX_LABEL_VALUE_BYTES} bytes"
            )


def format_series(labels: LabelSet) -> str:
    """Render as ``name{a="b",...}`` (Prometheus notation)."""
    name = metric_name(labels)
    rest = ",".join(f'{k}="{_escape(v)}"' for k, v in labels if k != METRIC_NAME)
    return f"{name}{{{rest}}}" if rest or not name else name


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MatchOp(enum.Enum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """One label matcher. Regexes are RE2 (linear time) and anchored, as in Prometheus."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            try:
                self._regex  # noqa: B018 - compile early so a bad regex fails at parse time
            except re2.error as exc:
                raise ParseError(
                    f"invalid regular expression {self.value!r} for label {self.name}: {exc}"
                ) from exc

    @cached_property
    def _regex(self) -> re2._Regexp:
        return re2.compile(f"^(?:{self.value})$")

    def matches(self, value: str) -> bool:
        """Does a label value (``""`` when the label is absent) satisfy this matcher?"""
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NE:
            return value != self.value
        hit = self._regex.match(value) is not None
        return hit if self.op is MatchOp.RE else not hit

    @property
    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        return f'{self.name}{self.op.value}"{_escape(self.value)}"'


@dataclass(frozen=True)
class Selector:
    """A series selector: a conjunction of matchers (``{a="b",c=~"d.*"}``)."""

    matchers: tuple[Matcher, ...] = field(default_factory=tuple)

    def matches(self, labels: LabelSet) -> bool:
        d = dict(labels)
        return all(m.matches(d.get(m.name, "")) for m in self.matchers)

    def __str__(self) -> str:
        return "{" + ",".join(str(m) for m in self.matchers) + "}"


_OPS = {"=": MatchOp.EQ, "!=": MatchOp.NE, "=~": MatchOp.RE, "!~": MatchOp.NRE}


def parse_selector(text: str) -> Selector:
    """Parse a Prometheus series selector such as ``http_requests_total{job!="x"}``.

    Raises ``ParseError`` with the parser's message for anything that is not a
    plain selector, and when every matcher would match the empty string
    (Prometheus refuses those: they select every series).
    """
    import promql_parser

    text = text.strip()
    if not text:
        raise ParseError("empty series selector")
    shape = scan(text)
    if shape.brackets > 1 or shape.depth > 2:
        # measured before parsing: deep nesting crashes the parser, and no selector nests
        shown = text if len(text) <= 100 else text[:100] + "…"
        raise ParseError(f"{shown!r} is not a series selector")
    try:
        expr = promql_parser.parse(text)
    except ValueError as exc:
        raise ParseError(f"invalid series selector {text!r}: {exc}") from exc
    if not isinstance(expr, promql_parser.VectorSelector):
        raise ParseError(f"{text!r} is not a series selector")
    if expr.offset is not None or expr.at is not None:
        raise ParseError(f"{text!r} is not a plain series selector (it has offset or @)")
    return Selector(matchers_from_promql(expr))


def matchers_from_promql(expr: object) -> tuple[Matcher, ...]:
    """Matchers of a ``promql_parser.VectorSelector`` (name included as ``__name__``)."""
    out: list[Matcher] = []
    name = getattr(expr, "name", None)
    if name:
        out.append(Matcher(METRIC_NAME, MatchOp.EQ, name))
    for m in expr.matchers.matchers:  # type: ignore[attr-defined]
        op = {"Equal": MatchOp.EQ, "NotEqual": MatchOp.NE, "Re": MatchOp.RE, "NotRe": MatchOp.NRE}[
            str(m.op).rsplit(".", 1)[-1]
        ]
        out.append(Matcher(m.name, op, m.value))
    if not out or all(m.matches_empty for m in out):
        raise ParseError(
            "a selector must contain at least one matcher that does not match the empty string"
        )
    return tuple(out)


def selector_from_pairs(pairs: Sequence[tuple[str, str, str]]) -> Selector:
    return Selector(tuple(Matcher(n, _OPS[o], v) for n, o, v in pairs))
