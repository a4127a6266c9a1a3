"""A subset of Go's text/template, as `docker --format` uses it, over JSON-like data.

Supported: text and `{{ }}` actions with `-` trimming; `.`, `.A.B`, `$`, `$.A`;
string, number and bool literals; pipelines (`.X | json`); `range`, `if`,
`with` (each with `else`) and `end`; functions `index len json join printf
print println upper lower title split eq ne lt le gt ge not and or`.
Anything else is an error by name: a template is never echoed back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kapal.errors import Invalid

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s()|]+)')


class TemplateError(Invalid):
    pass


@dataclass
class _Node:
    kind: str  # text | action | range | if | with
    text: str = ""
    pipeline: list = field(default_factory=list)
    body: list = field(default_factory=list)
    orelse: list = field(default_factory=list)


def _tokenize(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise TemplateError(f"template: bad syntax near {expr[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _parse_pipeline(tokens: list[str]) -> list:
    """A pipeline is a list of commands; a command is a list of operands (str token or nested pipeline)."""
    commands: list[list] = [[]]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "|":
            commands.append([])
        elif tok == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            if depth:
                raise TemplateError("template: unclosed left paren")
            commands[-1].append(_parse_pipeline(tokens[i + 1 : j - 1]))
            i = j
            continue
        else:
            commands[-1].append(tok)
        i += 1
    if any(not c for c in commands):
        raise TemplateError("template: missing command in pipeline")
    return commands


def parse(text: str) -> list[_Node]:
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos : m.start()]
        if m.group(1):
            literal = literal.rstrip()
        if pieces and pieces[-1][0] == "trim":
            literal = literal.lstrip()
            pieces.pop()
        pieces.append(("text", literal))
        pieces.append(("action", m.group(2)))
        if m.group(3):
            pieces.append(("trim", ""))
        pos = m.end()
    tail = text[pos:]
    if pieces and pieces[-1][0] == "trim":
        tail = tail.lstrip()
        pieces.pop()
    pieces.append(("text", tail))
    if "{{" in tail:
        raise TemplateError("template: unclosed action")
    root: list[_Node] = []
    stack: list[tuple[_Node, list[_Node]]] = []
    current = root
    for kind, value in pieces:
        if kind == "text":
            if value:
                current.append(_Node("text", text=value))
            continue
        tokens = _tokenize(value)
        if not tokens:
            raise TemplateError("template: missing value for command")
        head = tokens[0]
        if head in ("range", "if", "with"):
            node = _Node(head, pipeline=_parse_pipeline(tokens[1:]))
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif head == "else":
            if not stack:
                raise TemplateError("template: unexpected {{else}}")
            current = stack[-1][0].orelse
        elif head == "end":
            if not stack:
                raise TemplateError("template: unexpected {{end}}")
            _, current = stack.pop()
        elif head.startswith("/*"):
            continue
        else:
            current.append(_Node("action", pipeline=_parse_pipeline(tokens)))
    if stack:
        raise TemplateError(f"template: unexpected EOF: {{{{{stack[-1][0].kind}}}}} has no {{{{end}}}}")
    return root


class _NoValue:
    def __str__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


def go_str(value: Any) -> str:
    """Format a value as Go's fmt %v does for JSON-decoded data."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    if value is None or value is NO_VALUE or value is False:
        return False
    return not (value == 0 or value == "" or value == [] or value == {})


def _printf(fmt: str, *args: Any) -> str:
    out, i, it = [], 0, iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "-+ #0123456789.":
            j += 1
        if j >= len(fmt):
            raise TemplateError("template: printf: bad format")
        verb, flags = fmt[j], fmt[i + 1 : j]
        if verb == "%":
            out.append("%")
        else:
            arg = next(it, NO_VALUE)
            if verb in "sv":
                out.append(("%" + flags + "s") % go_str(arg))
            elif verb == "q":
                out.append(json.dumps(go_str(arg)))
            elif verb == "d":
                out.append(("%" + flags + "d") % int(arg))
            elif verb in "fgex":
                out.append(("%" + flags + verb) % arg)
            else:
                raise TemplateError(f"template: printf verb %{verb} is not supported")
        i = j + 1
    return "".join(out)


def _cmp(op):
    def f(a, b, *more):
        if op == "eq" and more:
            return any(a == x for x in (b, *more))
        return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]

    return f


def _index(value, *keys):
    for k in keys:
        if isinstance(value, dict):
            value = value.get(k, NO_VALUE)
        elif isinstance(value, (list, tuple)):
            value = value[int(k)]
        else:
            raise TemplateError(f"template: can't index item of type {type(value).__name__}")
    return value


def _len(value):
    if value is None or value is NO_VALUE:
        raise TemplateError("template: error calling len: len of nil pointer")
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise TemplateError(f"template: error calling len: len of type {type(value).__name__}")


def _json(value):
    return json.dumps(None if value is NO_VALUE else value, separators=(",", ":"))


FUNCS = {
    "index": _index,
    "len": _len,
    "json": _json,
    "join": lambda items, sep: sep.join(go_str(x) for x in (items or [])),
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "split": lambda s, sep: go_str(s).split(sep),
    "not": lambda a: not _truthy(a),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
    **{op: _cmp(op) for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}


class Template:
    def __init__(self, text: str) -> None:
        self.text = text
        self.nodes = parse(text)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, data, out)
        return "".join(out)

    def _run(self, nodes, dot, root, out) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "action":
                out.append(go_str(self._pipe(node.pipeline, dot, root)))
            elif node.kind == "if":
                value = self._pipe(node.pipeline, dot, root)
                self._run(node.body if _truthy(value) else node.orelse, dot, root, out)
            elif node.kind == "with":
                value = self._pipe(node.pipeline, dot, root)
                if _truthy(value):
                    self._run(node.body, value, root, out)
                else:
                    self._run(node.orelse, dot, root, out)
            elif node.kind == "range":
                value = self._pipe(node.pipeline, dot, root)
                items = list(value.values()) if isinstance(value, dict) else value
                if items is NO_VALUE or items is None:
                    items = []
                if not isinstance(items, (list, tuple)):
                    raise TemplateError(f"template: range can't iterate over {go_str(value)}")
                if not items:
                    self._run(node.orelse, dot, root, out)
                for item in items:
                    self._run(node.body, item, root, out)

    def _pipe(self, pipeline, dot, root):
        value: Any = NO_VALUE
        for n, command in enumerate(pipeline):
            extra = [value] if n else []
            value = self._command(command, dot, root, extra)
        return value

    def _command(self, command, dot, root, extra):
        head = command[0]
        if isinstance(head, str) and head in FUNCS:
            args = [self._operand(a, dot, root) for a in command[1:]] + extra
            try:
                return FUNCS[head](*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, IndexError, KeyError) as e:
                raise TemplateError(f"template: error calling {head}: {e}") from e
        if isinstance(head, str) and re.match(r"^[A-Za-z_]\w*$", head) and head not in ("true", "false", "nil"):
            raise TemplateError(f'template: function "{head}" not defined')
        if len(command) > 1 or extra:
            raise TemplateError(f"template: can't give argument to non-function {head}")
        return self._operand(head, dot, root)

    def _operand(self, tok, dot, root):
        if isinstance(tok, list):
            return self._pipe(tok, dot, root)
        if tok == ".":
            return dot
        if tok.startswith(".") or tok.startswith("$"):
            base = root if tok.startswith("$") else dot
            path = tok[1:] if tok.startswith("$") else tok
            for name in [p for p in path.split(".") if p]:
                if isinstance(base, dict):
                    base = base.get(name, NO_VALUE)
                elif base is NO_VALUE or base is None:
                    return NO_VALUE
                else:
                    raise TemplateError(f"template: can't evaluate field {name} in type {type(base).__name__}")
            return base
        if tok.startswith('"'):
            return json.loads(tok)
        if tok.startswith("`"):
            return tok[1:-1]
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "nil":
            return None
        try:
            return int(tok)
        except ValueError:
            pass
        try:
            return float(tok)
        except ValueError:
            pass
        raise TemplateError(f'template: function "{tok}" not defined')


def render(text: str, data: Any) -> str:
    return Template(text).render(data)
