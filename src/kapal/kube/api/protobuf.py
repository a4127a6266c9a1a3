"""Decode `application/vnd.kubernetes.protobuf` request bodies into the JSON form of the object.

The body is `k8s\\0` followed by a runtime.Unknown envelope {typeMeta{apiVersion, kind}, raw, contentEncoding,
contentType}; `raw` is the object's own message. Field numbers come from protobuf_fields.py, names and types
from the JSON schemas, so one generic walker serves every kind.

Go's encoder writes every non-pointer field, zero or not, and pointer fields only when set. The JSON form
omits zero `omitempty` fields, so zero scalars are dropped unless the table flags the field `!` (a pointer, or
a field JSON always writes): `replicas: 0` survives, `generateName: ""` does not. A zero Time is dropped too
(JSON would say null).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from dataclasses import dataclass
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api import protowire, schemas
from kapal.kube.api.protobuf_fields import MESSAGES

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICRO_TIME = _META + "MicroTime"
_FIELDS_V1 = _META + "FieldsV1"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
_META_KINDS = ("DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions", "Status", "WatchEvent")
_MAX_DEPTH = 64
_WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 5: "fixed32"}


@dataclass(frozen=True)
class _Field:
    name: str
    keep_zero: bool = False
    wrapped_lists: bool = False
    inline: str | None = None  # table key of an inlined message
    value: bool = False  # a Go value (not pointer) field of a named type


def _table_key(definition: str) -> str:
    for prefix in ("io.k8s.api.", "io.k8s.apimachinery.pkg.apis."):
        if definition.startswith(prefix):
            return definition[len(prefix):]
    return definition


@functools.cache
def _table(key: str) -> dict[int, _Field]:
    spec = MESSAGES.get(key)
    if spec is None:
        raise Invalid(f"protobuf: kapal has no field table for {key}; send this object as JSON")
    out: dict[int, _Field] = {}
    for entry in spec.split():
        name, _, rest = entry.partition("=")
        number = int(rest.rstrip("!%="))
        if name.startswith("@"):
            out[number] = _Field("", inline=name[1:])
        else:
            out[number] = _Field(name, keep_zero="!" in rest, wrapped_lists="%" in rest, value="=" in rest)
    return out


@functools.cache
def value_fields(definition: str) -> frozenset[str]:
    """JSON names of a type's Go value (non-pointer) fields of named types, inlined messages included.

    Go's JSON always writes such fields when they are structs (`spec: {}`), which is what upstream's field
    manager compares against on create.
    """
    return _flagged(definition, "value")


@functools.cache
def always_written_fields(definition: str) -> frozenset[str]:
    """JSON names of fields Go writes even when zero (pointers when set, and fields without omitempty).

    A list or map among them is written as `null` in a zero object.
    """
    return _flagged(definition, "keep_zero")


def _flagged(definition: str, flag: str) -> frozenset[str]:
    key = _table_key(definition)
    if key not in MESSAGES:
        return frozenset()
    out: set[str] = set()
    for f in _table(key).values():
        if f.inline:
            out |= _flagged(_inline_definition(f.inline), flag)
        elif getattr(f, flag):
            out.add(f.name)
    return frozenset(out)


def _inline_definition(key: str) -> str:
    prefix = "io.k8s.apimachinery.pkg.apis." if key.startswith("meta.") else "io.k8s.api."
    return prefix + key


@functools.cache
def _kinds() -> dict[tuple[str, str], str]:
    """(apiVersion, kind) → definition name, from the schemas' x-kubernetes-group-version-kind."""
    out: dict[tuple[str, str], str] = {}
    for name, schema in schemas.definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk.get("group") else gvk["version"]
            key = (api_version, gvk["kind"])
            # Prefer the group's own package when several definitions claim a kind.
            if key not in out or _table_key(name) in MESSAGES and _table_key(out[key]) not in MESSAGES:
                out[key] = name
    return out


def definition_for(api_version: str, kind: str) -> str:
    name = _kinds().get((api_version, kind))
    if name is None and kind in _META_KINDS:
        name = _META + kind
    if name is None:
        raise Invalid(f"protobuf: no kind {kind!r} in version {api_version!r}")
    return name


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a `k8s\\0`-framed protobuf object, with apiVersion and kind from the envelope."""
    if not body.startswith(MAGIC):
        raise Invalid("protobuf: the body does not start with the Kubernetes magic bytes k8s\\x00")
    api_version = kind = ""
    raw = b""
    encoding = ""
    for number, wire, value in protowire.fields(body[len(MAGIC):]):
        if number == 1 and wire == protowire.LENGTH:
            for n, w, v in protowire.fields(value):
                if w == protowire.LENGTH and n in (1, 2):
                    text = _text(v, "typeMeta")
                    api_version, kind = (text, kind) if n == 1 else (api_version, text)
        elif number == 2 and wire == protowire.LENGTH:
            raw = value
        elif number == 3 and wire == protowire.LENGTH:
            encoding = _text(value, "contentEncoding")
    if encoding:
        raise Invalid(f"protobuf: content encoding {encoding!r} is not supported")
    if not kind:
        raise Invalid("protobuf: the envelope names no kind (typeMeta.kind is empty)")
    return decode_message(raw, definition_for(api_version, kind), api_version, kind)


def decode_message(raw: bytes, definition: str, api_version: str = "", kind: str = "") -> dict[str, Any]:
    """The JSON form of one object's message (no envelope), typed by its schema definition."""
    out: dict[str, Any] = {}
    if api_version:
        out["apiVersion"] = api_version
    if kind:
        out["kind"] = kind
    try:
        out.update(_message(raw, _table_key(definition), schemas.definition(definition), 0))
    except RecursionError:
        raise Invalid("protobuf: the message nests too deeply") from None
    return out


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise Invalid(f"protobuf: {what} is not valid UTF-8") from None


def _message(data: bytes, key: str, schema: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise Invalid("protobuf: the message nests too deeply")
    table = _table(key)
    props = schemas.properties(schema)
    out: dict[str, Any] = {}
    for number, wire, value in protowire.fields(data):
        f = table.get(number)
        if f is None:
            continue  # a field newer than 1.33: dropped, as a non-strict JSON decode would
        if f.inline:
            _expect(wire, protowire.LENGTH, key, f.inline)
            out.update(_message(value, f.inline, schema, depth + 1))
            continue
        prop = props.get(f.name)
        if prop is None:
            continue
        _assign(out, f, prop, wire, value, f"{key}.{f.name}", depth)
    return out


def _assign(out: dict[str, Any], f: _Field, prop: dict[str, Any], wire: int, value: Any, where: str,
            depth: int) -> None:
    node = schemas.resolve(prop)
    item = node.get("items")
    if "array" in schemas.types(node) and isinstance(item, dict):
        values = out.setdefault(f.name, [])
        if wire == protowire.LENGTH and _is_scalar(item):
            if schemas.types(item) & {"string"}:
                values.append(_scalar(item, wire, value, where))
            else:  # packed repeated numbers
                values.extend(_packed(item, value, where))
        else:
            values.append(_value(item, wire, value, where, depth))
        return
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in node:
        _expect(wire, protowire.LENGTH, where, "map entry")
        entry_key, entry_value = "", None
        for n, w, v in protowire.fields(value):
            if n == 1:
                _expect(w, protowire.LENGTH, where, "map key")
                entry_key = _text(v, where + " key")
            elif n == 2:
                if f.wrapped_lists:
                    _expect(w, protowire.LENGTH, where, "map value")
                    entry_value = [_text(x, where) for n2, _, x in protowire.fields(v) if n2 == 1]
                else:
                    entry_value = _value(extra, w, v, where, depth)
        if entry_value is None:
            entry_value = _zero(extra, f.wrapped_lists)
        out.setdefault(f.name, {})[entry_key] = entry_value
        return
    decoded = _value(prop, wire, value, where, depth)
    if decoded is None:
        return
    if not f.keep_zero and _is_scalar(prop) and decoded in ("", 0):
        return
    out[f.name] = decoded


def _zero(schema: dict[str, Any], wrapped_lists: bool) -> Any:
    if wrapped_lists:
        return []
    name = schemas.ref_name(schema)
    if name == _QUANTITY:
        return "0"
    t = schemas.types(schema)
    if "string" in t:
        return "" if schemas.resolve(schema).get("format") != "byte" else ""
    if "integer" in t or "number" in t:
        return 0
    if "boolean" in t:
        return False
    return {}


def _is_scalar(schema: dict[str, Any]) -> bool:
    name = schemas.ref_name(schema)
    if name is not None:
        return False
    return bool(schemas.types(schema) & {"string", "integer", "number", "boolean"}) and "oneOf" not in schema


def _expect(wire: int, want: int, where: str, what: str) -> None:
    if wire != want:
        raise Invalid(f"protobuf: {where} ({what}) has wire type {_WIRE_NAMES.get(wire, wire)}, "
                      f"expected {_WIRE_NAMES[want]}")


def _value(schema: dict[str, Any], wire: int, value: Any, where: str, depth: int) -> Any:
    name = schemas.ref_name(schema)
    if name is not None:
        _expect(wire, protowire.LENGTH, where, name.rsplit(".", 1)[-1])
        special = _SPECIAL.get(name)
        if special is not None:
            return special(value, where)
        return _message(value, _table_key(name), schemas.definition(name), depth + 1)
    return _scalar(schema, wire, value, where)


def _scalar(schema: dict[str, Any], wire: int, value: Any, where: str) -> Any:
    node = schemas.resolve(schema)
    t = schemas.types(node)
    if "string" in t:
        _expect(wire, protowire.LENGTH, where, "string")
        if node.get("format") == "byte":
            return base64.b64encode(value).decode()
        return _text(value, where)
    if "boolean" in t:
        _expect(wire, protowire.VARINT, where, "bool")
        return bool(value)
    if "integer" in t:
        _expect(wire, protowire.VARINT, where, "integer")
        return _int(value, node)
    if "number" in t:
        if wire == protowire.FIXED64:
            return protowire.as_double(value)
        if wire == protowire.FIXED32:
            return protowire.as_float(value)
        _expect(wire, protowire.VARINT, where, "number")
        return protowire.signed64(value)
    raise Invalid(f"protobuf: {where} has no type kapal can decode")


def _int(value: int, node: dict[str, Any]) -> int:
    if node.get("format") == "int32":
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    return protowire.signed64(value)


def _packed(item: dict[str, Any], data: bytes, where: str) -> list[Any]:
    out = []
    pos = 0
    node = schemas.resolve(item)
    t = schemas.types(node)
    while pos < len(data):
        if "number" in t:
            out.append(protowire.as_double(int.from_bytes(data[pos:pos + 8], "little")))
            pos += 8
            continue
        value, pos = protowire.read_varint(data, pos)
        out.append(bool(value) if "boolean" in t else _int(value, node))
    return out


def _time(data: bytes, where: str, micro: bool = False) -> str | None:
    seconds = nanos = 0
    for n, w, v in protowire.fields(data):
        if n == 1:
            _expect(w, protowire.VARINT, where, "seconds")
            seconds = protowire.signed64(v)
        elif n == 2:
            _expect(w, protowire.VARINT, where, "nanos")
            nanos = protowire.signed64(v)
    if seconds == 0 and nanos == 0:
        return None
    try:
        t = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise Invalid(f"protobuf: {where} holds an impossible time ({seconds} s)") from None
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(data: bytes, where: str) -> str:
    for n, w, v in protowire.fields(data):
        if n == 1 and w == protowire.LENGTH:
            return _text(v, where)
    return "0"


def _int_or_string(data: bytes, where: str) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for n, w, v in protowire.fields(data):
        if n == 1 and w == protowire.VARINT:
            kind = v
        elif n == 2 and w == protowire.VARINT:
            int_val = _int(v, {"format": "int32"})
        elif n == 3 and w == protowire.LENGTH:
            str_val = _text(v, where)
    return str_val if kind == 1 else int_val


def _raw_json(data: bytes, where: str) -> Any:
    raw = b"".join(v for n, w, v in protowire.fields(data) if n == 1 and w == protowire.LENGTH)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise Invalid(f"protobuf: {where} does not hold JSON") from None


_SPECIAL = {
    _TIME: _time,
    _MICRO_TIME: lambda data, where: _time(data, where, micro=True),
    _QUANTITY: _quantity,
    _INT_OR_STRING: _int_or_string,
    _RAW_EXTENSION: _raw_json,
    _FIELDS_V1: _raw_json,
}
