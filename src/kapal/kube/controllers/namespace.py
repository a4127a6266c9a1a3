"""Namespace controller: a namespace being deleted (phase Terminating, `kubernetes` in spec.finalizers) has
everything in it deleted, resource by resource; once nothing is left, the `kubernetes` finalizer is removed
through namespaces/NAME/finalize and the API server lets the namespace go. Its status conditions say what is
still there, with upstream's condition types (NamespaceContentRemaining, NamespaceFinalizersRemaining, …).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from kapal import errors
from kapal.kube.client.kinds import NAMESPACES
from kapal.kube.client.store import copy_object
from kapal.kube.client.workqueue import ItemExponentialLimiter, WorkQueue
from kapal.kube.controllers.base import Controller, ControllerContext, Requeue
from kapal.kube.controllers.deploymentutil import ts
from kapal.kube.meta.resources import RESOURCES, ResourceType

FINALIZER = "kubernetes"


def namespaced_resources() -> list[ResourceType]:
    """One resource per stored namespaced kind that can be listed and deleted."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in RESOURCES:
        if not r.namespaced or r.storage_key in seen or not {"list", "delete"} <= set(r.verbs):
            continue
        if r.storage_group is not None and r.storage_group != r.group:
            continue
        seen.add(r.storage_key)
        out.append(r)
    return out


class NamespaceController(Controller):
    name = "namespace-controller"
    workers = 10

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.queue = WorkQueue(self.name, ItemExponentialLimiter(0.05, 5.0))
        self.namespaces = self.informer(NAMESPACES)
        self.watch(self.namespaces, self.enqueue_handler())
        self.resources = namespaced_resources()

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return
        name = ns["metadata"]["name"]
        remaining: Counter[str] = Counter()
        finalizers: Counter[str] = Counter()
        failures: list[str] = []
        for r in self.resources:
            try:
                items = (await self.client.list(r, name)).get("items") or []
            except errors.KapalError as e:
                failures.append(f"{r.plural}.{r.group or ''}: {e}".replace(".:", ":"))
                continue
            live = [i for i in items if not i["metadata"].get("deletionTimestamp")]
            if live:
                try:
                    if "deletecollection" in r.verbs:
                        await self.client.request("DELETE", r.path(name), body={
                            "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
                    else:
                        for item in live:
                            await self.client.delete(r, item["metadata"]["name"], name,
                                                     propagation_policy="Background")
                except errors.NotFound:
                    pass
                except errors.KapalError as e:
                    failures.append(f"{r.plural}: {e}")
                    continue
                items = (await self.client.list(r, name)).get("items") or []
            if items:
                remaining[f"{r.plural}.{r.group}" if r.group else r.plural] += len(items)
                for i in items:
                    for f in i["metadata"].get("finalizers") or ():
                        finalizers[f] += 1
        await self.update_conditions(ns, remaining, finalizers, failures)
        if remaining or failures:
            raise Requeue(f"namespace {name} still has content: {dict(remaining)} {failures}", delay=0.0)
        fresh = copy_object(ns)
        fresh["spec"]["finalizers"] = [f for f in fresh["spec"].get("finalizers") or () if f != FINALIZER]
        try:
            await self.client.replace(NAMESPACES, fresh, subresource="finalize")
        except errors.NotFound:
            pass

    async def update_conditions(self, ns: dict[str, Any], remaining: Counter[str], finalizers: Counter[str],
                                failures: list[str]) -> None:
        now = ts(dt.datetime.now(dt.UTC))

        def cond(kind: str, bad: bool, reason_bad: str, message: str, reason_ok: str, ok_message: str) -> dict:
            return {"type": kind, "status": "True" if bad else "False", "lastTransitionTime": now,
                    "reason": reason_bad if bad else reason_ok, "message": message if bad else ok_message}

        content = ", ".join(f"{k} has {v} resource instances" for k, v in sorted(remaining.items()))
        fins = ", ".join(f"{k} in {v} resource instances" for k, v in sorted(finalizers.items()))
        wanted = [
            cond("NamespaceDeletionDiscoveryFailure", False, "DiscoveryFailed", "", "ResourcesDiscovered",
                 "All resources successfully discovered"),
            cond("NamespaceDeletionGroupVersionParsingFailure", False, "GroupVersionParsingFailed", "",
                 "ParsedGroupVersions", "All legacy kube types successfully parsed"),
            cond("NamespaceDeletionContentFailure", bool(failures), "ContentDeletionFailed",
                 "Failed to delete all resource types, " + "; ".join(failures), "ContentDeleted",
                 "All content successfully deleted, may be waiting on finalization"),
            cond("NamespaceContentRemaining", bool(remaining), "SomeResourcesRemain",
                 f"Some resources are remaining: {content}", "ContentRemoved", "All content successfully removed"),
            cond("NamespaceFinalizersRemaining", bool(finalizers), "SomeFinalizersRemain",
                 f"Some content in the namespace has finalizers remaining: {fins}", "ContentHasNoFinalizers",
                 "All content-preserving finalizers finished"),
        ]
        old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or ()}
        changed = False
        for c in wanted:
            prev = old.get(c["type"])
            if prev is not None and all(prev.get(k) == c[k] for k in ("status", "reason", "message")):
                c["lastTransitionTime"] = prev.get("lastTransitionTime", now)
            else:
                changed = True
        if not changed:
            return
        fresh = copy_object(ns)
        fresh.setdefault("status", {})["conditions"] = wanted
        try:
            await self.client.replace_status(NAMESPACES, fresh)
        except (errors.NotFound, errors.Conflict):
            pass
