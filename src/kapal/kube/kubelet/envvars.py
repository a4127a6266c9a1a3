"""A container's environment, as the upstream kubelet builds it.

Order: service links of the pod's namespace (KUBERNETES_SERVICE_HOST and friends, docker-link style
variables), then envFrom sources in order (prefix, invalid names skipped), then env entries, each of
which may refer to earlier ones with `$(NAME)` (`$$(NAME)` stays literal). valueFrom reads the downward
API, the container's resources, or a Secret/ConfigMap key; a missing one (not optional) is a
CreateContainerConfigError with upstream's wording.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any

from kapal import errors

from .downward import field_value, resource_value

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Fetch = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (kind "secret"|"configmap", name) -> object


class ConfigError(errors.KapalError):
    """CreateContainerConfigError: the container cannot be configured (a missing Secret key, a bad fieldRef)."""

    reason = "CreateContainerConfigError"


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, undefined ones stay, $$ escapes."""
    out = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "$" and i + 1 < n:
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2:end]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(value[i:end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def service_env(services: list[dict[str, Any]], namespace: str, enable_links: bool) -> dict[str, str]:
    """Service variables: the master service `kubernetes` (from `default`) always, the namespace's when links are on."""
    env: dict[str, str] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = meta.get("name", "")
        ns = meta.get("namespace")
        if ns == namespace and enable_links:
            chosen[name] = svc
        elif ns == "default" and name == "kubernetes":
            chosen.setdefault(name, svc)
    for name, svc in sorted(chosen.items()):
        spec = svc["spec"]
        ip = spec["clusterIP"]
        prefix = name.upper().replace("-", "_")
        ports = spec.get("ports") or []
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p.get("port"))
        first = ports[0]
        proto = (first.get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{proto}://{ip}:{first.get('port')}"
        for p in ports:
            proto_up = (p.get("protocol") or "TCP").upper()
            base = f"{prefix}_PORT_{p.get('port')}_{proto_up}"
            env[base] = f"{proto_up.lower()}://{ip}:{p.get('port')}"
            env[f"{base}_PROTO"] = proto_up.lower()
            env[f"{base}_PORT"] = str(p.get("port"))
            env[f"{base}_ADDR"] = ip
    return env


def _decode(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    if kind == "secret":
        for k, v in (obj.get("data") or {}).items():
            data[k] = base64.b64decode(v).decode(errors="replace")
    else:
        data.update(obj.get("data") or {})
    return data


async def build_env(pod: dict[str, Any], container: dict[str, Any], fetch: Fetch, *,
                    services: list[dict[str, Any]] = (), allocatable: dict[str, str] | None = None,  # type: ignore[assignment]
                    warnings: list[str] | None = None) -> list[str]:
    """NAME=value strings for the engine."""
    ns = pod["metadata"].get("namespace") or "default"
    spec = pod.get("spec") or {}
    env: dict[str, str] = dict(service_env(list(services), ns, spec.get("enableServiceLinks", True) is not False))
    cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    async def get(kind: str, name: str) -> dict[str, Any] | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = await fetch(kind, name)
        return cache[(kind, name)]

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if src.get("configMapRef"):
            kind, ref, word = "configmap", src["configMapRef"], "configmap"
        elif src.get("secretRef"):
            kind, ref, word = "secret", src["secretRef"], "secret"
        else:
            continue
        obj = await get(kind, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{word} "{ref.get("name", "")}" not found')
        invalid = []
        for k, v in _decode(kind, obj).items():
            key = prefix + k
            if not _ENV_NAME.match(key):
                invalid.append(key)
                continue
            env[key] = v
        if invalid and warnings is not None:
            warnings.append(f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {word} {ns}/{ref.get('name')} "
                            "were skipped since they are considered invalid environment variable names.")
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "valueFrom" not in item:
            env[name] = expand(item.get("value") or "", env)
            continue
        vf = item["valueFrom"] or {}
        try:
            if vf.get("fieldRef"):
                env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""))
            elif vf.get("resourceFieldRef"):
                ref = vf["resourceFieldRef"]
                env[name] = resource_value(pod, ref.get("containerName") or container["name"], ref.get("resource", ""),
                                           ref.get("divisor"), allocatable or {})
            elif vf.get("secretKeyRef") or vf.get("configMapKeyRef"):
                kind = "secret" if vf.get("secretKeyRef") else "configmap"
                ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
                obj = await get(kind, ref.get("name", ""))
                word = "secret" if kind == "secret" else "configmap"
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{word} "{ref.get("name", "")}" not found')
                data = _decode(kind, obj)
                key = ref.get("key", "")
                if key not in data:
                    if ref.get("optional"):
                        continue
                    kind_title = "Secret" if kind == "secret" else "ConfigMap"
                    raise ConfigError(f"couldn't find key {key} in {kind_title} {ns}/{ref.get('name', '')}")
                env[name] = data[key]
            else:
                raise ConfigError(f"env var {name}: valueFrom needs one of fieldRef, resourceFieldRef, "
                                  "secretKeyRef, configMapKeyRef")
        except errors.Invalid as e:
            raise ConfigError(str(e)) from e
    return [f"{k}={v}" for k, v in env.items()]
