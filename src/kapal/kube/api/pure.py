"""The server's one door to the pure modules (validation, defaults, patch, apply, tables, conversion, protobuf).

Each call goes to the module of the same name in this package; until that
module exists, a small placeholder here keeps the server usable (and says
so when it cannot do the job). Keeping the calls in one place means the
REST machinery never imports a pure module directly.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
from types import ModuleType
from typing import Any

from kapal.errors import Invalid, Unsupported
from kapal.kube.api.status import Cause, UnsupportedMediaType
from kapal.kube.meta.resources import ResourceType


@functools.cache
def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"kapal.kube.api.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"kapal.kube.api.{name}":
            return None
        raise


def _cause(c: Any) -> Cause:
    if isinstance(c, Cause):
        return c
    return Cause(getattr(c, "field", ""), getattr(c, "reason", "FieldValueInvalid"), getattr(c, "message", str(c)))


# --- validation and defaults ----------------------------------------------------------------------------------

def validate(r: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
    m = _module("validation")
    if m is not None:
        return [_cause(c) for c in m.validate(r, obj, old)]
    return _validate_name(obj)


def _validate_name(obj: dict[str, Any]) -> list[Cause]:
    import re

    name = (obj.get("metadata") or {}).get("name") or ""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name) or len(name) > 253:
        return [Cause("metadata.name", "FieldValueInvalid",
                      f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                      "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                      "(e.g. 'example.com', regex used for validation is "
                      "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]
    return []


def apply_defaults(r: ResourceType, obj: dict[str, Any]) -> None:
    m = _module("defaults")
    if m is not None:
        m.apply_defaults(r, obj)


# --- schemas: unknown fields and type errors ------------------------------------------------------------------

def unknown_fields(obj: dict[str, Any], r: ResourceType) -> list[str]:
    m = _module("schemas")
    return m.unknown_fields(obj, r) if m is not None else []


def type_error(obj: dict[str, Any], r: ResourceType) -> str | None:
    m = _module("schemas")
    return m.type_error(obj, r) if m is not None and hasattr(m, "type_error") else None


def strict_decoding_message(r: ResourceType, unknown: list[str], duplicates: list[str]) -> str:
    m = _module("schemas")
    if m is not None:
        return m.strict_decoding_message(r, unknown, duplicates)
    return f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: strict decoding error'


def unknown_field_warnings(paths: list[str]) -> list[str]:
    m = _module("schemas")
    if m is not None:
        return m.unknown_field_warnings(paths)
    return [f'unknown field "{p.lstrip(".")}"' for p in paths]


def field_not_declared_message(paths: list[str]) -> str:
    m = _module("schemas")
    if m is not None:
        return m.field_not_declared_message(paths)
    return "\n".join(f"{p}: field not declared in schema" for p in paths)


# --- patches and apply ----------------------------------------------------------------------------------------

def json_patch(obj: dict[str, Any], ops: Any) -> dict[str, Any]:
    m = _module("patch")
    if m is None:
        raise Unsupported("JSON patch is not available yet (kapal.kube.api.patch has not landed)")
    return m.json_patch(obj, ops)


def merge_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    m = _module("patch")
    if m is not None:
        return m.merge_patch(obj, patch)
    return _merge(obj, patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def strategic_merge_patch(obj: dict[str, Any], patch: Any, r: ResourceType) -> dict[str, Any]:
    m = _module("patch")
    if m is not None:
        return m.strategic_merge_patch(obj, patch, r)
    if not isinstance(patch, dict):
        raise Invalid("a strategic merge patch must be a JSON object")
    return _merge(obj, patch)


def server_side_apply(live: dict[str, Any] | None, applied: dict[str, Any], r: ResourceType, manager: str,
                      force: bool, subresource: str = "") -> dict[str, Any]:
    m = _module("apply")
    if m is not None:
        return m.apply(live, applied, r, manager, force, subresource)
    return _merge(live or {}, applied)


def track_update(old: dict[str, Any] | None, new: dict[str, Any], r: ResourceType, manager: str,
                 operation: str = "Update", subresource: str = "") -> dict[str, Any]:
    m = _module("apply")
    if m is not None:
        return m.track_update(old, new, r, manager, operation, subresource)
    return new


# --- tables and conversion ------------------------------------------------------------------------------------

def table(r: ResourceType, objects: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    m = _module("tables")
    if m is not None:
        return m.table(r, objects, wide=True, now=now)
    rows = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        rows.append({"cells": [meta.get("name", ""), meta.get("creationTimestamp", "")]})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                {"name": "Created At", "type": "date", "format": "", "description": "Creation time", "priority": 0}],
            "rows": rows}


def convert(obj: dict[str, Any], r_from: ResourceType, r_to: ResourceType) -> dict[str, Any]:
    if r_from.group == r_to.group and r_from.version == r_to.version:
        return obj
    m = _module("conversion")
    if m is not None:
        return m.convert(obj, r_from, r_to)
    out = dict(obj)
    out["apiVersion"] = r_to.api_version
    return out


# --- protobuf ---------------------------------------------------------------------------------------------------

def decode_protobuf(body: bytes) -> dict[str, Any]:
    m = _module("protobuf")
    if m is None:
        raise UnsupportedMediaType("protobuf request bodies are not supported yet; send JSON or YAML")
    return m.decode(body)
