"""What Services select, shared by the Endpoints and EndpointSlice controllers: which pods belong in a
Service's endpoints, whether they are ready, and the ports their targetPorts resolve to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kapal.kube.client.informer import EventHandler
from kapal.kube.client.store import NAMESPACE_INDEX, Indexer
from kapal.kube.controllers.podutil import is_ready
from kapal.kube.meta.selectors import LabelSelector, Requirement

Obj = dict[str, Any]


def service_selector(svc: Obj) -> LabelSelector | None:
    """The Service's selector, None when it has none (its endpoints are managed by hand)."""
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return None
    return LabelSelector(tuple(Requirement(k, "=", (str(v),)) for k, v in sorted(sel.items())))


def should_include(pod: Obj, publish_not_ready: bool) -> bool:
    """Pods with an IP, not finished; terminating ones only when not-ready addresses are published."""
    status = pod.get("status") or {}
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if pod["metadata"].get("deletionTimestamp") and not publish_not_ready:
        return False
    return True


def pod_ready(pod: Obj, publish_not_ready: bool) -> bool:
    return publish_not_ready or (is_ready(pod) and not pod["metadata"].get("deletionTimestamp"))


def resolve_port(pod: Obj, svc_port: dict[str, Any]) -> int | None:
    """The container port a Service port's targetPort names on this pod (numbers pass through)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def selected_pods(svc: Obj, pods: Indexer) -> list[Obj]:
    sel = service_selector(svc)
    if sel is None:
        return []
    return [p for p in pods.by_index(NAMESPACE_INDEX, svc["metadata"]["namespace"])
            if sel.matches(p["metadata"].get("labels"))]


def services_for_pod(pod: Obj, services: Indexer) -> list[Obj]:
    labels = pod["metadata"].get("labels") or {}
    out = []
    for svc in services.by_index(NAMESPACE_INDEX, pod["metadata"]["namespace"]):
        sel = service_selector(svc)
        if sel is not None and sel.matches(labels):
            out.append(svc)
    return out


def target_ref(pod: Obj) -> dict[str, str]:
    m = pod["metadata"]
    return {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"]}


def pod_event_handler(services: Indexer, enqueue: Callable[[Obj], None]) -> EventHandler:
    """Pod events -> the Services that select the pod (before and after a label change)."""
    def changed(pod: Obj) -> None:
        for svc in services_for_pod(pod, services):
            enqueue(svc)

    def updated(old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        changed(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            changed(old)

    return EventHandler(on_add=changed, on_update=updated, on_delete=changed)
