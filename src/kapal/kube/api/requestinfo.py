"""What a request is about, read from its method and path, as upstream's RequestInfoFactory reads it.

`/apis/apps/v1/namespaces/web/deployments/front/scale` → resource
deployments.apps, namespace web, name front, subresource scale, and an
RBAC verb (get, list, watch, create, update, patch, delete, deletecollection).
"""

from __future__ import annotations

from dataclasses import dataclass

from kapal.errors import NotFound
from kapal.kube.meta import resources
from kapal.kube.meta.resources import ResourceType

_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_CONNECT = ("exec", "attach", "portforward", "proxy")


@dataclass(frozen=True)
class RequestInfo:
    path: str
    method: str
    verb: str
    is_resource: bool
    group: str = ""
    version: str = ""
    plural: str = ""
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""
    subpath: str = ""
    resource: ResourceType | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def parse(method: str, path: str, watch_param: str | None = None, upgrade: bool = False) -> RequestInfo:
    """Resource requests get their ResourceType; unknown group/version/resource raise NotFound (404)."""
    method = method.upper()
    parts = [p for p in path.split("/") if p]
    non_resource = RequestInfo(path, method, method.lower(), False)
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        if len(parts) < 3:
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    watch_prefix = False
    if rest and rest[0] == "watch":
        watch_prefix = True
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) == 2 or rest[2] in _NAMESPACE_SUBRESOURCES:
            pass  # the namespace object itself: /namespaces/{name}[/status|/finalize]
        else:
            namespace = rest[1]
            rest = rest[2:]
    if not rest:
        return non_resource
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    subpath = "/".join(rest[3:]) if len(rest) > 3 else ""
    r = resources.lookup(group, version, plural)
    if r is None or (subresource and subresource not in r.subresources):
        raise NotFound("the server could not find the requested resource")
    if subpath and subresource != "proxy":
        raise NotFound("the server could not find the requested resource")
    if not r.namespaced:
        namespace = None
    if method in ("GET", "HEAD"):
        if subresource in _CONNECT[:3] and upgrade:
            verb = "create"
        elif name:
            verb = "watch" if watch_prefix else "get"
        else:
            verb = "watch" if watch_prefix or _truthy(watch_param) else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return RequestInfo(path, method, verb, True, group, version, plural, namespace, name, subresource, subpath, r)
