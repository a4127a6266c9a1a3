"""The Kubernetes 1.33 JSON schemas, as shipped by the kubernetes-validate package.

They are the one source for OpenAPI documents, `kubectl explain`, strict field
validation, strategic merge and server-side apply list semantics. The 1.4 MB
file is read once, on first use, never at import.

A *schema* here is one node of that file: a dict that may hold `$ref`,
`properties`, `items`, `additionalProperties`, `type` (a string or a list such
as ["string", "null"]) and the `x-kubernetes-*` extensions. Extensions that
describe a field (patch strategy, list type) sit on the property node, next to
its `$ref`, so callers keep the property node and `resolve` it only to walk in.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from kapal.errors import Invalid, NotFound
from kapal.kube.meta.resources import ResourceType

SCHEMA_VERSION = "v1.33.0-local"
KUBERNETES_VERSION = "v1.33.0"
_REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """Every definition, keyed like `io.k8s.api.apps.v1.Deployment` (loaded once per process)."""
    # found, not imported: the package's own import pulls in jsonschema (~70 ms, several MB) kapal never uses
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("the kubernetes-validate package (the Kubernetes JSON schemas) is not installed")
    path = Path(spec.submodule_search_locations[0], "kubernetes-json-schema", SCHEMA_VERSION, "_definitions.json")
    with path.open("rb") as f:
        return json.load(f)["$defs"]


def definition(name: str) -> dict[str, Any]:
    try:
        return definitions()[name]
    except KeyError:
        raise NotFound(f"no schema definition {name!r} in the Kubernetes {KUBERNETES_VERSION} schemas") from None


def for_resource(r: ResourceType) -> dict[str, Any]:
    return definition(r.schema_name)


def ref_name(schema: dict[str, Any]) -> str | None:
    """The definition a node points to (`io.k8s.api.core.v1.PodSpec`), or None."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX):]
    return None


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` links to the node that describes the value's structure."""
    seen = 0
    while (name := ref_name(schema)) is not None:
        schema = definition(name)
        seen += 1
        if seen > 32:
            raise Invalid(f"schema reference loop at {name}")
    return schema


def types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a node allows, without "null" (`{"string"}`; empty when the node says nothing)."""
    schema = resolve(schema)
    t = schema.get("type")
    if isinstance(t, str):
        out = {t}
    elif isinstance(t, list):
        out = set(t)
    else:
        out = set()
        for alt in schema.get("oneOf", ()):
            out |= types(alt)
    out.discard("null")
    return out


def properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resolve(schema).get("properties") or {}


def property_schema(schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The property node for field `name` of an object node (unresolved, so its extensions are kept)."""
    return properties(schema).get(name)


def items(schema: dict[str, Any]) -> dict[str, Any] | None:
    return resolve(schema).get("items")


def map_values(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a map's values when the node is a map (`additionalProperties`)."""
    extra = resolve(schema).get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def is_free_form(schema: dict[str, Any]) -> bool:
    """True for nodes whose content is not described (RawExtension, FieldsV1, JSON): anything goes."""
    s = resolve(schema)
    if s.get("x-kubernetes-preserve-unknown-fields"):
        return True
    if "properties" in s or "items" in s or isinstance(s.get("additionalProperties"), dict) or "oneOf" in s:
        return False
    return types(s) <= {"object"}


def is_atomic_object(schema: dict[str, Any]) -> bool:
    return resolve(schema).get("x-kubernetes-map-type") == "atomic"


def gvk_of(name: str) -> tuple[str, str, str] | None:
    """(group, version, kind) of a top-level definition, or None for nested types."""
    gvks = definition(name).get("x-kubernetes-group-version-kind") or []
    if not gvks:
        return None
    g = gvks[0]
    return g.get("group", ""), g.get("version", ""), g.get("kind", "")


# --- unknown fields (fieldValidation Strict / Warn) ---------------------------------------------------------


def unknown_fields(obj: Any, r: ResourceType) -> list[str]:
    """JSON paths of fields the schema does not declare, in document order.

    Paths read like structured-merge-diff's: `.spec.template.spec.containers[0].foo`; map keys appear as
    `[key]`. Maps, free-form nodes and null values are never reported.
    """
    found: list[str] = []
    _walk_unknown(obj, for_resource(r), "", found)
    return found


def _walk_unknown(value: Any, schema: dict[str, Any], path: str, found: list[str]) -> None:
    if value is None:
        return
    s = resolve(schema)
    if isinstance(value, dict):
        props = s.get("properties")
        if props is not None:
            for key, sub in value.items():
                child = props.get(key)
                if child is None:
                    found.append(f"{path}.{key}")
                else:
                    _walk_unknown(sub, child, f"{path}.{key}", found)
            return
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for key, sub in value.items():
                _walk_unknown(sub, extra, f"{path}[{key}]", found)
    elif isinstance(value, list):
        item = s.get("items")
        if isinstance(item, dict):
            for i, sub in enumerate(value):
                _walk_unknown(sub, item, f"{path}[{i}]", found)


def strict_decoding_message(r: ResourceType, paths: list[str], duplicates: list[str] = ()) -> str:
    """The 400 message upstream gives under fieldValidation=Strict for a JSON/YAML/protobuf body.

    `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field
    "spec.foo", duplicate field "spec.replicas"`.
    """
    parts = [f"unknown field {json.dumps(_decoder_path(p))}" for p in paths]
    parts += [f"duplicate field {json.dumps(_decoder_path(p))}" for p in duplicates]
    return (f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: '
            f"strict decoding error: {', '.join(parts)}")


def unknown_field_warnings(paths: list[str]) -> list[str]:
    """Warning texts under fieldValidation=Warn (one `Warning:` header value each)."""
    return [f"unknown field {json.dumps(_decoder_path(p))}" for p in paths]


def field_not_declared_message(paths: list[str]) -> str:
    """Server-side apply's wording for an unknown field: `.spec.foo: field not declared in schema`."""
    return "\n".join(f"{p}: field not declared in schema" for p in paths)


def _decoder_path(path: str) -> str:
    """The JSON decoder spells `.spec.foo` as `spec.foo`."""
    return path[1:] if path.startswith(".") else path


# --- type checks, worded as the Go JSON decoder words them ----------------------------------------------------


def type_error(obj: Any, r: ResourceType) -> str | None:
    """The first value whose JSON type the schema forbids, worded like Go's decoder, or None.

    `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`; the core
    wraps it as upstream does: `Deployment in version "v1" cannot be handled as a Deployment: <this>`.
    """
    return _walk_types(obj, for_resource(r), r.kind, (), )


def _go_type(schema: dict[str, Any]) -> str:
    name = ref_name(schema)
    s = resolve(schema)
    if name and "properties" in s:
        parts = name.split(".")
        return f"{parts[-2]}.{parts[-1]}"
    t = types(s)
    if "oneOf" in s:
        return ref_name(schema).rsplit(".", 1)[-1] if name else "interface {}"
    if t == {"integer"}:
        return s.get("format", "int") if s.get("format") in ("int32", "int64") else "int"
    if t == {"number"}:
        return "float64"
    if t == {"boolean"}:
        return "bool"
    if t == {"string"}:
        return "[]uint8" if s.get("format") == "byte" else "string"
    if t == {"array"} and isinstance(s.get("items"), dict):
        return "[]" + _go_type(s["items"])
    if isinstance(s.get("additionalProperties"), dict):
        return "map[string]" + _go_type(s["additionalProperties"])
    return "map[string]interface {}" if t == {"object"} else "interface {}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if isinstance(value, int) or float(value).is_integer() else f"number {value}"
    return {str: "string", dict: "object", list: "array"}.get(type(value), "value")


def _accepts(allowed: set[str], value: Any, fmt: str | None) -> bool:
    if not allowed:
        return True
    if isinstance(value, bool):
        return "boolean" in allowed
    if isinstance(value, int):
        return bool(allowed & {"integer", "number"})
    if isinstance(value, float):
        return "number" in allowed or ("integer" in allowed and value.is_integer())
    if isinstance(value, str):
        return "string" in allowed
    if isinstance(value, dict):
        return "object" in allowed
    if isinstance(value, list):
        return "array" in allowed
    return False


def _walk_types(value: Any, schema: dict[str, Any], struct: str, path: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    s = resolve(schema)
    if not _accepts(types(s), value, s.get("format")):
        return (f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"{struct}.{'.'.join(path)} of type {_go_type(schema)}")
    if isinstance(value, dict):
        props = s.get("properties")
        if props is not None:
            inner = (ref_name(schema) or "").rsplit(".", 1)[-1] or struct
            for key, sub in value.items():
                if key in props:
                    err = _walk_types(sub, props[key], inner if path else struct, (*path, key))
                    if err:
                        return err
            return None
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for sub in value.values():
                if err := _walk_types(sub, extra, struct, path):
                    return err
    elif isinstance(value, list):
        item = s.get("items")
        if isinstance(item, dict):
            for sub in value:
                if err := _walk_types(sub, item, struct, path):
                    return err
    return None
