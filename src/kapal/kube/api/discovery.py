"""Legacy discovery documents: /api, /apis, /apis/{group}, and the resource list of each group-version.

kubectl's aggregated-discovery request falls back to these when answered
with plain application/json, so no aggregated form is served.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from kapal.kube.meta import resources
from kapal.kube.meta.resources import ResourceType

# subresource -> (group, version, kind or "" for the parent's kind, verbs)
_SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "log": ("", "", "", ("get",)),
    "exec": ("", "", "PodExecOptions", ("create", "get")),
    "attach": ("", "", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "", "PodPortForwardOptions", ("create", "get")),
    "binding": ("", "", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
    "finalize": ("", "", "", ("update",)),
    "approval": ("", "", "", ("get", "patch", "update")),
    "ephemeralcontainers": ("", "", "", ("get", "patch", "update")),
    "resize": ("", "", "", ("get", "patch", "update")),
    "proxy": ("", "", "", ("create", "delete", "get", "patch", "update")),
}
_PROXY_KIND = {"pods": "PodProxyOptions", "nodes": "NodeProxyOptions", "services": "ServiceProxyOptions"}


def _storage_version_hash(r: ResourceType) -> str:
    group, _ = r.storage_key
    version = "v2" if group == "autoscaling" else "v1"
    digest = hashlib.sha256(f"{group}/{version}/{r.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


@functools.cache
def api_group_list() -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in resources.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = resources.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


@functools.cache
def resource_list(group: str, version: str) -> dict[str, Any] | None:
    rs = resources.by_group_version(group, version)
    if not rs:
        return None
    out: list[dict[str, Any]] = []
    for r in sorted(rs, key=lambda r: r.plural):
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": sorted(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        if r.kind not in resources.REVIEW_KINDS and r.group not in resources.COMPUTED_GROUPS:
            entry["storageVersionHash"] = _storage_version_hash(r)
        out.append(entry)
        for sub in sorted(r.subresources):
            g, v, kind, verbs = _SUBRESOURCES.get(sub, ("", "", "", ("get",)))
            if sub == "proxy":
                kind = _PROXY_KIND.get(r.plural, "")
            s: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                                 "kind": kind or r.kind, "verbs": list(verbs)}
            if g:
                s["group"], s["version"] = g, v
            out.append(s)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
