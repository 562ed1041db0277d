"""The size and nesting of a PromQL text, measured before it is parsed.

Every text that reaches promql-parser is measured here first: PromQL queries
(``perfintel.query.promql.engine.parse``, within the ``query.max_length`` and
``query.max_depth`` settings) and series selectors (``perfintel.model.parse_selector``,
which refuses anything nested deeper than a selector can be). It sits at the
bottom of the layering, beside ``model.py``, so both can use it.

Why before: promql-parser recurses once per nesting level (12,000 nested
parentheses overflow the thread's stack and end the process with SIGSEGV) and
hands each node to Python as a copy of its whole subtree, so its cost grows
with the square of the depth (5,000 parentheses: 2 s and 2 GB; a chain of
3,000 ``1+1+…``: 1 s and 1 GB). The evaluator recurses once per level too.
:func:`check_query` scans the text once, in linear time and constant memory
per level, and refuses what is too long or too deep with
``QueryTooComplexError`` (HTTP 400) naming the limit.

The depth bound. Brackets — ``(``, ``[``, ``{`` — open groups. Inside a group
every binary or unary operator may add a level to the expression tree (a
chain ``a + b + c`` is as deep as it has operators: the parser builds it
left-deep), and every group adds one. So::

    depth(group) = operators directly inside it + 1 + max(depth of the groups inside it)

and the whole text counts as a group; a range or subquery bracket (``x[5m]``,
``(…)[1h:1m]``) also counts as an operator of its group, as it wraps what
precedes it. This is never below the depth of the
tree promql-parser builds (a call, an aggregation, a subquery or a range
selector each sit inside a bracket group of their own), so bounding it bounds
the parser's and the evaluator's recursion. Operators are ``+ - * / % ^``,
the comparisons, and the words ``and``, ``or``, ``unless`` and ``atan2``;
strings (``"…"``, ``'…'``, ````…````, with escapes) and comments (``#`` to
the end of the line) are skipped; inside ``{…}`` (label matchers) nothing is
an operator. Anything unbalanced is left for the parser to report.

>>> scan("sum by (job) (rate(x[5m])) / 2")
QueryShape(length=30, brackets=3, depth=6)
>>> scan("1+1+1+1").depth, scan("((1))").depth, scan('x{a="((("}').brackets
(4, 3, 1)
"""

from __future__ import annotations

from typing import NamedTuple

from perfintel.errors import QueryTooComplexError

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
_OPERATOR_CHARS = set("+-*/%^<>=!")
_OPERATOR_WORDS = {"and", "or", "unless", "atan2"}
_WORD_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_WORD_CHARS = _WORD_START | set("0123456789.")


class QueryShape(NamedTuple):
    """``length`` in characters, ``brackets``: the deepest bracket nesting, ``depth``: the
    bound on the expression tree's depth (see the module docstring)."""

    length: int
    brackets: int
    depth: int


def scan(text: str) -> QueryShape:
    """Measure a PromQL text in one pass (see the module docstring)."""
    # one frame per open group: [closing char, operators in it, deepest child group]
    stack: list[list[object]] = []
    ops, child = 0, 0  # of the group being read
    deepest_brackets = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c in _OPEN:
            if c == "[":
                ops += 1  # x[5m], (…)[5m:1m]: wraps what precedes it, one level more
            stack.append([_OPEN[c], ops, child])
            ops, child = 0, 0
            deepest_brackets = max(deepest_brackets, len(stack))
        elif c in _CLOSE:
            if stack and stack[-1][0] == c:
                inner = ops + 1 + child
                _, ops_outer, child_outer = stack.pop()
                ops, child = int(ops_outer), max(int(child_outer), inner)  # type: ignore[call-overload]
        elif stack and stack[-1][0] == "}":
            pass  # label matchers: =, !=, =~ and !~ are not operators
        elif c in _OPERATOR_CHARS:
            ops += 1
            # two-character operators (==, !=, >=, <=) count once
            if i + 1 < n and text[i + 1] == "=" and c in "=!<>":
                i += 1
        elif c in _WORD_START:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            if text[i:j] in _OPERATOR_WORDS:
                ops += 1
            i = j
            continue
        i += 1
    # unclosed groups: fold them in as if closed here (the parser will refuse the text)
    depth = ops + 1 + child
    while stack:
        _, ops_outer, child_outer = stack.pop()
        depth = int(ops_outer) + 1 + max(int(child_outer), depth)  # type: ignore[call-overload]
    return QueryShape(n, deepest_brackets, depth)


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal opening at ``i`` (or the end of the text)."""
    quote = text[i]
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quote != "`":
            i += 2
            continue
        if c == quote:
            return i + 1
        i += 1
    return n


def check_query(text: str, *, max_length: int, max_depth: int) -> QueryShape:
    """``QueryTooComplexError`` when ``text`` is longer or deeper than allowed; else its shape."""
    if len(text) > max_length:
        raise QueryTooComplexError(
            f"query is {len(text):,} characters long; the limit is {max_length:,} "
            "(setting query.max_length)"
        )
    shape = scan(text)
    if shape.brackets > max_depth:
        raise QueryTooComplexError(
            f"query nests brackets {shape.brackets:,} deep; the limit is {max_depth:,} "
            "(setting query.max_depth)"
        )
    if shape.depth > max_depth:
        raise QueryTooComplexError(
            f"query nests up to {shape.depth:,} levels deep (brackets, function calls and "
            f"chains of operators, such as a+b+c+…); the limit is {max_depth:,} "
            "(setting query.max_depth)"
        )
    return shape
