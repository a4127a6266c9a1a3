"""LimitRanger and ResourceQuota admission: container defaults and bounds, and namespace quotas.

LimitRanger fills containers' missing requests/limits from the namespace's
LimitRanges (`default`, `defaultRequest`) and refuses values outside
`min`/`max`. ResourceQuota counts what the namespace already holds (from the
watch cache, the same figures the quota controller writes into
`status.used`) plus the new object, and refuses a create that would exceed
`spec.hard`, with upstream's wording.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from kapal.errors import Forbidden
from kapal.kube.api.cache import Entry, WatchCache
from kapal.kube.meta.quantity import parse_quantity
from kapal.kube.meta.resources import ResourceType

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Object counts with a short name, by storage key.
_COUNTS = {("", "pods"): "pods", ("", "services"): "services", ("", "configmaps"): "configmaps",
           ("", "secrets"): "secrets", ("", "persistentvolumeclaims"): "persistentvolumeclaims",
           ("", "replicationcontrollers"): "replicationcontrollers", ("", "resourcequotas"): "resourcequotas"}


def _fmt(q: Fraction) -> str:
    if q.denominator == 1:
        n = q.numerator
        for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if n >= size and n % size == 0:
                return f"{n // size}{suffix}"
        return str(n)
    milli = q * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    return str(float(q))


def _pairs(values: dict[str, Fraction], keys: list[str]) -> str:
    return ",".join(f"{k}={_fmt(values[k])}" for k in keys)


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def _items(cache: WatchCache, storage_key: tuple[str, str], namespace: str) -> list[Entry]:
    rc = cache.resource(storage_key)
    prefix = f"{rc.prefix}{namespace}/"
    return [e for k, e in rc.items.items() if k.startswith(prefix)]


# --- LimitRanger -------------------------------------------------------------------------------------------------

def limit_ranges(cache: WatchCache, r: ResourceType, obj: dict[str, Any], namespace: str) -> None:
    if r.storage_key != ("", "pods"):
        return
    ranges = [e.obj for e in _items(cache, ("", "limitranges"), namespace)]
    if not ranges:
        return
    name = (obj.get("metadata") or {}).get("name", "")
    problems: list[str] = []
    for lr in ranges:
        for limit in (lr.get("spec") or {}).get("limits") or []:
            if limit.get("type", "Container") != "Container":
                continue
            for c in (obj.get("spec") or {}).get("containers") or []:
                res = c.setdefault("resources", {})
                limits = res.setdefault("limits", {})
                requests = res.setdefault("requests", {})
                for k, v in (limit.get("default") or {}).items():
                    limits.setdefault(k, v)
                for k, v in (limit.get("defaultRequest") or {}).items():
                    requests.setdefault(k, v)
                for k, v in limits.items():
                    requests.setdefault(k, v)
                for k, v in (limit.get("max") or {}).items():
                    if k in limits and parse_quantity(limits[k]) > parse_quantity(v):
                        problems.append(f"maximum {k} usage per Container is {v}, but limit is {limits[k]}")
                for k, v in (limit.get("min") or {}).items():
                    if k in requests and parse_quantity(requests[k]) < parse_quantity(v):
                        problems.append(f"minimum {k} usage per Container is {v}, but request is {requests[k]}")
                if not limits:
                    res.pop("limits")
                if not requests:
                    res.pop("requests")
    if problems:
        raise Forbidden(f'pods "{name}" is forbidden: ' + ", ".join(problems))


# --- ResourceQuota -----------------------------------------------------------------------------------------------

def _pod_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def usage(r: ResourceType, obj: dict[str, Any]) -> dict[str, Fraction]:
    """What one object counts against quotas."""
    key = r.storage_key
    out: dict[str, Fraction] = {}
    short = _COUNTS.get(key)
    if short:
        out[short] = Fraction(1)
    group, plural = key
    out[f"count/{plural}.{group}" if group else f"count/{plural}"] = Fraction(1)
    if key == ("", "pods"):
        if _pod_terminal(obj):
            return {}
        for kind in ("requests", "limits"):
            for name in _COMPUTE:
                total = Fraction(0)
                seen = False
                for c in _containers(obj):
                    value = ((c.get("resources") or {}).get(kind) or {}).get(name)
                    if value is not None:
                        total += parse_quantity(value)
                        seen = True
                if seen:
                    out[f"{kind}.{name}"] = total
                    if kind == "requests":
                        out[name] = total
    elif key == ("", "services"):
        kind = (obj.get("spec") or {}).get("type")
        if kind == "NodePort":
            out["services.nodeports"] = Fraction(len((obj.get("spec") or {}).get("ports") or []))
        elif kind == "LoadBalancer":
            out["services.loadbalancers"] = Fraction(1)
            out["services.nodeports"] = Fraction(len((obj.get("spec") or {}).get("ports") or []))
    elif key == ("", "persistentvolumeclaims"):
        storage = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        if storage is not None:
            out["requests.storage"] = parse_quantity(storage)
    return out


def _selected(quota: dict[str, Any], r: ResourceType, obj: dict[str, Any]) -> bool:
    spec = quota.get("spec") or {}
    scopes = spec.get("scopes") or []
    if r.storage_key != ("", "pods"):
        return not scopes
    pod_spec = obj.get("spec") or {}
    for scope in scopes:
        if scope == "Terminating" and pod_spec.get("activeDeadlineSeconds") is None:
            return False
        if scope == "NotTerminating" and pod_spec.get("activeDeadlineSeconds") is not None:
            return False
        if scope == "BestEffort" and any((c.get("resources") or {}) for c in _containers(obj)):
            return False
        if scope == "NotBestEffort" and not any((c.get("resources") or {}) for c in _containers(obj)):
            return False
    selector = spec.get("scopeSelector")
    if selector:
        for expr in selector.get("matchExpressions") or []:
            if expr.get("scopeName") == "PriorityClass":
                pc = pod_spec.get("priorityClassName", "")
                values = expr.get("values") or []
                op = expr.get("operator")
                if (op == "In" and pc not in values) or (op == "NotIn" and pc in values) or \
                        (op == "Exists" and not pc) or (op == "DoesNotExist" and pc):
                    return False
    return True


def check_quota(cache: WatchCache, r: ResourceType, obj: dict[str, Any], namespace: str) -> None:
    quotas = [e.obj for e in _items(cache, ("", "resourcequotas"), namespace)]
    if not quotas:
        return
    wanted = usage(r, obj)
    if not wanted:
        return
    name = (obj.get("metadata") or {}).get("name", "")
    subject = f'{r.plural}.{r.group} "{name}"' if r.group else f'{r.plural} "{name}"'
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        hard = {k: parse_quantity(v) for k, v in ((quota.get("spec") or {}).get("hard") or {}).items()}
        tracked = {k for k in wanted if k in hard}
        if r.storage_key == ("", "pods") and _selected(quota, r, obj):
            missing = [k for k in hard if k.startswith(("requests.", "limits.")) and k.split(".", 1)[1] in _COMPUTE
                       and k not in wanted]
            if missing:
                raise Forbidden(f"{subject} is forbidden: failed quota: {quota['metadata']['name']}: must specify "
                                + ",".join(sorted(missing)))
        if not tracked or not _selected(quota, r, obj):
            continue
        used: dict[str, Fraction] = dict.fromkeys(tracked, Fraction(0))
        for entry in _items(cache, r.storage_key, namespace):
            if not _selected(quota, r, entry.obj):
                continue
            for k, v in usage(r, entry.obj).items():
                if k in used:
                    used[k] += v
        over = sorted(k for k in tracked if used[k] + wanted[k] > hard[k])
        if over:
            raise Forbidden(f"{subject} is forbidden: exceeded quota: {quota['metadata']['name']}, requested: "
                            f"{_pairs(wanted, over)}, used: {_pairs(used, over)}, limited: {_pairs(hard, over)}")

