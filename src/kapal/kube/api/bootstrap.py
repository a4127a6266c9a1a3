"""What a fresh API server creates: system namespaces, PriorityClasses, the default RBAC policy, the
`default/kubernetes` Service with its Endpoints and EndpointSlice, and each namespace's `default`
ServiceAccount. Idempotent: existing objects are kept (RBAC defaults marked autoupdate are reconciled).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from kapal import errors
from kapal.kube.api import policy
from kapal.kube.api.cache import CacheEvent
from kapal.kube.meta.resources import ResourceType, lookup

if TYPE_CHECKING:
    from kapal.kube.api.rest import Rest

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MANAGER = "kube-apiserver"


def _r(group: str, plural: str) -> ResourceType:
    r = lookup(group, "v1", plural)
    assert r is not None, plural
    return r


PRIORITY_CLASSES = [
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-node-critical"},
     "value": 2000001000, "description": "Used for system critical pods that must not be moved from their current "
                                         "node.", "preemptionPolicy": "PreemptLowerPriority"},
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-cluster-critical"},
     "value": 2000000000, "description": "Used for system critical pods that must run in the cluster, but can be "
                                         "moved to another node if necessary.",
     "preemptionPolicy": "PreemptLowerPriority"},
]


async def ensure(rest: Rest, r: ResourceType, obj: dict[str, Any], reconcile: bool = False) -> None:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    current = await rest.ctx.store.find(r, ns, meta["name"])
    if current is None:
        try:
            await rest.create_object(r, obj, ns, MANAGER, False, "Update")
        except errors.AlreadyExists:
            pass
        return
    if not reconcile:
        return
    annotations = (current["metadata"].get("annotations") or {})
    if annotations.get("rbac.authorization.kubernetes.io/autoupdate") == "false":
        return
    wanted = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if all(current.get(k) == v for k, v in wanted.items()):
        return
    new = {**current, **wanted}
    await rest.update_object(r, current, new, MANAGER, False)


async def run(rest: Rest) -> None:
    ctx = rest.ctx
    ns_r = _r("", "namespaces")
    for name in SYSTEM_NAMESPACES:
        await ensure(rest, ns_r, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    pc = _r("scheduling.k8s.io", "priorityclasses")
    for obj in PRIORITY_CLASSES:
        await ensure(rest, pc, obj)
    rbac = "rbac.authorization.k8s.io"
    for r, objs in ((_r(rbac, "clusterroles"), policy.cluster_role_objects()),
                    (_r(rbac, "clusterrolebindings"), policy.cluster_role_binding_objects()),
                    (_r(rbac, "roles"), policy.role_objects()),
                    (_r(rbac, "rolebindings"), policy.role_binding_objects())):
        for obj in objs:
            await ensure(rest, r, obj, reconcile=True)
    await kubernetes_service(rest)
    if ctx.config.default_service_accounts:
        await ctx.cache.fresh()
        names = {e.obj["metadata"]["name"] for e in ctx.cache.resource(("", "namespaces")).items.values()}
        for name in sorted(names | set(SYSTEM_NAMESPACES)):
            await default_service_account(rest, name)
        ctx.cache.add_listener(lambda key, ev: _on_service_account(rest, key, ev))

        async def new_namespace(r: ResourceType, obj: dict[str, Any]) -> None:
            if r.storage_key == ("", "namespaces"):
                await default_service_account(rest, obj["metadata"]["name"])

        ctx.after_create.append(new_namespace)


async def kubernetes_service(rest: Rest) -> None:
    ctx = rest.ctx
    ip, port = ctx.advertise_address, ctx.port
    svc_r, ep_r, eps_r = _r("", "services"), _r("", "endpoints"), _r("discovery.k8s.io", "endpointslices")
    await ensure(rest, svc_r, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ctx.admission.ips.first, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}})
    svc = await ctx.store.find(svc_r, "default", "kubernetes")
    if svc is not None and [p.get("targetPort") for p in (svc.get("spec") or {}).get("ports") or []] != [port]:
        new = json.loads(json.dumps(svc))
        new["spec"]["ports"] = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]
        await rest.update_object(svc_r, svc, new, MANAGER, False)
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "kubernetes", "namespace": "default",
                              "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": ip}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    await ensure(rest, ep_r, endpoints, reconcile=True)
    family = "IPv6" if ":" in ip else "IPv4"
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "kubernetes", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": "kubernetes"}},
              "addressType": family,
              "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    await ensure(rest, eps_r, slice_, reconcile=True)


async def default_service_account(rest: Rest, namespace: str) -> None:
    sa_r = _r("", "serviceaccounts")
    ns = rest.ctx.cache.get(("", "namespaces"), None, namespace)
    if ns is not None and (ns.obj["metadata"].get("deletionTimestamp")):
        return
    try:
        await ensure(rest, sa_r, {"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "default", "namespace": namespace}})
    except (errors.NotFound, errors.Forbidden):
        pass


def _on_service_account(rest: Rest, storage_key: tuple[str, str], ev: CacheEvent) -> None:
    if storage_key == ("", "serviceaccounts") and ev.type == "DELETED":
        meta = ev.entry.obj["metadata"]
        if meta.get("name") == "default":
            task = asyncio.get_running_loop().create_task(default_service_account(rest, meta["namespace"]))
            rest.ctx.extra.setdefault("tasks", set()).add(task)
            task.add_done_callback(rest.ctx.extra["tasks"].discard)
