"""A safe subset of Go's ``text/template``, as Prometheus uses it in rule labels and annotations.

Prometheus expands alert labels and annotations with Go templates, so rule
files are full of ``{{ $labels.instance }}`` and ``{{ $value | humanize }}``.
This module parses and runs those templates without Go and without any way
out of the sandbox: no method calls, no I/O, no ``query``.

What is supported
-----------------
* Text with actions ``{{ pipeline }}``, trim markers ``{{-`` / ``-}}`` and
  comments ``{{/* ... */}}``.
* Pipelines: commands joined by ``|`` (the previous result becomes the last
  argument of the next command); operands are ``.`` and field chains
  (``.Labels.job``), variables (``$``, ``$labels``, ``$labels.job``),
  string (``"..."``, ```...```), number, ``true``/``false``/``nil`` literals
  and parenthesised pipelines.
* Variables: ``{{ $x := pipeline }}`` and ``{{ $x = pipeline }}``, scoped to
  the enclosing block as in Go.
* Control: ``if`` / ``else if`` / ``else`` / ``end``, ``with`` / ``else`` /
  ``end``, ``range`` (over a map in key order, or a list; with ``$v :=`` or
  ``$k, $v :=``) / ``else`` / ``end``.
* Go's built-ins: ``and or not len index print printf println eq ne lt le
  gt ge html js urlquery``; Prometheus's: ``humanize humanize1024
  humanizeDuration humanizePercentage humanizeTimestamp toUpper toLower
  title reReplaceAll match stripPort stripDomain parseDuration
  safeHtml toTime``, ``externalURL`` and ``pathPrefix``.

The data of a rule template is Prometheus's: ``.Labels``, ``.ExternalLabels``,
``.ExternalURL``, ``.Value``, with ``$labels``, ``$externalLabels``,
``$externalURL`` and ``$value`` predeclared; perfintel's rule kinds add
``.Explanation`` / ``$explanation`` (the structured evidence of the alert).

Differences from Go, on purpose: numbers compare across int and float
(``gt $value 80`` works; Go refuses to compare 80 with a float), and a
missing map key gives ``""`` (Prometheus's ``missingkey=zero``).

Errors (:class:`TemplateError`) say where: ``<name>:<line>:<col>: <reason>``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from perfintel.alerting.rules.template_funcs import FUNCS, TemplateError, go_string, truth

__all__ = ["Template", "TemplateError", "expand", "go_string"]


# --- lexing -------------------------------------------------------------------------------


@dataclass
class _Tok:
    kind: str  # string number ident field var dot lparen rparen pipe assign declare comma bool nil
    text: str
    pos: int


_ACTION_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<dot>\.)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<pipe>\|)
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


def _lex_action(text: str, base: int, where: Callable[[int], str]) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        m = _ACTION_TOKEN.match(text, i)
        if m is None:
            raise TemplateError(f"{where(base + i)}: unexpected {text[i]!r} in action")
        kind = m.lastgroup or ""
        tok = m.group()
        if kind != "space":
            if kind in ("string", "raw", "char"):
                kind = "string"
            elif kind == "ident" and tok in ("true", "false"):
                kind = "bool"
            elif kind == "ident" and tok == "nil":
                kind = "nil"
            # A field chain right after an operand (``$x.a``, ``(...).a``) is glued to it.
            if kind == "field" and out and i > 0 and text[i - 1] not in " \t\r\n(|":
                prev = out[-1]
                if prev.kind in ("var", "rparen"):
                    out.append(_Tok("chain", tok, base + i))
                    i = m.end()
                    continue
            out.append(_Tok(kind, tok, base + i))
        i = m.end()
    return out


# --- the parse tree -----------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Operand:
    kind: str  # literal field var pipe ident
    value: Any = None
    chain: tuple[str, ...] = ()
    pos: int = 0


@dataclass
class _Command:
    args: list[_Operand]
    pos: int


@dataclass
class _Pipeline:
    decl: list[str]
    assign: bool  # "=" rather than ":="
    cmds: list[_Command]
    pos: int


@dataclass
class _Action:
    pipe: _Pipeline


@dataclass
class _Branch:
    kind: str  # if with range
    pipe: _Pipeline
    body: list[Any]
    else_body: list[Any] | None = None


@dataclass
class _Parser:
    src: str
    name: str
    line_starts: list[int] = field(default_factory=list)

    def where(self, pos: int) -> str:
        import bisect

        if not self.line_starts:
            self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.src)]
        line = bisect.bisect_right(self.line_starts, pos)
        col = pos - self.line_starts[line - 1] + 1
        return f"{self.name}:{line}:{col}"

    def fail(self, pos: int, reason: str) -> TemplateError:
        return TemplateError(f"{self.where(pos)}: {reason}")

    # -- splitting text and actions --
    def items(self) -> Iterator[tuple[str, str, int]]:
        """Yield ``("text", s, pos)`` and ``("action", s, pos)`` with trim markers applied."""
        src, i, pending_trim = self.src, 0, False
        while True:
            j = src.find("{{", i)
            if j < 0:
                text = src[i:]
                if pending_trim:
                    text = text.lstrip(" \t\r\n")
                if text:
                    yield "text", text, i
                return
            text = src[i:j]
            if pending_trim:
                text = text.lstrip(" \t\r\n")
            start = j + 2
            if (
                src.startswith("- ", start)
                or src.startswith("-\t", start)
                or src.startswith("-\n", start)
            ):
                text = text.rstrip(" \t\r\n")
                start += 1
            if text:
                yield "text", text, i
            if src[start:].lstrip(" \t\r\n").startswith("/*"):
                end_c = src.find("*/", start)
                if end_c < 0:
                    raise self.fail(j, "unclosed comment")
                close = src.find("}}", end_c)
                if close < 0:
                    raise self.fail(j, "unclosed action")
                pending_trim = src[end_c + 2 : close].strip() == "-"
                i = close + 2
                continue
            close = self._close(start, j)
            body = src[start:close]
            pending_trim = False
            if body.endswith(" -") or body.endswith("\t-") or body.endswith("\n-"):
                body = body[:-1]
                pending_trim = True
            yield "action", body, start
            i = close + 2

    def _close(self, start: int, opened: int) -> int:
        """Index of the ``}}`` ending the action at ``start`` (skipping quoted strings)."""
        src, i = self.src, start
        while i < len(src):
            c = src[i]
            if c in "\"'`":
                end = i + 1
                while end < len(src) and src[end] != c:
                    end += 2 if src[end] == "\\" and c != "`" else 1
                if end >= len(src):
                    raise self.fail(i, "unterminated quoted string")
                i = end + 1
                continue
            if src.startswith("}}", i):
                return i
            i += 1
        raise self.fail(opened, "unclosed action")

    # -- structure --
    def parse(self) -> list[Any]:
        stack: list[tuple[_Branch | None, list[Any], int]] = [(None, [], 0)]
        for kind, text, pos in self.items():
            body = stack[-1][1]
            if kind == "text":
                body.append(_Text(text))
                continue
            toks = _lex_action(text, pos, self.where)
            if not toks:
                raise self.fail(pos, "missing value for command")
            head = toks[0]
            word = head.text if head.kind == "ident" else ""
            if word in ("if", "with", "range"):
                branch = _Branch(word, self._pipeline(toks[1:], pos, allow_decl=True), [])
                body.append(branch)
                stack.append((branch, branch.body, pos))
            elif word == "else":
                top = stack[-1][0]
                if top is None or top.else_body is not None:
                    raise self.fail(pos, "unexpected {{else}}")
                top.else_body = []
                if len(toks) > 1 and toks[1].kind == "ident" and toks[1].text in ("if", "with"):
                    # ``else if`` / ``else with``: a nested branch that the same ``end`` closes.
                    nested = _Branch(toks[1].text, self._pipeline(toks[2:], pos, True), [])
                    top.else_body.append(nested)
                    stack[-1] = (top, top.else_body, stack[-1][2])
                    stack.append((nested, nested.body, -1))  # -1: closed by the parent's end
                elif len(toks) > 1:
                    raise self.fail(pos, "unexpected tokens after else")
                else:
                    stack[-1] = (top, top.else_body, stack[-1][2])
            elif word == "end":
                if len(toks) > 1:
                    raise self.fail(pos, "unexpected tokens after end")
                if stack[-1][0] is None:
                    raise self.fail(pos, "unexpected {{end}}")
                while stack[-1][2] == -1:
                    stack.pop()
                stack.pop()
            elif word in ("define", "template", "block", "break", "continue"):
                raise self.fail(pos, f"{{{{{word}}}}} is not supported in rule templates")
            else:
                body.append(_Action(self._pipeline(toks, pos, allow_decl=True)))
        open_branch = stack[-1][0]
        if open_branch is not None:
            raise self.fail(
                len(self.src), f"unexpected EOF: {{{{{open_branch.kind}}}}} without {{{{end}}}}"
            )
        return stack[0][1]

    def _pipeline(self, toks: list[_Tok], pos: int, allow_decl: bool) -> _Pipeline:
        decl: list[str] = []
        assign = False
        if allow_decl and toks and toks[0].kind == "var":
            k = 1
            names = [toks[0].text]
            if len(toks) > 2 and toks[1].kind == "comma" and toks[2].kind == "var":
                names.append(toks[2].text)
                k = 3
            if len(toks) > k and toks[k].kind in ("declare", "assign"):
                decl, assign = names, toks[k].kind == "assign"
                toks = toks[k + 1 :]
        if not toks:
            raise self.fail(pos, "missing value for command")
        cmds: list[_Command] = []
        args: list[_Operand] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "pipe":
                if not args:
                    raise self.fail(t.pos, "missing command before |")
                cmds.append(_Command(args, args[0].pos))
                args = []
                i += 1
                continue
            op, i = self._operand(toks, i)
            args.append(op)
        if not args:
            raise self.fail(pos, "missing command after |")
        cmds.append(_Command(args, args[0].pos))
        return _Pipeline(decl, assign, cmds, pos)

    def _operand(self, toks: list[_Tok], i: int) -> tuple[_Operand, int]:
        t = toks[i]
        if t.kind == "string":
            return _Operand("literal", _unquote(t.text, self.fail, t.pos), pos=t.pos), i + 1
        if t.kind == "number":
            return _Operand("literal", _number(t.text, self.fail, t.pos), pos=t.pos), i + 1
        if t.kind == "bool":
            return _Operand("literal", t.text == "true", pos=t.pos), i + 1
        if t.kind == "nil":
            return _Operand("literal", None, pos=t.pos), i + 1
        if t.kind == "dot":
            return _Operand("field", None, (), t.pos), i + 1
        if t.kind == "field":
            return _Operand("field", None, tuple(t.text[1:].split(".")), t.pos), i + 1
        if t.kind == "var":
            chain: tuple[str, ...] = ()
            if i + 1 < len(toks) and toks[i + 1].kind == "chain":
                chain = tuple(toks[i + 1].text[1:].split("."))
                i += 1
            return _Operand("var", t.text, chain, t.pos), i + 1
        if t.kind == "ident":
            return _Operand("ident", t.text, pos=t.pos), i + 1
        if t.kind == "lparen":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise self.fail(t.pos, "unclosed left paren")
            inner = self._pipeline(toks[i + 1 : j - 1], t.pos, allow_decl=False)
            chain = ()
            if j < len(toks) and toks[j].kind == "chain":
                chain = tuple(toks[j].text[1:].split("."))
                j += 1
            return _Operand("pipe", inner, chain, t.pos), j
        raise self.fail(t.pos, f"unexpected {t.text!r} in operand")


def _unquote(text: str, fail: Callable[[int, str], TemplateError], pos: int) -> str:
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise fail(pos, f"invalid string {text}: {exc}") from None


def _number(text: str, fail: Callable[[int, str], TemplateError], pos: int) -> int | float:
    t = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?\d+", t) or t.lower().lstrip("+-").startswith("0x"):
            return int(t, 0)
        return float(t)
    except ValueError:
        raise fail(pos, f"bad number syntax: {text!r}") from None


# --- running ------------------------------------------------------------------------------


_MISSING = object()


class _Scope:
    def __init__(self, parent: _Scope | None = None) -> None:
        self.vars: dict[str, object] = {}
        self.parent = parent

    def get(self, name: str) -> object:
        s: _Scope | None = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return _MISSING

    def set_existing(self, name: str, value: object) -> bool:
        s: _Scope | None = self
        while s is not None:
            if name in s.vars:
                s.vars[name] = value
                return True
            s = s.parent
        return False


class Template:
    """A parsed template; :meth:`render` runs it on data (a mapping) with predeclared variables."""

    def __init__(self, source: str, name: str = "template", funcs: Mapping[str, Any] | None = None):
        self.source, self.name = source, name
        self._parser = _Parser(source, name)
        self.funcs = dict(FUNCS)
        if funcs:
            self.funcs.update(funcs)
        self.tree = self._parser.parse()
        self._check_idents(self.tree)

    def _check_idents(self, nodes: list[Any]) -> None:
        for node in nodes:
            pipes: list[_Pipeline] = []
            if isinstance(node, _Action):
                pipes.append(node.pipe)
            elif isinstance(node, _Branch):
                pipes.append(node.pipe)
                self._check_idents(node.body)
                if node.else_body:
                    self._check_idents(node.else_body)
            for p in pipes:
                self._check_pipe(p)

    def _check_pipe(self, p: _Pipeline) -> None:
        for cmd in p.cmds:
            for op in cmd.args:
                if op.kind == "ident" and op.value not in self.funcs:
                    raise self._parser.fail(op.pos, f'function "{op.value}" not defined')
                if op.kind == "pipe":
                    self._check_pipe(op.value)

    def render(
        self, data: Mapping[str, object], variables: Mapping[str, object] | None = None
    ) -> str:
        scope = _Scope()
        scope.vars["$"] = data
        for k, v in (variables or {}).items():
            scope.vars[k if k.startswith("$") else "$" + k] = v
        out: list[str] = []
        self._run(self.tree, data, scope, out)
        return "".join(out)

    # -- execution --
    def _run(self, nodes: list[Any], dot: object, scope: _Scope, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(go_string(value))
            else:
                self._branch(node, dot, scope, out)

    def _branch(self, node: _Branch, dot: object, scope: _Scope, out: list[str]) -> None:
        inner = _Scope(scope)
        if node.kind == "range":
            decl = node.pipe.decl
            value = self._pipe(_Pipeline([], False, node.pipe.cmds, node.pipe.pos), dot, inner)
            items: list[tuple[object, object]]
            if isinstance(value, Mapping):
                items = [(k, value[k]) for k in sorted(value, key=str)]
            elif isinstance(value, list | tuple):
                items = list(enumerate(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                items = [(i, i) for i in range(value)]
            elif value is None:
                items = []
            else:
                raise self._parser.fail(
                    node.pipe.pos, f"range can't iterate over {go_string(value)}"
                )
            if not items:
                if node.else_body is not None:
                    self._run(node.else_body, dot, _Scope(scope), out)
                return
            for k, v in items:
                it = _Scope(scope)
                if len(decl) == 1:
                    it.vars[decl[0]] = v
                elif len(decl) == 2:
                    it.vars[decl[0]], it.vars[decl[1]] = k, v
                self._run(node.body, v, it, out)
            return
        value = self._pipe(node.pipe, dot, inner)
        if truth(value):
            self._run(node.body, value if node.kind == "with" else dot, inner, out)
        elif node.else_body is not None:
            self._run(node.else_body, dot, _Scope(scope), out)

    def _pipe(self, p: _Pipeline, dot: object, scope: _Scope) -> object:
        value: object = _MISSING
        for cmd in p.cmds:
            value = self._command(cmd, dot, scope, value)
        if p.decl:
            if p.assign:
                if not scope.set_existing(p.decl[0], value):
                    raise self._parser.fail(p.pos, f"undefined variable: {p.decl[0]}")
            else:
                scope.vars[p.decl[-1]] = value
        return value

    def _command(self, cmd: _Command, dot: object, scope: _Scope, piped: object) -> object:
        first = cmd.args[0]
        if first.kind == "ident":
            fn = self.funcs[first.value]
            args = [self._operand(a, dot, scope) for a in cmd.args[1:]]
            if piped is not _MISSING:
                args.append(piped)
            try:
                return fn(*args)
            except TypeError as exc:
                raise self._parser.fail(
                    first.pos, f"error calling {first.value}: wrong arguments ({exc})"
                ) from None
            except (TemplateError, ValueError, ArithmeticError, KeyError, IndexError) as exc:
                raise self._parser.fail(first.pos, f"error calling {first.value}: {exc}") from None
        if len(cmd.args) > 1 or piped is not _MISSING:
            raise self._parser.fail(first.pos, "can't give argument to non-function")
        return self._operand(first, dot, scope)

    def _operand(self, op: _Operand, dot: object, scope: _Scope) -> object:
        if op.kind == "literal":
            return op.value
        if op.kind == "ident":
            try:
                return self.funcs[op.value]()
            except TypeError:
                raise self._parser.fail(op.pos, f"function {op.value} needs arguments") from None
        if op.kind == "field":
            base: object = dot
        elif op.kind == "var":
            base = scope.get(op.value)
            if base is _MISSING:
                raise self._parser.fail(op.pos, f"undefined variable: {op.value}")
        else:
            base = self._pipe(op.value, dot, scope)
        for name in op.chain:
            if isinstance(base, Mapping):
                base = base.get(name, "")
            elif base is None or base == "":
                raise self._parser.fail(op.pos, f"nil pointer evaluating .{name}")
            else:
                raise self._parser.fail(
                    op.pos, f"can't evaluate field {name} in type {type(base).__name__}"
                )
        return base


def expand(
    source: str,
    name: str,
    labels: Mapping[str, str],
    value: float,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    explanation: Mapping[str, object] | None = None,
) -> str:
    """Expand one rule template the way Prometheus does (raises ``TemplateError``)."""
    if "{{" not in source:
        return source
    return compile_template(source, name, external_url).render(
        template_data(labels, value, external_labels, external_url, explanation)
    )


def template_data(
    labels: Mapping[str, str],
    value: float,
    external_labels: Mapping[str, str] | None,
    external_url: str,
    explanation: Mapping[str, object] | None = None,
) -> dict[str, object]:
    return {
        "Labels": dict(labels),
        "ExternalLabels": dict(external_labels or {}),
        "ExternalURL": external_url,
        "Value": float(value),
        "Explanation": dict(explanation or {}),
    }


#: Prometheus prepends these definitions to every rule template.
PRELUDE_VARS = {
    "$labels": "Labels",
    "$externalLabels": "ExternalLabels",
    "$externalURL": "ExternalURL",
    "$value": "Value",
    "$explanation": "Explanation",
}


class RuleTemplate:
    """A compiled rule template: ``render(data)`` with Prometheus's predeclared variables."""

    def __init__(self, source: str, name: str, external_url: str = "") -> None:
        self.source = source
        self.plain = "{{" not in source
        self.template = (
            None
            if self.plain
            else Template(
                source,
                name,
                {
                    "externalURL": lambda: external_url,
                    "pathPrefix": lambda: _path_prefix(external_url),
                },
            )
        )

    def render(self, data: Mapping[str, object]) -> str:
        if self.template is None:
            return self.source
        return self.template.render(data, {k: data[v] for k, v in PRELUDE_VARS.items()})


def _path_prefix(url: str) -> str:
    return urllib.parse.urlparse(url).path.rstrip("/")


_CACHE: dict[tuple[str, str, str], RuleTemplate] = {}


def compile_template(source: str, name: str, external_url: str = "") -> RuleTemplate:
    """A cached :class:`RuleTemplate` (rule files repeat the same few templates)."""
    key = (source, name, external_url)
    t = _CACHE.get(key)
    if t is None:
        if len(_CACHE) > 10_000:
            _CACHE.clear()
        t = _CACHE[key] = RuleTemplate(source, name, external_url)
    return t
