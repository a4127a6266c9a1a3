"""The downward API: a pod's own fields and its containers' resources, for env vars and downwardAPI volumes.

Field paths and formats as upstream: labels and annotations render as sorted `key="value"` lines (escaped
like Go's %q), resources divide by the divisor and round up, a missing limit falls back to the node's
allocatable amount.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from kapal.errors import Invalid
from kapal.kube.meta.quantity import parse_quantity

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def format_map(m: dict[str, str]) -> str:
    return "\n".join(f"{k}={_go_quote(v)}" for k, v in sorted(m.items()))


def field_value(pod: dict[str, Any], field_path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(field_path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if field_path in simple:
        return str(simple[field_path] or "")
    if field_path == "metadata.labels":
        return format_map(meta.get("labels") or {})
    if field_path == "metadata.annotations":
        return format_map(meta.get("annotations") or {})
    if field_path == "status.podIPs":
        return ",".join(p.get("ip", "") for p in status.get("podIPs") or [])
    if field_path == "status.hostIPs":
        return ",".join(p.get("ip", "") for p in status.get("hostIPs") or [])
    raise Invalid(f'unsupported fieldPath: "{field_path}"')


def resource_value(pod: dict[str, Any], container_name: str, resource: str, divisor: str | None,
                   allocatable: dict[str, str]) -> str:
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    c = next((c for c in containers if c.get("name") == container_name), None)
    if c is None:
        raise Invalid(f'resourceFieldRef: container "{container_name}" not found in pod')
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise Invalid(f'unsupported resource: "{resource}"')
    res = (c.get("resources") or {}).get(kind) or {}
    raw = res.get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name)
    if raw is None and kind == "requests":
        raw = (c.get("resources") or {}).get("limits", {}).get(name) or "0"
    value = parse_quantity(raw or "0")
    div = parse_quantity(divisor or "1")
    if div <= 0:
        raise Invalid(f"resourceFieldRef divisor must be positive, not {divisor}")
    return str(math.ceil(value / div))
