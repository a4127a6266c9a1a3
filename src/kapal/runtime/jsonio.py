"""JSON through the C accelerator `_json` alone.

`import json` costs ~6 ms on the runtime's start path because json.decoder
imports `re` (and `re` imports enum). The C scanner and encoder in `_json`
need neither; they only need a context object with the decoder's settings.
Behaviour matches `json.loads` / `json.dumps(obj, separators=(",", ":"))`.
"""

from __future__ import annotations

import _json

from kapal.errors import Invalid

_WHITESPACE = " \t\n\r"


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _DecoderContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict = {}


_scan = _json.make_scanner(_DecoderContext())


def loads(text: str | bytes, what: str = "JSON") -> object:
    """Parse one JSON document; errors name `what` and the position."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Invalid(f"{what}: not UTF-8 ({e})") from e
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise Invalid(f"{what}: invalid JSON at {_where(text, e.value)}") from None
    except (ValueError, SystemError):
        # The scanner raises json.decoder.JSONDecodeError, importing it on the way (and fails if it was not
        # imported yet): let the json module find and word the error.
        import json

        try:
            json.loads(text)
        except ValueError as e:
            raise Invalid(f"{what}: invalid JSON: {e}") from None
        raise
    if text[end:].strip(_WHITESPACE):
        raise Invalid(f"{what}: extra data after the JSON value at {_where(text, end)}")
    return value


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"


def _default(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def dumps(obj: object, indent: int | None = None) -> str:
    """Compact JSON, or indented with `indent` spaces (runc prints state indented)."""
    if indent is None:
        return "".join(_encode(obj, 0))
    return "".join(_pretty(obj, indent, 0))


def _pretty(obj: object, indent: int, level: int) -> list[str]:
    if isinstance(obj, dict) and obj:
        pad = "\n" + " " * (indent * (level + 1))
        parts = ["{"]
        for i, (key, value) in enumerate(obj.items()):
            parts.append(("," if i else "") + pad + _json.encode_basestring_ascii(str(key)) + ": ")
            parts.extend(_pretty(value, indent, level + 1))
        parts.append("\n" + " " * (indent * level) + "}")
        return parts
    if isinstance(obj, (list, tuple)) and obj:
        pad = "\n" + " " * (indent * (level + 1))
        parts = ["["]
        for i, value in enumerate(obj):
            parts.append(("," if i else "") + pad)
            parts.extend(_pretty(value, indent, level + 1))
        parts.append("\n" + " " * (indent * level) + "]")
        return parts
    return list(_encode(obj, 0))
