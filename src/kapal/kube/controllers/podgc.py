"""Pod garbage collector: deletes pods bound to nodes that no longer exist, pods being deleted that never got
a node, and the oldest finished pods beyond --terminated-pod-gc-threshold."""

from __future__ import annotations

import asyncio
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import NODES, PODS
from kapal.kube.controllers.base import Controller, ControllerContext

Obj = dict[str, Any]
GC_PERIOD = 20.0
ORPHAN_QUARANTINE = 40.0


class PodGCController(Controller):
    name = "pod-garbage-collector-controller"
    workers = 1

    def __init__(self, ctx: ControllerContext, threshold: int) -> None:
        super().__init__(ctx)
        self.threshold = threshold
        self.pods = self.informer(PODS)
        self.nodes = self.informer(NODES)
        self.watch(self.pods, EventHandler())
        self.watch(self.nodes, EventHandler())
        self._missing_since: dict[str, float] = {}

    async def started(self) -> None:
        self.queue.add("gc")

    async def sync(self, key: str) -> None:
        try:
            await self.collect()
        finally:
            self.queue.add_after("gc", GC_PERIOD)

    async def collect(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        pods = self.pods.indexer.list()
        nodes = set(self.nodes.indexer.keys())
        doomed: list[Obj] = []
        missing = {p["spec"].get("nodeName") for p in pods if (p.get("spec") or {}).get("nodeName")} - nodes
        for name in list(self._missing_since):
            if name not in missing:
                del self._missing_since[name]
        for name in missing:
            self._missing_since.setdefault(name, now)
        gone = {n for n, since in self._missing_since.items() if now - since >= ORPHAN_QUARANTINE}
        for p in pods:
            spec, meta = p.get("spec") or {}, p["metadata"]
            if spec.get("nodeName") in gone:
                doomed.append(p)
            elif not spec.get("nodeName") and meta.get("deletionTimestamp"):
                doomed.append(p)
        finished = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        if self.threshold > 0 and len(finished) > self.threshold:
            finished.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
            doomed.extend(finished[:len(finished) - self.threshold])
        for p in doomed:
            meta = p["metadata"]
            try:
                await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                         uid=meta["uid"])
            except (errors.NotFound, errors.Conflict):
                pass
