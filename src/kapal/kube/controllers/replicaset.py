"""ReplicaSet (and ReplicationController) controller: keep spec.replicas active pods that match the selector,
creating in slow-start batches (1, 2, 4, …, at most 500 per sync) and deleting the least valuable first;
report replicas, fullyLabeledReplicas, readyReplicas, availableReplicas and observedGeneration."""

from __future__ import annotations

import asyncio
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import PODS, REPLICASETS, REPLICATIONCONTROLLERS
from kapal.kube.client.store import NAMESPACE_INDEX, copy_object, object_key
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.expectations import Expectations
from kapal.kube.controllers.ownership import candidates, claim, controller_of
from kapal.kube.controllers.podutil import deletion_rank, is_active, is_available, is_ready, pod_from_template
from kapal.kube.meta.resources import ResourceType
from kapal.kube.meta.selectors import LabelSelector, Requirement, label_selector_from_dict

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1

Obj = dict[str, Any]


def selector_of(obj: Obj) -> LabelSelector:
    sel = (obj.get("spec") or {}).get("selector")
    if obj.get("kind") == "ReplicationController":
        sel = sel or ((obj["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        return LabelSelector(tuple(Requirement(k, "=", (str(v),)) for k, v in sorted(sel.items())))
    return label_selector_from_dict(sel)


async def slow_start(count: int, initial: int, create: Any) -> int:
    """Call `create()` count times in doubling batches, stopping after the first batch with a failure (so a
    quota or admission error costs one request, not hundreds). Returns how many succeeded."""
    done, batch = 0, min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(create() for _ in range(batch)), return_exceptions=True)
        ok = sum(1 for r in results if not isinstance(r, BaseException))
        done += ok
        if ok < batch:
            errs = [r for r in results if isinstance(r, BaseException) and not isinstance(r, errors.KapalError)]
            if errs:
                raise errs[0]
            return done
        batch = min(2 * batch, count - done)
    return done


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    resource: ResourceType = REPLICASETS
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.sets = self.informer(self.resource)
        self.pods = self.informer(PODS)
        self.watch(self.sets, EventHandler(on_add=self.enqueue, on_update=self._set_updated,
                                           on_delete=self._set_deleted))
        self.watch(self.pods, EventHandler(on_add=self._pod_added, on_update=self._pod_updated,
                                           on_delete=self._pod_deleted))

    # --- handlers ---------------------------------------------------------------------------------------------------

    def _set_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _set_deleted(self, obj: Obj) -> None:
        self.expectations.forget(object_key(obj))
        self.enqueue(obj)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != self.resource.kind:
            return None
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        owner = self.sets.indexer.get(key)
        if owner is None or owner["metadata"]["uid"] != ref.get("uid"):
            return None
        return key

    def _orphan_owners(self, pod: Obj) -> list[str]:
        labels = pod["metadata"].get("labels") or {}
        if not labels:
            return []
        return [object_key(s) for s in self.sets.indexer.by_index(NAMESPACE_INDEX, pod["metadata"]["namespace"])
                if selector_of(s).matches(labels)]

    def _pod_added(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)
        elif controller_of(pod) is None:
            for k in self._orphan_owners(pod):
                self.queue.add(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            self._pod_deleted(new)
            return
        key = self._owner_key(new)
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            self.queue.add(key)
            owner = self.sets.indexer.get(key)
            mrs = int(((owner or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if mrs > 0 and is_ready(new) and not is_ready(old):
                self.queue.add_after(key, mrs + 0.5)
        elif controller_of(new) is None and (old["metadata"].get("labels") != new["metadata"].get("labels")
                                             or controller_of(old) is not None):
            for k in self._orphan_owners(new):
                self.queue.add(k)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != self.resource.kind:
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # --- sync -------------------------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self.sets.indexer.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp")
        selector = selector_of(rs)
        mine = await claim(self.client, PODS, rs, selector, [p for p in candidates(self.pods, rs) if is_active(p)])
        failure: str | None = None
        gone: set[str] = set()
        if needs_sync:
            failure, gone = await self.manage_replicas(key, rs, mine)
        # pods deleted just now are no longer counted (upstream counts them until their deletion is observed)
        await self.update_status(rs, [p for p in mine if p["metadata"]["uid"] not in gone], failure)

    async def manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> tuple[str | None, set[str]]:
        """Create or delete pods toward spec.replicas: (a creation failure to report, uids of deleted pods)."""
        want = int(rs["spec"].get("replicas", 1))
        diff = len(pods) - want
        ns = rs["metadata"]["namespace"]
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            template = rs["spec"].get("template") or {}
            failures: list[BaseException] = []

            async def create() -> None:
                try:
                    pod = await self.client.create(PODS, pod_from_template(template, rs, ns), ns)
                except errors.KapalError as e:
                    failures.append(e)
                    raise
                self.recorder.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

            done = await slow_start(count, SLOW_START_INITIAL_BATCH, create)
            if done < count:
                self.expectations.creations_skipped(key, count - done)
                message = str(failures[0]) if failures else "pod creation failed"
                self.recorder.record(rs, "Warning", "FailedCreate", f"Error creating: {message}")
                if failures and isinstance(failures[0], errors.Forbidden) and "being terminated" in message:
                    return None, set()
                return message, set()
        elif diff > 0:
            count = min(diff, BURST_REPLICAS)
            colocated: dict[str, int] = {}
            for p in pods:
                node = (p.get("spec") or {}).get("nodeName") or ""
                colocated[node] = colocated.get(node, 0) + 1
            victims = sorted(pods, key=lambda p: deletion_rank(p, colocated))[:count]
            self.expectations.expect_deletions(key, [object_key(p) for p in victims])

            async def delete(pod: Obj) -> None:
                try:
                    await self.client.delete(PODS, pod["metadata"]["name"], ns)
                    self.recorder.record(rs, "Normal", "SuccessfulDelete",
                                         f"Deleted pod: {pod['metadata']['name']}")
                except errors.NotFound:
                    self.expectations.deletion_skipped(key, object_key(pod))
                except errors.KapalError:
                    self.expectations.deletion_skipped(key, object_key(pod))
                    raise

            results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
            errs = [r for r in results if isinstance(r, BaseException)]
            if errs:
                raise errs[0]
            return None, {p["metadata"]["uid"] for p in victims}
        return None, set()

    async def update_status(self, rs: Obj, pods: list[Obj], failure: str | None) -> None:
        now = self.clock.now()
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        mrs = int(spec.get("minReadySeconds") or 0)
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())),
            "readyReplicas": sum(1 for p in pods if is_ready(p)),
            "availableReplicas": sum(1 for p in pods if is_available(p, mrs, now)),
            "observedGeneration": rs["metadata"].get("generation", 0),
        }
        old = rs.get("status") or {}
        conditions = [c for c in old.get("conditions") or () if c.get("type") != "ReplicaFailure"]
        if failure is not None:
            prev = next((c for c in old.get("conditions") or () if c.get("type") == "ReplicaFailure"), None)
            conditions.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                               "message": failure,
                               "lastTransitionTime": (prev or {}).get("lastTransitionTime") or
                               now.strftime("%Y-%m-%dT%H:%M:%SZ")})
        if conditions:
            status["conditions"] = conditions
        status = {k: v for k, v in status.items() if v or k == "replicas"}
        if mrs > 0 and status.get("readyReplicas", 0) != status.get("availableReplicas", 0):
            self.queue.add_after(object_key(rs), mrs)
        if {k: v for k, v in old.items() if v or k == "replicas"} == status:
            return
        new = copy_object(rs)
        new["status"] = status
        await self.client.replace_status(self.resource, new)


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller-controller"
    resource = REPLICATIONCONTROLLERS
