"""Request bodies in (JSON, YAML, protobuf, the four patch types) and responses out (JSON, YAML).

Decoding reports duplicate JSON fields by path, because fieldValidation
Strict must refuse them and Warn must mention them. Anything malformed
becomes a 400 with a message that says what was wrong, never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api import pure
from kapal.kube.api.status import NotAcceptable, UnsupportedMediaType

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


class _Dups(dict):
    """A decoded JSON object that saw some of its keys twice."""

    __slots__ = ("dups",)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        out = _Dups(d)
        seen: set[str] = set()
        out.dups = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        return out
    return d


def _dup_paths(node: Any, path: str, found: list[str]) -> None:
    if isinstance(node, _Dups):
        found.extend(f"{path}.{k}" for k in node.dups)
    if isinstance(node, dict):
        for k, v in node.items():
            _dup_paths(v, f"{path}.{k}", found)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _dup_paths(v, f"{path}[{i}]", found)


@dataclass
class Decoded:
    body: Any
    duplicates: list[str] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_json(data: bytes) -> Decoded:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the request body is not valid UTF-8 JSON") from None
    saw_dup = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal saw_dup
        d = _pairs(pairs)
        if isinstance(d, _Dups):
            saw_dup = True
        return d

    try:
        body = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        raise Invalid(f"json parse error: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise Invalid("json parse error: the document nests too deeply") from None
    dups: list[str] = []
    if saw_dup:
        _dup_paths(body, "", dups)
    return Decoded(body, dups)


def decode_yaml(data: bytes) -> Decoded:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(data, Loader=loader) if d is not None]
    except yaml.YAMLError as e:
        raise Invalid(f"yaml parse error: {str(e).splitlines()[0] if str(e) else e}") from None
    except RecursionError:
        raise Invalid("yaml parse error: the document nests too deeply") from None
    if len(docs) > 1:
        raise Invalid("the request body holds more than one YAML document; send one object per request")
    return Decoded(_yaml_to_json(docs[0] if docs else None))


def _yaml_to_json(node: Any) -> Any:
    """YAML allows what JSON does not (timestamps, byte strings, non-string keys): normalise as upstream does."""
    import datetime as dt

    if isinstance(node, dict):
        return {str(k) if not isinstance(k, bool) else ("true" if k else "false"): _yaml_to_json(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_yaml_to_json(v) for v in node]
    if isinstance(node, dt.datetime):
        return node.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(node, dt.date):
        return node.isoformat()
    if isinstance(node, bytes):
        import base64

        return base64.b64encode(node).decode()
    if isinstance(node, float) and node == int(node) and abs(node) < 2**53:
        return node
    return node


def decode_body(content_type: str | None, data: bytes, *, patch: bool = False) -> Decoded:
    """The request body as JSON-shaped data, by Content-Type; 415 for a type the verb does not take."""
    mt = media_type(content_type)
    if patch:
        if mt not in PATCH_TYPES:
            raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types "
                                       f"include: {', '.join(PATCH_TYPES)}")
        if mt == APPLY_PATCH:
            return decode_yaml(data)
        return decode_json(data)
    if mt in ("", JSON, "application/*", "*/*"):
        return decode_json(data)
    if mt == YAML:
        return decode_yaml(data)
    if mt == PROTOBUF:
        return Decoded(pure.decode_protobuf(data))
    raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types include: "
                               f"{JSON}, {YAML}, {PROTOBUF}")


def require_object(body: Any, what: str = "object") -> dict[str, Any]:
    if not isinstance(body, dict):
        got = type(body).__name__ if body is not None else "nothing"
        raise Invalid(f"the request body must be a JSON {what}, got {got}")
    return body


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Accept:
    """What the client asked the response to be: plain JSON/YAML, a Table, or PartialObjectMetadata."""

    yaml: bool = False
    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList"


def negotiate(accept_header: str | None) -> Accept:
    """Pick the first alternative we can serve; protobuf-only asks get JSON too (clients accept it)."""
    if not accept_header:
        return Accept()
    alternatives = [a.strip() for a in accept_header.split(",") if a.strip()]
    saw_known = False
    for alt in alternatives:
        parts = [p.strip() for p in alt.split(";")]
        mt = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        as_kind = params.get("as", "")
        if mt in (JSON, PROTOBUF, "*/*", "application/*", YAML):
            saw_known = True
            if as_kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                if params.get("g", "meta.k8s.io") != "meta.k8s.io" or params.get("v", "v1") not in ("v1", "v1beta1"):
                    continue
                return Accept(yaml=mt == YAML, as_kind=as_kind)
            if as_kind:
                continue
            return Accept(yaml=mt == YAML)
    if saw_known:
        return Accept()
    raise NotAcceptable(f"only the following media types are accepted: {JSON}, {YAML}, {PROTOBUF}")
