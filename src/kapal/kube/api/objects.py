"""Object metadata as the API server owns it: names, uid, timestamps, generation, initial status.

Pure functions over JSON-shaped dicts, called by the REST machinery on
create and update so that every kind gets the same treatment.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from kapal.kube.api.status import Cause
from kapal.kube.meta.resources import ResourceType

# Upstream's generateName alphabet: no vowels (no words), no look-alikes (0/o, 1/l, 3/e).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_GENERATE_NAME = 63 - 5

# Kinds whose create keeps the client's status (the kubelet registers nodes with theirs).
_KEEP_STATUS_ON_CREATE = frozenset({("", "nodes"), ("", "events"), ("coordination.k8s.io", "leases")})

# Kinds without generation (no spec, or upstream leaves it unset).
_NO_GENERATION = frozenset({("", "events"), ("", "configmaps"), ("", "secrets"), ("", "endpoints"),
                            ("", "serviceaccounts"), ("", "namespaces"), ("coordination.k8s.io", "leases"),
                            ("discovery.k8s.io", "endpointslices")})


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(t: dt.datetime | None = None) -> str:
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_timestamp(t: dt.datetime | None = None) -> str:
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> dt.datetime:
    text = text.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def generate_name(prefix: str) -> str:
    return prefix[:MAX_GENERATE_NAME] + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def has_status_subresource(r: ResourceType) -> bool:
    return "status" in r.subresources


def initial_status(r: ResourceType, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The status a new object starts with, or None to keep what the client sent."""
    key = r.storage_key
    if key in _KEEP_STATUS_ON_CREATE or not has_status_subresource(r):
        return None
    if key == ("", "pods"):
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if key == ("", "namespaces"):
        return {"phase": "Active"}
    if key in (("", "persistentvolumeclaims"), ("", "persistentvolumes")):
        return {"phase": "Pending"}
    if key == ("", "services"):
        return {"loadBalancer": {}}
    return _required_zero_counters(r)


def _required_zero_counters(r: ResourceType) -> dict[str, Any]:
    """Go writes required integer status fields even when zero (ReplicaSetStatus.replicas,
    DaemonSetStatus.numberReady, ...); typed clients refuse a status without them."""
    from kapal.kube.api import schemas

    try:
        status = schemas.property_schema(schemas.for_resource(r), "status")
    except Exception:  # a kind without a schema starts with an empty status
        return {}
    if status is None:
        return {}
    status = schemas.resolve(status)
    props = schemas.properties(status)
    return {
        name: 0
        for name in status.get("required") or ()
        if "integer" in schemas.types(schemas.resolve(props.get(name) or {}))
    }


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in lim or (name in req and str(req[name]) != str(lim[name])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def uses_generation(r: ResourceType) -> bool:
    return r.storage_key not in _NO_GENERATION


def prepare_create(r: ResourceType, obj: dict[str, Any], namespace: str | None) -> list[Cause]:
    """Fill what the server owns on create; returns causes for a missing name."""
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return [Cause("metadata", "FieldValueInvalid", "Invalid value: metadata must be an object")]
    causes: list[Cause] = []
    if not meta.get("name"):
        prefix = meta.get("generateName")
        if prefix:
            meta["name"] = generate_name(str(prefix))
        else:
            causes.append(Cause("metadata.name", "FieldValueRequired",
                                "Required value: name or generateName is required"))
    if r.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp()
    for k in ("resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(k, None)
    if uses_generation(r):
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    status = initial_status(r, obj)
    if status is not None:
        obj["status"] = status
    return causes


def spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    for k in set(old) | set(new):
        if k in ("metadata", "status", "apiVersion", "kind"):
            continue
        if old.get(k) != new.get(k):
            return True
    return False


def _merge_status(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in old.items() if k != "status"}
    if "status" in new:
        out["status"] = new["status"]
    return out


def _merge_finalize(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    out["spec"] = {**(old.get("spec") or {}), "finalizers": (new.get("spec") or {}).get("finalizers") or []}
    return out


def _merge_approval(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    out["status"] = {**(old.get("status") or {}), "conditions": (new.get("status") or {}).get("conditions") or []}
    return out


def _merge_ephemeral(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    out["spec"] = {**(old.get("spec") or {}),
                   "ephemeralContainers": (new.get("spec") or {}).get("ephemeralContainers") or []}
    return out


def _merge_resize(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    resources = {c.get("name"): c.get("resources") for c in (new.get("spec") or {}).get("containers") or []}
    containers = []
    for c in (old.get("spec") or {}).get("containers") or []:
        c = dict(c)
        if c.get("name") in resources:
            c["resources"] = resources[c["name"]]
        containers.append(c)
    out["spec"] = {**(old.get("spec") or {}), "containers": containers}
    return out


# What a write to each subresource may change; everything else comes from the stored object.
SUBRESOURCE_MERGE = {"status": _merge_status, "finalize": _merge_finalize, "approval": _merge_approval,
                     "ephemeralcontainers": _merge_ephemeral, "resize": _merge_resize}


def prepare_update(r: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    """Carry over what clients may not change; bump generation when the spec changed. Returns the new object."""
    nm = new.get("metadata") or {}
    if subresource:
        merged = SUBRESOURCE_MERGE[subresource](old, new)
        meta = dict(old.get("metadata") or {})
        meta["resourceVersion"] = nm.get("resourceVersion", meta.get("resourceVersion"))
        if nm.get("managedFields") is not None:
            meta["managedFields"] = nm["managedFields"]
        merged["metadata"] = meta
        if subresource == "resize" and uses_generation(r) and spec_changed(old, merged):
            meta["generation"] = int(meta.get("generation") or 0) + 1
        new.clear()
        new.update(merged)
        return new
    om = old.get("metadata") or {}
    new["metadata"] = nm
    for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if k in om:
            nm[k] = om[k]
        else:
            nm.pop(k, None)
    nm.pop("selfLink", None)
    if has_status_subresource(r):
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if uses_generation(r) and spec_changed(old, new):
        nm["generation"] = int(om.get("generation") or 0) + 1
    return new


def prune(obj: Any, paths: list[str]) -> None:
    """Remove the fields at the given `.a.b[0].c` paths (unknown fields are dropped, as upstream drops them)."""
    for path in paths:
        steps = _steps(path)
        if not steps:
            continue
        node = obj
        for step in steps[:-1]:
            node = _step(node, step)
            if node is None:
                break
        else:
            last = steps[-1]
            if isinstance(node, dict):
                node.pop(last, None)


def _steps(path: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            out.append(path[i + 1:j])
            i = j
        elif path[i] == "[":
            j = path.index("]", i)
            out.append(path[i + 1:j])
            i = j + 1
        else:
            i += 1
    return out


def _step(node: Any, step: str) -> Any:
    if isinstance(node, list):
        try:
            return node[int(step)]
        except (ValueError, IndexError):
            return None
    if isinstance(node, dict):
        return node.get(step)
    return None
