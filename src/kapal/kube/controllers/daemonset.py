"""DaemonSet controller: exactly one pod per eligible node (nodeSelector, required node affinity, taints the
pod does not tolerate), placed by the scheduler through a `metadata.name` node-affinity term as upstream does;
RollingUpdate (maxUnavailable, maxSurge) or OnDelete; history as ControllerRevisions (kubectl rollout
history/undo read them); status counts as kubectl rollout status reads them."""

from __future__ import annotations

import asyncio
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS
from kapal.kube.client.store import NAMESPACE_INDEX, copy_object, object_key
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.deploymentutil import pod_template_hash, scaled_value, semantic
from kapal.kube.controllers.expectations import Expectations
from kapal.kube.controllers.ownership import candidates, claim, controller_of, owner_reference
from kapal.kube.controllers.podutil import is_available, is_ready, pod_from_template
from kapal.kube.meta.selectors import label_selector_from_dict

Obj = dict[str, Any]
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# Tolerations every DaemonSet pod gets, so that daemons keep running where ordinary pods would be evicted.
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key != taint.get("key") and not (op == "Exists" and not key):
        return False
    return op == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def _expr(e: dict[str, Any], value: str | None) -> bool:
    op, values = e.get("operator"), e.get("values") or []
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            return int(value or "") > int(values[0]) if op == "Gt" else int(value or "") < int(values[0])
        except (ValueError, IndexError):
            return False
    return False


def pod_tolerations(ds: Obj) -> list[dict[str, Any]]:
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    tolerations = list(spec.get("tolerations") or [])
    extra = list(DAEMON_TOLERATIONS) + ([NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tolerations):
            tolerations.append(t)
    return tolerations


def should_run(ds: Obj, node: Obj) -> bool:
    """Whether a daemon pod belongs on `node`: its selector and affinity match, and every NoSchedule or
    NoExecute taint is tolerated."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms is not None:
        def term_ok(t: dict[str, Any]) -> bool:
            exprs, fields = t.get("matchExpressions") or [], t.get("matchFields") or []
            if not exprs and not fields:
                return False
            return all(_expr(e, labels.get(e.get("key", ""))) for e in exprs) and all(
                _expr(f, meta.get("name") if f.get("key") == "metadata.name" else None) for f in fields)

        if not any(term_ok(t) for t in terms):
            return False
    tolerations = pod_tolerations(ds)
    for taint in (node.get("spec") or {}).get("taints") or ():
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(_tolerates(t, taint) for t in tolerations):
            return False
    return True


def with_node_affinity(pod_spec: dict[str, Any], node: str) -> None:
    """Pin the pod to `node` for the scheduler: one metadata.name term added to (or replacing) the required
    node affinity, as upstream's ReplaceDaemonSetPodNodeNameNodeAffinity."""
    affinity = pod_spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    required = na.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    field = {"key": "metadata.name", "operator": "In", "values": [node]}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        required["nodeSelectorTerms"] = [{"matchFields": [field]}]
        return
    for t in terms:
        t["matchFields"] = [f for f in t.get("matchFields") or () if f.get("key") != "metadata.name"] + [field]


class DaemonSetController(Controller):
    name = "daemonset-controller"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.sets = self.informer(DAEMONSETS)
        self.nodes = self.informer(NODES)
        self.pods = self.informer(PODS)
        self.revisions = self.informer(CONTROLLERREVISIONS)
        self.watch(self.sets, self.enqueue_handler())
        self.watch(self.nodes, EventHandler(on_add=self._node_event, on_update=self._node_updated,
                                            on_delete=self._node_event))
        self.watch(self.pods, EventHandler(on_add=self._pod_added, on_update=lambda _o, n: self._pod_event(n),
                                           on_delete=self._pod_deleted))
        self.watch(self.revisions, EventHandler())

    def _all(self) -> None:
        for ds in self.sets.indexer.list():
            self.enqueue(ds)

    def _node_event(self, node: Obj) -> None:
        self._all()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        om, nm = old.get("metadata") or {}, new.get("metadata") or {}
        if om.get("labels") != nm.get("labels") or (old.get("spec") or {}).get("taints") != (
                new.get("spec") or {}).get("taints"):
            self._all()

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        return f"{pod['metadata']['namespace']}/{ref['name']}"

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)

    def _pod_event(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    # --- history ----------------------------------------------------------------------------------------------------

    async def current_revision(self, ds: Obj) -> tuple[str, int]:
        """The ControllerRevision of the current template (created, or renumbered, as needed): (hash, number)."""
        meta = ds["metadata"]
        template = ds["spec"].get("template") or {}
        collisions = (ds.get("status") or {}).get("collisionCount")
        h = pod_template_hash(template, collisions)
        mine = [r for r in self.revisions.indexer.by_index(NAMESPACE_INDEX, meta["namespace"])
                if (controller_of(r) or {}).get("uid") == meta["uid"]]
        top = max((int(r.get("revision") or 0) for r in mine), default=0)
        data = {"spec": {"template": {**copy_object(template), "$patch": "replace"}}}
        for r in mine:
            if semantic(r.get("data")) == semantic(data):
                if int(r.get("revision") or 0) < top:
                    fresh = copy_object(r)
                    fresh["revision"] = top + 1
                    await self.client.replace(CONTROLLERREVISIONS, fresh)
                    return r["metadata"]["labels"].get(HASH_LABEL, h), top + 1
                return (r["metadata"].get("labels") or {}).get(HASH_LABEL, h), int(r.get("revision") or 0)
        labels = dict((ds["spec"].get("selector") or {}).get("matchLabels") or {})
        labels[HASH_LABEL] = h
        rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
               "metadata": {"name": f"{meta['name']}-{h}", "namespace": meta["namespace"], "labels": labels,
                            "ownerReferences": [owner_reference(ds)]},
               "data": data, "revision": top + 1}
        try:
            await self.client.create(CONTROLLERREVISIONS, rev)
        except errors.AlreadyExists:
            pass
        return h, top + 1

    async def truncate_history(self, ds: Obj, live_hashes: set[str], current: str) -> None:
        limit = int(ds["spec"].get("revisionHistoryLimit", 10) if ds["spec"].get("revisionHistoryLimit")
                    is not None else 10)
        meta = ds["metadata"]
        old = [r for r in self.revisions.indexer.by_index(NAMESPACE_INDEX, meta["namespace"])
               if (controller_of(r) or {}).get("uid") == meta["uid"]
               and (r["metadata"].get("labels") or {}).get(HASH_LABEL) not in live_hashes | {current}]
        old.sort(key=lambda r: int(r.get("revision") or 0))
        for r in old[:max(0, len(old) - limit)]:
            try:
                await self.client.delete(CONTROLLERREVISIONS, r["metadata"]["name"], meta["namespace"])
            except errors.NotFound:
                pass

    # --- sync -------------------------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.sets.indexer.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        ds = copy_object(cached)
        meta = ds["metadata"]
        selector = label_selector_from_dict(ds["spec"].get("selector"))
        if selector.empty:
            self.recorder.record(ds, "Warning", "SelectingAll",
                                 "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        pods = await claim(self.client, PODS, ds, selector, candidates(self.pods, ds))
        if meta.get("deletionTimestamp"):
            return
        current, _ = await self.current_revision(ds)
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName") or _pinned_node(p)
            if node:
                by_node.setdefault(node, []).append(p)
        if self.expectations.satisfied(key):
            await self.manage(key, ds, by_node, current)
        live_hashes = {(p["metadata"].get("labels") or {}).get(HASH_LABEL, "") for p in pods}
        await self.truncate_history(ds, live_hashes, current)
        await self.update_status(ds, by_node, current)

    async def manage(self, key: str, ds: Obj, by_node: dict[str, list[Obj]], current: str) -> None:
        create: list[str] = []
        delete: list[Obj] = []
        nodes = self.nodes.indexer.list()
        node_names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            name = node["metadata"]["name"]
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            if should_run(ds, node):
                failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
                if failed:
                    delete.extend(failed)
                    self.recorder.record(ds, "Warning", "FailedDaemonPod",
                                         f"Found failed daemon pod {ns_name(failed[0])} on node {name}, will try to "
                                         "kill it")
                    pods = [p for p in pods if p not in failed]
                if not pods:
                    create.append(name)
                elif len(pods) > 1:
                    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
                    keep = next((p for p in pods if _hash(p) == current), pods[0])
                    delete.extend(p for p in pods if p is not keep)
            else:
                delete.extend(pods)
        for name, pods in by_node.items():
            if name not in node_names:
                delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not create:
            delete.extend(self.rolling_update(ds, by_node, current, nodes))
        await self.apply(key, ds, create, delete, current)

    def rolling_update(self, ds: Obj, by_node: dict[str, list[Obj]], current: str, nodes: list[Obj]) -> list[Obj]:
        """Old pods to delete now: at most maxUnavailable nodes without an available daemon at a time."""
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        eligible = [n["metadata"]["name"] for n in nodes if should_run(ds, n)]
        desired = len(eligible)
        max_unavailable = scaled_value(ru.get("maxUnavailable"), desired, True, default="1")
        max_surge = scaled_value(ru.get("maxSurge"), desired, True, default="0")
        if max_surge > 0:
            max_unavailable = 0
        mrs = int(ds["spec"].get("minReadySeconds") or 0)
        now = self.clock.now()
        unavailable = 0
        old_available: list[Obj] = []
        old_unavailable: list[Obj] = []
        for name in eligible:
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            if not pods:
                unavailable += 1
                continue
            new = [p for p in pods if _hash(p) == current]
            old = [p for p in pods if _hash(p) != current]
            if new and not any(is_available(p, mrs, now) for p in new):
                unavailable += 1
            if old and not new:
                if any(is_available(p, mrs, now) for p in old):
                    old_available.append(old[0])
                else:
                    old_unavailable.append(old[0])
                    unavailable += 1
        out = list(old_unavailable)
        room = max(0, max_unavailable - unavailable)
        out.extend(old_available[:room])
        return out

    async def apply(self, key: str, ds: Obj, create: list[str], delete: list[Obj], current: str) -> None:
        ns = ds["metadata"]["namespace"]
        self.expectations.expect(key, len(create), [object_key(p) for p in delete])
        template = ds["spec"].get("template") or {}
        generation = str(ds["metadata"].get("generation", 1))

        async def create_on(node: str) -> None:
            pod = pod_from_template(template, ds, ns, extra_labels={HASH_LABEL: current,
                                                                    GENERATION_LABEL: generation})
            pod["spec"]["tolerations"] = pod_tolerations(ds)
            with_node_affinity(pod["spec"], node)
            try:
                created = await self.client.create(PODS, pod, ns)
            except errors.KapalError as e:
                self.expectations.creations_skipped(key, 1)
                self.recorder.record(ds, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

        async def delete_pod(pod: Obj) -> None:
            try:
                await self.client.delete(PODS, pod["metadata"]["name"], ns)
                self.recorder.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
            except errors.NotFound:
                self.expectations.deletion_skipped(key, object_key(pod))

        results = await asyncio.gather(*(create_on(n) for n in create), *(delete_pod(p) for p in delete),
                                       return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        if errs:
            raise errs[0]

    async def update_status(self, ds: Obj, by_node: dict[str, list[Obj]], current: str) -> None:
        mrs = int(ds["spec"].get("minReadySeconds") or 0)
        now = self.clock.now()
        desired = scheduled = misscheduled = ready = available = updated = 0
        for node in self.nodes.indexer.list():
            name = node["metadata"]["name"]
            pods = [p for p in by_node.get(name, []) if not p["metadata"].get("deletionTimestamp")]
            if should_run(ds, node):
                desired += 1
                if pods:
                    scheduled += 1
                    pod = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))[0]
                    if is_ready(pod):
                        ready += 1
                        if is_available(pod, mrs, now):
                            available += 1
                    if any(_hash(p) == current for p in pods):
                        updated += 1
            elif pods:
                misscheduled += 1
        status = {"currentNumberScheduled": scheduled, "numberMisscheduled": misscheduled,
                  "desiredNumberScheduled": desired, "numberReady": ready,
                  "observedGeneration": ds["metadata"].get("generation", 0), "updatedNumberScheduled": updated,
                  "numberAvailable": available, "numberUnavailable": desired - available}
        old = ds.get("status") or {}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        for k in ("observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not status[k]:
                del status[k]
        if mrs > 0 and ready != available:
            self.queue.add_after(object_key(ds), mrs)
        if {k: v for k, v in old.items() if k != "conditions"} == status:
            return
        ds["status"] = {**status, **({"conditions": old["conditions"]} if old.get("conditions") else {})}
        try:
            await self.client.replace_status(DAEMONSETS, ds)
        except errors.NotFound:
            pass


def _hash(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(HASH_LABEL, "")


def _pinned_node(pod: Obj) -> str | None:
    """The node a not-yet-scheduled daemon pod is pinned to by its metadata.name affinity term."""
    terms = (((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for t in terms:
        for f in t.get("matchFields") or ():
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or ()) == 1:
                return f["values"][0]
    return None


def ns_name(pod: Obj) -> str:
    return pod["metadata"]["name"]
