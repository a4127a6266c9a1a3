"""Garbage collector: objects whose owners are gone are deleted; owners deleted with propagationPolicy
Foreground wait (foregroundDeletion finalizer) until their blocking dependents are gone; owners deleted with
Orphan (orphan finalizer) first strip themselves from their dependents' ownerReferences.

A graph of every watched object by uid (its owners, its dependents) is kept from the shared informers. Two
queues of uids: attempt-to-delete (an object that may have lost its owners, or an owner waiting for its
dependents) and attempt-to-orphan. An owner's absence is always confirmed with a live GET before anything is
deleted, so a slow informer never costs a live object.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.store import Obj
from kapal.kube.client.workqueue import WorkQueue, run_worker
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.meta.resources import RESOURCES, ResourceType, by_kind

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
# Kinds the collector does not watch: requests that are never stored, and Events (many, never owners).
_IGNORED = frozenset({("", "events"), ("", "bindings")})


def collectable_resources() -> list[ResourceType]:
    """One resource per stored kind that can be listed, watched and deleted."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in RESOURCES:
        if r.storage_key in seen or r.storage_key in _IGNORED:
            continue
        if not {"list", "watch", "delete"} <= set(r.verbs):
            continue
        if r.storage_group is not None and r.storage_group != r.group:
            continue
        seen.add(r.storage_key)
        out.append(r)
    return out


@dataclass
class GraphNode:
    uid: str
    resource: ResourceType
    namespace: str | None
    name: str
    owners: list[dict[str, Any]] = field(default_factory=list)
    dependents: set[str] = field(default_factory=set)
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and ORPHAN in self.finalizers


class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    workers = 20

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.graph: dict[str, GraphNode] = {}
        self.waiting: dict[str, set[str]] = {}  # owner uid not (yet) in the graph -> dependents naming it
        self.orphan_queue = WorkQueue("garbage-collector-orphan")
        self.resources = collectable_resources()
        self.synced = False
        for r in self.resources:
            inf = self.informer(r)
            self.watch(inf, EventHandler(on_add=lambda o, r=r: self._observe(r, o),
                                         on_update=lambda _o, n, r=r: self._observe(r, n),
                                         on_delete=lambda o, r=r: self._forget(o)))

    # --- the graph --------------------------------------------------------------------------------------------------

    def _observe(self, r: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        uid = meta.get("uid")
        if not uid:
            return
        node = self.graph.get(uid)
        owners = [ref for ref in meta.get("ownerReferences") or () if ref.get("uid")]
        finalizers = tuple(meta.get("finalizers") or ())
        deleting = bool(meta.get("deletionTimestamp"))
        if node is None:
            node = GraphNode(uid, r, meta.get("namespace"), meta["name"])
            self.graph[uid] = node
            for dep in self.waiting.pop(uid, set()):
                node.dependents.add(dep)
        old_owner_uids = {ref["uid"] for ref in node.owners}
        new_owner_uids = {ref["uid"] for ref in owners}
        for gone in old_owner_uids - new_owner_uids:
            owner = self.graph.get(gone)
            if owner is not None:
                owner.dependents.discard(uid)
                if owner.deleting_dependents:
                    self.queue.add(owner.uid)
            else:
                self.waiting.get(gone, set()).discard(uid)
        for added in new_owner_uids - old_owner_uids:
            owner = self.graph.get(added)
            if owner is not None:
                owner.dependents.add(uid)
            else:
                self.waiting.setdefault(added, set()).add(uid)
                if self.synced:
                    self.queue.add(uid)  # an owner we have not seen: check it
        was_deleting_dependents, was_orphaning = node.deleting_dependents, node.orphaning
        node.owners, node.finalizers, node.deleting = owners, finalizers, deleting
        if node.deleting_dependents and not was_deleting_dependents:
            self.queue.add(uid)
            for dep in node.dependents:
                self.queue.add(dep)
        elif node.deleting_dependents:
            self.queue.add(uid)
        if node.orphaning and not was_orphaning:
            self.orphan_queue.add(uid)

    def _forget(self, obj: Obj) -> None:
        uid = obj["metadata"].get("uid")
        node = self.graph.pop(uid, None) if uid else None
        if node is None:
            return
        for ref in node.owners:
            owner = self.graph.get(ref["uid"])
            if owner is not None:
                owner.dependents.discard(uid)
                if owner.deleting_dependents:
                    self.queue.add(owner.uid)
            else:
                self.waiting.get(ref["uid"], set()).discard(uid)
        for dep in node.dependents:
            self.waiting.setdefault(uid, set()).add(dep)
            self.queue.add(dep)

    async def started(self) -> None:
        self.synced = True
        for node in list(self.graph.values()):
            if any(ref["uid"] not in self.graph for ref in node.owners) or node.deleting_dependents:
                self.queue.add(node.uid)
            if node.orphaning:
                self.orphan_queue.add(node.uid)

    async def run(self, workers: int | None = None) -> None:
        orphaners = []
        try:
            async def orphan_workers() -> None:
                await self.ctx.informers.wait_for_sync(*{i for i, _ in self._watched})
                orphaners.extend(asyncio.create_task(run_worker(self.orphan_queue, self.orphan, logger=self.log))
                                 for _ in range(2))
            starter = asyncio.create_task(orphan_workers())
            await super().run(workers)
        finally:
            self.orphan_queue.shut_down()
            for t in [starter, *orphaners]:
                t.cancel()
            await asyncio.gather(starter, *orphaners, return_exceptions=True)

    # --- attempt to delete ------------------------------------------------------------------------------------------

    async def _owner_state(self, node: GraphNode, ref: dict[str, Any]) -> str:
        """'solid', 'dangling' (gone, or another object by that name) or 'waiting' (deleting its dependents)."""
        owner = self.graph.get(ref["uid"])
        if owner is not None:
            return "waiting" if owner.deleting_dependents else "solid"
        r = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            return "solid"  # a kind we cannot look up: never delete on a guess
        try:
            live = await self.client.get(r, ref["name"], node.namespace if r.namespaced else None)
        except errors.NotFound:
            return "dangling"
        if live["metadata"].get("uid") != ref["uid"]:
            return "dangling"
        meta = live["metadata"]
        if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or ()):
            return "waiting"
        return "solid"

    async def sync(self, key: str) -> None:
        node = self.graph.get(key)
        if node is None:
            return
        if node.deleting_dependents:
            await self._process_deleting_dependents(node)
            return
        if node.deleting and not node.owners:
            return
        if not node.owners:
            return
        states = {ref["uid"]: await self._owner_state(node, ref) for ref in node.owners}
        solid = [u for u, s in states.items() if s == "solid"]
        dangling = [u for u, s in states.items() if s == "dangling"]
        waiting = [u for u, s in states.items() if s == "waiting"]
        if solid:
            if dangling or waiting:
                await self._patch_owners(node, [{"$patch": "delete", "uid": u} for u in dangling + waiting])
            return
        if node.deleting and not waiting:
            return
        if waiting and node.dependents:
            # our own dependents go first, as the owner waiting on us asked
            if node.deleting:
                return
            await self._delete(node, "Foreground")
            return
        policy = "Background"
        if ORPHAN in node.finalizers:
            policy = "Orphan"
        elif FOREGROUND in node.finalizers:
            policy = "Foreground"
        await self._delete(node, policy)

    async def _process_deleting_dependents(self, node: GraphNode) -> None:
        blocking = []
        for dep_uid in node.dependents:
            dep = self.graph.get(dep_uid)
            if dep is None:
                continue
            ref = next((r for r in dep.owners if r["uid"] == node.uid), None)
            if ref is not None and ref.get("blockOwnerDeletion"):
                blocking.append(dep)
        if not blocking:
            await self._remove_finalizer(node, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting:
                self.queue.add(dep.uid)

    async def _delete(self, node: GraphNode, policy: str) -> None:
        try:
            await self.client.delete(node.resource, node.name, node.namespace, propagation_policy=policy,
                                     uid=node.uid)
            self.log.debug("deleted %s %s/%s (%s)", node.resource.kind, node.namespace, node.name, policy)
        except errors.NotFound:
            pass
        except errors.Conflict:
            pass  # the uid precondition failed: that object is gone; a newer one has its own owners

    async def _patch_owners(self, node: GraphNode, refs: list[dict[str, Any]]) -> None:
        try:
            await self.client.patch(node.resource, node.name, {"metadata": {"ownerReferences": refs,
                                                                            "uid": node.uid}},
                                    node.namespace, patch_type="strategic")
        except errors.NotFound:
            pass

    async def _remove_finalizer(self, node: GraphNode, finalizer: str) -> None:
        for _ in range(5):
            try:
                obj = await self.client.get(node.resource, node.name, node.namespace)
            except errors.NotFound:
                return
            if obj["metadata"].get("uid") != node.uid:
                return
            finalizers = obj["metadata"].get("finalizers") or []
            if finalizer not in finalizers:
                return
            obj["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
            try:
                await self.client.replace(node.resource, obj)
                return
            except errors.NotFound:
                return
            except errors.Conflict:
                continue

    # --- attempt to orphan ------------------------------------------------------------------------------------------

    async def orphan(self, key: str) -> None:
        node = self.graph.get(key)
        if node is None or not node.orphaning:
            return
        for dep_uid in list(node.dependents):
            dep = self.graph.get(dep_uid)
            if dep is not None:
                await self._patch_owners(dep, [{"$patch": "delete", "uid": node.uid}])
        await self._remove_finalizer(node, ORPHAN)
