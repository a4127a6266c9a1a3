"""EndpointSlice controller: every Service with a selector gets EndpointSlices (at most 100 endpoints each,
one set per distinct resolved port list) labelled kubernetes.io/service-name and managed-by
endpointslice-controller.k8s.io, owned by the Service; endpoints carry ready/serving/terminating conditions."""

from __future__ import annotations

import asyncio
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import ENDPOINTSLICES, PODS, SERVICES
from kapal.kube.client.store import copy_object, split_key
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.endpointutil import (
    pod_event_handler,
    pod_ready,
    resolve_port,
    selected_pods,
    service_selector,
    should_include,
    target_ref,
)
from kapal.kube.controllers.ownership import owner_reference
from kapal.kube.controllers.podutil import is_ready

Obj = dict[str, Any]
MAX_PER_SLICE = 100
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"


def desired_slices(svc: Obj, pods: list[Obj]) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(ports, endpoints) for each slice the Service should have."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, tuple[list, list]] = {}
    for pod in pods:
        if not should_include(pod, True):
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ports = []
        for sp in spec.get("ports") or ():
            port = resolve_port(pod, sp)
            if port is None:
                continue
            p: dict[str, Any] = {"name": sp.get("name", ""), "port": port, "protocol": sp.get("protocol", "TCP")}
            if sp.get("appProtocol"):
                p["appProtocol"] = sp["appProtocol"]
            ports.append(p)
        if spec.get("ports") and not ports:
            continue
        pspec, status = pod.get("spec") or {}, pod.get("status") or {}
        ips = [x["ip"] for x in status.get("podIPs") or () if x.get("ip")] or [status["podIP"]]
        ep: dict[str, Any] = {"addresses": [ips[0]],
                              "conditions": {"ready": pod_ready(pod, publish), "serving": is_ready(pod),
                                             "terminating": terminating},
                              "targetRef": target_ref(pod)}
        if pspec.get("nodeName"):
            ep["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
            ep["hostname"] = pspec["hostname"]
        key = tuple(sorted((p["name"], p["port"], p["protocol"]) for p in ports))
        groups.setdefault(key, (sorted(ports, key=lambda p: (p["name"], p["port"])), []))[1].append(ep)
    out = []
    for ports, eps in groups.values():
        eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
        for i in range(0, len(eps), MAX_PER_SLICE):
            out.append((ports, eps[i:i + MAX_PER_SLICE]))
    if not out:
        out.append(([], []))
    return out


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = self.informer(SERVICES)
        self.pods = self.informer(PODS)
        self.slices = self.informer(ENDPOINTSLICES)
        self.slices.add_index("service", lambda s: [
            f"{s['metadata']['namespace']}/{(s['metadata'].get('labels') or {}).get(SERVICE_NAME)}"]
            if (s["metadata"].get("labels") or {}).get(MANAGED_BY) == CONTROLLER else [])
        self.watch(self.services, self.enqueue_handler())
        self.watch(self.pods, pod_event_handler(self.services.indexer, self.enqueue))
        self.watch(self.slices, EventHandler(on_delete=self._slice_event,
                                             on_update=lambda _o, n: self._slice_event(n)))

    def _slice_event(self, s: Obj) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER and labels.get(SERVICE_NAME):
            self.queue.add(f"{s['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.indexer.get(key)
        existing = [s for s in self.slices.indexer.by_index("service", key)
                    if not s["metadata"].get("deletionTimestamp")]
        if svc is None or service_selector(svc) is None:
            return  # slices are owned by the Service: the garbage collector removes them with it
        wanted = desired_slices(svc, selected_pods(svc, self.pods.indexer))
        labels = {**(svc["metadata"].get("labels") or {}), SERVICE_NAME: name, MANAGED_BY: CONTROLLER}
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        unused = list(existing)
        todo: list[Any] = []
        for ports, eps in wanted:
            match = next((s for s in unused if (s.get("ports") or []) == ports
                          and (s.get("endpoints") or []) == eps and (s["metadata"].get("labels") or {}) == labels),
                         None) or next((s for s in unused if (s.get("ports") or []) == ports), None) or (
                unused[0] if unused else None)
            if match is not None:
                unused.remove(match)
                if (match.get("ports") or []) == ports and (match.get("endpoints") or []) == eps and (
                        match["metadata"].get("labels") or {}) == labels:
                    continue
                fresh = copy_object(match)
                fresh["metadata"]["labels"] = labels
                fresh["ports"], fresh["endpoints"] = ports, eps
                todo.append(self.client.replace(ENDPOINTSLICES, fresh))
            else:
                todo.append(self.client.create(ENDPOINTSLICES, {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": f"{name}-", "namespace": ns, "labels": labels,
                                 "ownerReferences": [owner_reference(svc)]},
                    "addressType": "IPv4", "endpoints": eps, "ports": ports}))
        for s in unused:
            todo.append(self.client.delete(ENDPOINTSLICES, s["metadata"]["name"], ns))
        results = await asyncio.gather(*todo, return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException) and not isinstance(r, errors.NotFound)]
        if errs:
            raise errs[0]
