"""Endpoints controller: for every Service with a selector, an Endpoints object of the same name listing the
selected pods' IPs (ready ones as addresses, the others as notReadyAddresses) and the ports their targetPorts
resolve to, grouped into subsets of pods that share a port set."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import ENDPOINTS, PODS, SERVICES
from kapal.kube.client.store import copy_object, object_key, split_key
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

Obj = dict[str, Any]
MAX_ADDRESSES = 1000
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def subsets_for(svc: Obj, pods: list[Obj]) -> list[dict[str, Any]]:
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict[str, list]] = {}
    for pod in pods:
        if not should_include(pod, publish):
            continue
        ip = (pod.get("status") or {}).get("podIP")
        address: dict[str, Any] = {"ip": ip, "targetRef": target_ref(pod)}
        pspec = pod.get("spec") or {}
        if pspec.get("nodeName"):
            address["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
            address["hostname"] = pspec["hostname"]
        ports = []
        for sp in spec.get("ports") or ():
            port = resolve_port(pod, sp)
            if port is None:
                continue
            ep: dict[str, Any] = {"port": port, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                ep["name"] = sp["name"]
            if sp.get("appProtocol"):
                ep["appProtocol"] = sp["appProtocol"]
            ports.append(ep)
        if spec.get("ports") and not ports:
            continue
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        (g["addresses"] if pod_ready(pod, publish) else g["notReadyAddresses"]).append(address)
    subsets = []
    for g in groups.values():
        subset: dict[str, Any] = {}
        for k in ("addresses", "notReadyAddresses"):
            if g[k]:
                subset[k] = sorted(g[k], key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        if g["ports"]:
            subset["ports"] = sorted(g["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)
    subsets.sort(key=lambda s: str(s.get("ports")))
    return subsets


def truncate(subsets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    total = sum(len(s.get("addresses", [])) + len(s.get("notReadyAddresses", [])) for s in subsets)
    if total <= MAX_ADDRESSES:
        return subsets, False
    left = MAX_ADDRESSES
    out = []
    for s in subsets:
        s = dict(s)
        for k in ("addresses", "notReadyAddresses"):
            if k in s:
                s[k] = s[k][:left]
                left -= len(s[k])
                if not s[k]:
                    del s[k]
        out.append(s)
    return out, True


class EndpointsController(Controller):
    name = "endpoints-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = self.informer(SERVICES)
        self.pods = self.informer(PODS)
        self.endpoints = self.informer(ENDPOINTS)
        self.watch(self.services, self.enqueue_handler())
        self.watch(self.pods, pod_event_handler(self.services.indexer, self.enqueue))
        self.watch(self.endpoints, EventHandler(on_delete=self._endpoints_deleted))

    def _endpoints_deleted(self, ep: Obj) -> None:
        if self.services.indexer.get(object_key(ep)) is not None:
            self.enqueue(ep)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.indexer.get(key)
        current = self.endpoints.indexer.get(key)
        if svc is None:
            if current is not None and self._managed(current):
                try:
                    await self.client.delete(ENDPOINTS, name, ns)
                except errors.NotFound:
                    pass
            return
        if service_selector(svc) is None:
            return
        subsets, truncated = truncate(subsets_for(svc, selected_pods(svc, self.pods.indexer)))
        labels = dict(svc["metadata"].get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        if current is not None and (current.get("subsets") or []) == subsets and (
                current["metadata"].get("labels") or {}) == labels and (
                OVER_CAPACITY in (current["metadata"].get("annotations") or {})) == truncated:
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        annotations = {TRIGGER: now}
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        if current is None:
            obj = {"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations}}
            if subsets:
                obj["subsets"] = subsets
            try:
                await self.client.create(ENDPOINTS, obj)
            except errors.AlreadyExists:
                raise errors.Conflict(f"endpoints {key} appeared meanwhile; retrying") from None
            except errors.Forbidden as e:
                if "being terminated" not in str(e):
                    raise
            return
        fresh = copy_object(current)
        fresh["metadata"]["labels"] = labels
        ann = {k: v for k, v in (fresh["metadata"].get("annotations") or {}).items() if k != OVER_CAPACITY}
        fresh["metadata"]["annotations"] = {**ann, **annotations}
        if subsets:
            fresh["subsets"] = subsets
        else:
            fresh.pop("subsets", None)
        await self.client.replace(ENDPOINTS, fresh)

    @staticmethod
    def _managed(ep: Obj) -> bool:
        return TRIGGER in (ep["metadata"].get("annotations") or {})
