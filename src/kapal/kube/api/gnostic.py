"""Encode a swagger 2.0 document as gnostic's OpenAPI v2 protobuf (`openapi.v2.Document`).

kubectl ≤1.28 (explain, create, apply) and `kubectl explain --output=plaintext-openapiv2` fetch `/openapi/v2`
in this form only. The message layout (field numbers, maps as repeated name/value pairs, oneofs for
parameters, vendor extensions as YAML text) is gnostic's wire format; the numbers below are the facts we
need, written down by us.
"""

from __future__ import annotations

import json
from typing import Any

from kapal.kube.api.protowire import Writer


def encode_document(doc: dict[str, Any]) -> bytes:
    w = Writer()
    w.string(1, doc.get("swagger", "2.0"))
    info = doc.get("info") or {}
    w.message(2, Writer().string(1, info.get("title", "")).string(2, info.get("version", "")))
    for scheme in doc.get("schemes", ()):
        w.string(5, scheme)
    paths = Writer()
    for path, item in (doc.get("paths") or {}).items():
        paths.message(2, Writer().string(1, path).message(2, _path_item(item)))
    w.message(8, paths)
    definitions = Writer()
    for name, schema in (doc.get("definitions") or {}).items():
        definitions.message(1, Writer().string(1, name).message(2, _schema(schema)))
    w.message(9, definitions)
    for requirement in doc.get("security", ()):
        req = Writer()
        for name, scopes in requirement.items():
            arr = Writer()
            for scope in scopes:
                arr.string(1, scope)
            req.message(1, Writer().string(1, name).message(2, arr))
        w.message(12, req)
    if doc.get("securityDefinitions"):
        defs = Writer()
        for name, sec in doc["securityDefinitions"].items():
            api_key = (Writer().string(1, sec.get("type", "")).string(2, sec.get("name", ""))
                       .string(3, sec.get("in", "")).string(4, sec.get("description", "")))
            defs.message(1, Writer().string(1, name).message(2, Writer().message(2, api_key)))
        w.message(13, defs)
    _vendor_extensions(w, 16, doc)
    return w.getvalue()


_METHOD_FIELD = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: dict[str, Any]) -> Writer:
    w = Writer()
    for method, number in _METHOD_FIELD.items():
        if method in item:
            w.message(number, _operation(item[method]))
    for param in item.get("parameters", ()):
        w.message(9, _parameters_item(param))
    _vendor_extensions(w, 10, item)
    return w


def _operation(op: dict[str, Any]) -> Writer:
    w = Writer()
    for tag in op.get("tags", ()):
        w.string(1, tag)
    if op.get("summary"):
        w.string(2, op["summary"])
    if op.get("description"):
        w.string(3, op["description"])
    if op.get("operationId"):
        w.string(5, op["operationId"])
    for mime in op.get("produces", ()):
        w.string(6, mime)
    for mime in op.get("consumes", ()):
        w.string(7, mime)
    for param in op.get("parameters", ()):
        w.message(8, _parameters_item(param))
    responses = Writer()
    for code, response in (op.get("responses") or {}).items():
        r = Writer().string(1, response.get("description", ""))
        if "schema" in response:
            r.message(2, Writer().message(1, _schema(response["schema"])))
        responses.message(1, Writer().string(1, code).message(2, Writer().message(1, r)))
    w.message(9, responses)
    for scheme in op.get("schemes", ()):
        w.string(10, scheme)
    if op.get("deprecated"):
        w.boolean(11, True)
    _vendor_extensions(w, 13, op)
    return w


# Non-body parameter kinds: (NonBodyParameter field, numbers of required/in/description/name/type/format/
# uniqueItems in that sub-schema).
_NON_BODY = {
    "header": (1, (1, 2, 3, 4, 5, 6, 19)),
    "formData": (2, (1, 2, 3, 4, 6, 7, 20)),
    "query": (3, (1, 2, 3, 4, 6, 7, 20)),
    "path": (4, (1, 2, 3, 4, 5, 6, 19)),
}


def _parameters_item(param: dict[str, Any]) -> Writer:
    if "$ref" in param:
        return Writer().message(2, Writer().string(1, param["$ref"]))
    if param.get("in") == "body":
        body = Writer().string(1, param.get("description", "")).string(2, param.get("name", "")).string(3, "body")
        if param.get("required"):
            body.boolean(4, True)
        if "schema" in param:
            body.message(5, _schema(param["schema"]))
        return Writer().message(1, Writer().message(1, body))
    which, (n_required, n_in, n_desc, n_name, n_type, n_format, n_unique) = _NON_BODY[param["in"]]
    sub = Writer()
    if param.get("required"):
        sub.boolean(n_required, True)
    sub.string(n_in, param["in"])
    if param.get("description"):
        sub.string(n_desc, param["description"])
    sub.string(n_name, param["name"])
    if param.get("type"):
        sub.string(n_type, param["type"])
    if param.get("format"):
        sub.string(n_format, param["format"])
    if param.get("uniqueItems"):
        sub.boolean(n_unique, True)
    return Writer().message(1, Writer().message(2, Writer().message(which, sub)))


def _any(value: Any) -> Writer:
    """gnostic's Any: the value as YAML text (JSON is YAML), which is how kube-openapi reads it back."""
    return Writer().string(2, json.dumps(value) + "\n")


def _vendor_extensions(w: Writer, number: int, node: dict[str, Any]) -> None:
    for key, value in node.items():
        if key.startswith("x-"):
            w.message(number, Writer().string(1, key).message(2, _any(value)))


def _schema(s: dict[str, Any]) -> Writer:
    w = Writer()
    if "$ref" in s:
        w.string(1, s["$ref"])
    if s.get("format"):
        w.string(2, s["format"])
    if s.get("title"):
        w.string(3, s["title"])
    if s.get("description"):
        w.string(4, s["description"])
    if "default" in s:
        w.message(5, _any(s["default"]))
    for key, number in (("maximum", 7), ("minimum", 9)):
        if key in s:
            w.double(number, float(s[key]))
    for key, number in (("maxLength", 11), ("minLength", 12), ("maxItems", 14), ("minItems", 15),
                        ("maxProperties", 17), ("minProperties", 18)):
        if key in s:
            w.varint(number, int(s[key]))
    if s.get("pattern"):
        w.string(13, s["pattern"])
    if s.get("uniqueItems"):
        w.boolean(16, True)
    for name in s.get("required", ()):
        w.string(19, name)
    for value in s.get("enum", ()):
        w.message(20, _any(value))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        w.message(21, Writer().message(1, _schema(extra)))
    elif isinstance(extra, bool):
        w.message(21, Writer().boolean(2, extra))
    typ = s.get("type")
    if typ:
        t = Writer()
        for value in [typ] if isinstance(typ, str) else typ:
            t.string(1, value)
        w.message(22, t)
    items = s.get("items")
    if isinstance(items, dict):
        w.message(23, Writer().message(1, _schema(items)))
    for sub in s.get("allOf", ()):
        w.message(24, _schema(sub))
    if s.get("properties"):
        props = Writer()
        for name, sub in s["properties"].items():
            props.message(1, Writer().string(1, name).message(2, _schema(sub)))
        w.message(25, props)
    if s.get("readOnly"):
        w.boolean(27, True)
    _vendor_extensions(w, 31, s)
    return w
