"""Node lifecycle (minimal): a node whose kubelet has not renewed its Lease (nor posted status) within
--node-monitor-grace-period has its conditions set Unknown ("Kubelet stopped posting node status.") and the
node.kubernetes.io/unreachable taints (NoSchedule, NoExecute); a node reporting Ready again loses them, and
Ready=False nodes get node.kubernetes.io/not-ready. Pods are not evicted (their default 300 s toleration of
these taints would delay that anyway)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from kapal import errors
from kapal.kube.client.clock import format_time, parse_time
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import LEASES, NODES
from kapal.kube.client.store import copy_object
from kapal.kube.controllers.base import Controller, ControllerContext

Obj = dict[str, Any]
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
MONITOR_PERIOD = 5.0


def heartbeat(node: Obj, lease: Obj | None) -> dt.datetime | None:
    times = []
    if lease is not None:
        t = parse_time((lease.get("spec") or {}).get("renewTime"))
        if t is not None:
            times.append(t)
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            t = parse_time(c.get("lastHeartbeatTime"))
            if t is not None:
                times.append(t)
    times.append(parse_time(node["metadata"].get("creationTimestamp")) or dt.datetime.now(dt.UTC))
    return max(times)


def wanted_taints(node: Obj) -> list[dict[str, Any]]:
    ready = next((c for c in (node.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"), None)
    status = (ready or {}).get("status", "Unknown")
    if status == "True":
        return []
    key = NOT_READY if status == "False" else UNREACHABLE
    return [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute"}]


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    workers = 2

    def __init__(self, ctx: ControllerContext, grace: float) -> None:
        super().__init__(ctx)
        self.grace = grace
        self.nodes = self.informer(NODES)
        self.leases = self.informer(LEASES, "kube-node-lease")
        self.watch(self.nodes, EventHandler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n)))
        self.watch(self.leases, EventHandler())

    async def started(self) -> None:
        self._monitor = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_PERIOD)
            for node in self.nodes.indexer.list():
                self.enqueue(node)

    async def run(self, workers: int | None = None) -> None:
        try:
            await super().run(workers)
        finally:
            monitor = getattr(self, "_monitor", None)
            if monitor is not None:
                monitor.cancel()

    async def sync(self, key: str) -> None:
        node = self.nodes.indexer.get(key)
        if node is None:
            return
        now = dt.datetime.now(dt.UTC)
        last = heartbeat(node, self.leases.indexer.get(f"kube-node-lease/{key}"))
        stale = last is not None and (now - last).total_seconds() > self.grace
        if stale:
            node = await self._mark_unknown(node, now)
        await self._sync_taints(node)

    async def _mark_unknown(self, node: Obj, now: dt.datetime) -> Obj:
        conditions = (node.get("status") or {}).get("conditions") or []
        if all(c.get("status") == "Unknown" for c in conditions if c.get("type") in (
                "Ready", "MemoryPressure", "DiskPressure", "PIDPressure")) and conditions:
            return node
        fresh = copy_object(node)
        t = format_time(now)
        out = []
        for c in fresh.setdefault("status", {}).get("conditions") or []:
            if c.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure") and c.get(
                    "status") != "Unknown":
                c = {**c, "status": "Unknown", "reason": "NodeStatusUnknown",
                     "message": "Kubelet stopped posting node status.", "lastTransitionTime": t}
            out.append(c)
        if not any(c.get("type") == "Ready" for c in out):
            out.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastHeartbeatTime": t,
                        "lastTransitionTime": t})
        fresh["status"]["conditions"] = out
        self.recorder.record(node, "Normal", "NodeNotReady", f"Node {node['metadata']['name']} status is now: "
                                                             "NodeNotReady")
        return await self.client.replace_status(NODES, fresh)

    async def _sync_taints(self, node: Obj) -> None:
        taints = list((node.get("spec") or {}).get("taints") or [])
        managed = [t for t in taints if t.get("key") in (UNREACHABLE, NOT_READY)]
        wanted = wanted_taints(node)
        if sorted((t["key"], t["effect"]) for t in managed) == sorted((t["key"], t["effect"]) for t in wanted):
            return
        now = format_time(dt.datetime.now(dt.UTC))
        kept = [t for t in taints if t.get("key") not in (UNREACHABLE, NOT_READY)]
        new = kept + [{**t, "timeAdded": now} if t["effect"] == "NoExecute" else t for t in wanted]
        fresh = copy_object(node)
        fresh.setdefault("spec", {})["taints"] = new
        if not new:
            fresh["spec"].pop("taints")
        try:
            await self.client.replace(NODES, fresh)
        except errors.NotFound:
            pass
