"""Deployment controller: ReplicaSets per pod template (named NAME-<pod-template-hash>, revisions in the
deployment.kubernetes.io/revision annotation), RollingUpdate within maxSurge/maxUnavailable or Recreate,
proportional scaling mid-rollout, pause/resume, revisionHistoryLimit, and the Progressing/Available
conditions with upstream's reasons (progressDeadlineSeconds → ProgressDeadlineExceeded).

`kubectl rollout undo` works as it does upstream: kubectl reads the ReplicaSets this Deployment controls
(controller ownerReference + revision annotation) and patches the Deployment's template back; this controller
then finds that template's ReplicaSet again and gives it the next revision.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import DEPLOYMENTS, PODS, REPLICASETS
from kapal.kube.client.store import NAMESPACE_INDEX, copy_object, object_key
from kapal.kube.controllers import deploymentutil as du
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.ownership import candidates, claim, controller_of, owner_reference
from kapal.kube.meta.selectors import label_selector_from_dict

Obj = dict[str, Any]


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.deployments = self.informer(DEPLOYMENTS)
        self.sets = self.informer(REPLICASETS)
        self.pods = self.informer(PODS)
        self.watch(self.deployments, self.enqueue_handler())
        self.watch(self.sets, EventHandler(on_add=self._rs_changed, on_update=lambda o, n: self._rs_updated(o, n),
                                           on_delete=self._rs_changed))
        self.watch(self.pods, EventHandler(on_delete=self._pod_deleted))

    # --- handlers ---------------------------------------------------------------------------------------------------

    def _owner_key(self, rs: Obj) -> str | None:
        ref = controller_of(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        key = f"{rs['metadata']['namespace']}/{ref['name']}"
        d = self.deployments.indexer.get(key)
        if d is None or d["metadata"]["uid"] != ref.get("uid"):
            return None
        return key

    def _rs_changed(self, rs: Obj) -> None:
        key = self._owner_key(rs)
        if key is not None:
            self.queue.add(key)
        elif controller_of(rs) is None:
            for d in self.deployments.indexer.by_index(NAMESPACE_INDEX, rs["metadata"]["namespace"]):
                sel = (d.get("spec") or {}).get("selector")
                if sel and label_selector_from_dict(sel).matches(rs["metadata"].get("labels")):
                    self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_key = self._owner_key(old)
        if old_key is not None and old_key != self._owner_key(new):
            self.queue.add(old_key)
        self._rs_changed(new)

    def _pod_deleted(self, pod: Obj) -> None:
        """Recreate waits for old pods to be gone: the last one leaving wakes the Deployment up."""
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.sets.indexer.get(f"{pod['metadata']['namespace']}/{ref['name']}")
        if rs is None:
            return
        key = self._owner_key(rs)
        if key is None:
            return
        d = self.deployments.indexer.get(key)
        if ((d or {}).get("spec") or {}).get("strategy", {}).get("type") == "Recreate":
            self.queue.add(key)

    # --- sync -------------------------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.deployments.indexer.get(key)
        if cached is None:
            return
        d = copy_object(cached)
        meta, spec = d["metadata"], d.get("spec") or {}
        now = self.clock.now()
        selector_raw = spec.get("selector")
        selector = label_selector_from_dict(selector_raw)
        if selector.empty:
            self.recorder.record(d, "Warning", "SelectingAll",
                                 "This deployment is selecting all pods. A non-empty selector is required.")
            if int((d.get("status") or {}).get("observedGeneration") or 0) < int(meta.get("generation") or 0):
                d["status"] = {**(d.get("status") or {}), "observedGeneration": meta.get("generation")}
                await self.client.replace_status(DEPLOYMENTS, d)
            return
        rss = await claim(self.client, REPLICASETS, d, selector, candidates(self.sets, d))
        rss = [copy_object(rs) for rs in rss]
        if meta.get("deletionTimestamp"):
            await self.sync_status_only(d, rss, now)
            return
        await self.check_paused_conditions(d, now)
        if spec.get("paused"):
            await self.sync_scale(d, rss, now)
            return
        if self.is_scaling_event(d, rss):
            await self.sync_scale(d, rss, now)
            return
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            await self.rollout_recreate(d, rss, now)
        else:
            await self.rollout_rolling(d, rss, now)

    async def check_paused_conditions(self, d: Obj, now: dt.datetime) -> None:
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused = bool(d["spec"].get("paused"))
        needs = False
        if paused and (cond is None or cond.get("reason") != du.PAUSED):
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.PAUSED, "Deployment is paused",
                                                      now))
            needs = True
        elif not paused and cond is not None and cond.get("reason") == du.PAUSED:
            du.set_condition(status, du.new_condition("Progressing", "Unknown", du.RESUMED, "Deployment is resumed",
                                                      now))
            needs = True
        if needs:
            updated = await self.client.replace_status(DEPLOYMENTS, d)
            d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    def is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        for rs in du.active(rss):
            desired = du.annotation_int(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    # --- the new ReplicaSet and revisions ---------------------------------------------------------------------------

    async def new_and_old(self, d: Obj, rss: list[Obj], create: bool, now: dt.datetime) -> tuple[Obj | None, list]:
        """getAllReplicaSetsAndSyncRevision: the new RS (created if asked and missing) with its revision moved
        forward, and the old ones."""
        existing = du.find_new(d, rss)
        old_rss = du.find_old(d, rss, existing)
        new_revision = du.max_revision(old_rss) + 1
        history_limit = int(d["spec"].get("revisionHistoryLimit", 10) or 0)
        if existing is not None:
            annotations, changed = du.new_rs_annotations(d, existing, new_revision, True, history_limit)
            mrs = d["spec"].get("minReadySeconds", 0)
            if changed or (existing["spec"].get("minReadySeconds", 0) != mrs):
                existing["metadata"]["annotations"] = annotations
                existing["spec"]["minReadySeconds"] = mrs
                existing = await self.client.replace(REPLICASETS, existing)
            await self.sync_deployment_revision(d, existing, now, found=True)
            return existing, old_rss
        if not create:
            return None, old_rss
        new_rs = await self.create_new_rs(d, old_rss, new_revision, now)
        return new_rs, old_rss

    async def create_new_rs(self, d: Obj, old_rss: list[Obj], new_revision: int, now: dt.datetime) -> Obj:
        spec = d["spec"]
        status = d.setdefault("status", {})
        collisions = status.get("collisionCount")
        template = copy_object(spec.get("template") or {})
        phash = du.pod_template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[du.HASH_LABEL] = phash
        selector = copy_object(spec["selector"])
        selector.setdefault("matchLabels", {})[du.HASH_LABEL] = phash
        name = f"{d['metadata']['name']}-{phash}"
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]), "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": selector,
                     "template": template},
        }
        annotations, _ = du.new_rs_annotations(d, rs, new_revision, False)
        rs["metadata"]["annotations"] = annotations
        all_rss = [*old_rss, rs]
        rs["spec"]["replicas"] = du.new_rs_new_replicas(d, all_rss, rs)
        try:
            created = await self.client.create(REPLICASETS, rs)
        except errors.AlreadyExists:
            current = await self.client.get(REPLICASETS, name, d["metadata"]["namespace"])
            if (controller_of(current) or {}).get("uid") == d["metadata"]["uid"] and du.equal_ignore_hash(
                    current["spec"].get("template") or {}, spec.get("template") or {}):
                return current
            status["collisionCount"] = int(collisions or 0) + 1
            await self.client.replace_status(DEPLOYMENTS, d)
            raise errors.Conflict(f"hash collision for ReplicaSet {name}; retrying with collisionCount "
                                  f"{status['collisionCount']}") from None
        except errors.KapalError as e:
            if du.has_progress_deadline(d):
                du.set_condition(status, du.new_condition("Progressing", "False", du.FAILED_RS_CREATE, str(e), now))
                await self.client.replace_status(DEPLOYMENTS, d)
            raise
        if rs["spec"]["replicas"] > 0:
            self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                 f"Scaled up replica set {name} to {rs['spec']['replicas']} from 0")
        if du.has_progress_deadline(d):
            du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_CREATED,
                                                      f'Created new replica set "{name}"', now))
        await self.sync_deployment_revision(d, created, now, found=False)
        return created

    async def sync_deployment_revision(self, d: Obj, new_rs: Obj, now: dt.datetime, found: bool) -> None:
        """The Deployment carries its new RS's revision annotation (kubectl rollout history reads it)."""
        annotations = d["metadata"].setdefault("annotations", {})
        wanted = str(du.revision(new_rs))
        if found and du.has_progress_deadline(d):
            status = d.setdefault("status", {})
            cond = du.get_condition(status, "Progressing")
            if cond is None or (cond.get("reason") not in (du.NEW_RS_AVAILABLE, du.RS_UPDATED, du.TIMED_OUT,
                                                          du.NEW_RS_CREATED, du.FOUND_NEW_RS)):
                du.set_condition(status, du.new_condition("Progressing", "True", du.FOUND_NEW_RS,
                                                          f'Found new replica set "{new_rs["metadata"]["name"]}"',
                                                          now))
        if annotations.get(du.REVISION) == wanted:
            return
        annotations[du.REVISION] = wanted
        status_before = d.get("status")
        updated = await self.client.replace(DEPLOYMENTS, d)
        d["metadata"] = updated["metadata"]
        d["status"] = status_before or {}

    # --- strategies -------------------------------------------------------------------------------------------------

    async def scale_rs(self, d: Obj, rs: Obj, size: int) -> bool:
        old = du.rs_replicas(rs)
        annotations, ann_changed = du.replicas_annotations(rs, du.replicas(d), du.replicas(d) + du.max_surge(d))
        if old == size and not ann_changed:
            return False
        rs["spec"]["replicas"] = size
        rs["metadata"]["annotations"] = annotations
        updated = await self.client.replace(REPLICASETS, rs)
        rs.update(updated)
        if old != size:
            verb = "up" if size > old else "down"
            self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                 f"Scaled {verb} replica set {rs['metadata']['name']} to {size} from {old}")
        return old != size

    async def rollout_rolling(self, d: Obj, rss: list[Obj], now: dt.datetime) -> None:
        new_rs, old_rss = await self.new_and_old(d, rss, True, now)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        want = du.replicas(d)
        if du.rs_replicas(new_rs) != want:
            target = want if du.rs_replicas(new_rs) > want else du.new_rs_new_replicas(d, all_rss, new_rs)
            if await self.scale_rs(d, new_rs, target):
                await self.sync_rollout_status(d, all_rss, new_rs, now)
                return
        budget = du.max_old_scale_down(d, all_rss, new_rs)
        live_old = du.active(old_rss)
        scaled = False
        if du.total_replicas(old_rss) > 0 and budget > 0:
            for rs, size in du.cleanup_unhealthy(live_old, budget):
                scaled = await self.scale_rs(d, rs, size) or scaled
            for rs, size in du.scale_down_old(d, [*old_rss, new_rs], du.active(old_rss)):
                scaled = await self.scale_rs(d, rs, size) or scaled
        if scaled:
            await self.sync_rollout_status(d, all_rss, new_rs, now)
            return
        status = du.calculate_status(d, all_rss, new_rs, now)
        if du.complete(d, status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, all_rss, new_rs, now)

    async def rollout_recreate(self, d: Obj, rss: list[Obj], now: dt.datetime) -> None:
        new_rs, old_rss = await self.new_and_old(d, rss, False, now)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        scaled = False
        for rs in du.active(old_rss):
            scaled = await self.scale_rs(d, rs, 0) or scaled
        if scaled:
            await self.sync_rollout_status(d, all_rss, new_rs, now)
            return
        if self.old_pods_running(old_rss):
            await self.sync_rollout_status(d, all_rss, new_rs, now)
            return
        if new_rs is None:
            new_rs, old_rss = await self.new_and_old(d, rss, True, now)
            assert new_rs is not None
            all_rss = [*old_rss, new_rs]
        await self.scale_rs(d, new_rs, du.replicas(d))
        status = du.calculate_status(d, all_rss, new_rs, now)
        if du.complete(d, status):
            await self.cleanup(d, old_rss)
        await self.sync_rollout_status(d, all_rss, new_rs, now)

    def old_pods_running(self, old_rss: list[Obj]) -> bool:
        if du.actual_replicas(old_rss) > 0:
            return True
        uids = {rs["metadata"]["uid"] for rs in old_rss}
        if not uids or not old_rss:
            return False
        ns = old_rss[0]["metadata"]["namespace"]
        for pod in self.pods.indexer.by_index(NAMESPACE_INDEX, ns):
            if (controller_of(pod) or {}).get("uid") in uids and (pod.get("status") or {}).get("phase") not in (
                    "Failed", "Succeeded"):
                return True
        return False

    async def sync_scale(self, d: Obj, rss: list[Obj], now: dt.datetime) -> None:
        """Scale only (paused Deployments, or replicas changed): proportional across the active RSs."""
        new_rs, old_rss = await self.new_and_old(d, rss, False, now)
        await self.scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self.cleanup(d, old_rss)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        await self.sync_status(d, all_rss, new_rs, now)

    async def scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        target = du.active_or_latest(new_rs, old_rss)
        if target is not None:
            if du.rs_replicas(target) != du.replicas(d):
                await self.scale_rs(d, target, du.replicas(d))
            return
        if du.is_saturated(d, new_rs):
            for rs in du.active(old_rss):
                await self.scale_rs(d, rs, 0)
            return
        if (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
            return
        live = du.active([*old_rss, *([new_rs] if new_rs else [])])
        sizes = du.proportional_sizes(d, live)
        for rs in live:
            await self.scale_rs(d, rs, sizes[rs["metadata"]["name"]])

    async def cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Keep at most revisionHistoryLimit old, empty ReplicaSets; delete the oldest revisions first."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        empty = [rs for rs in old_rss if du.rs_replicas(rs) == 0 and du.status_of(rs, "replicas") == 0
                 and int((rs.get("status") or {}).get("observedGeneration") or 0) >= int(
                     rs["metadata"].get("generation") or 0) and not rs["metadata"].get("deletionTimestamp")]
        extra = len(empty) - int(limit)
        if extra <= 0:
            return
        for rs in sorted(empty, key=lambda r: (du.revision(r), r["metadata"].get("creationTimestamp", "")))[:extra]:
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"],
                                         uid=rs["metadata"]["uid"])
            except errors.NotFound:
                pass

    # --- status -----------------------------------------------------------------------------------------------------

    async def sync_status_only(self, d: Obj, rss: list[Obj], now: dt.datetime) -> None:
        new_rs, old_rss = await self.new_and_old(d, rss, False, now)
        await self.sync_status(d, [*old_rss, *([new_rs] if new_rs else [])], new_rs, now)

    async def sync_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: dt.datetime) -> None:
        status = du.calculate_status(d, all_rss, new_rs, now)
        await self._write_status(d, status)

    async def sync_rollout_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: dt.datetime) -> None:
        status = du.calculate_status(d, all_rss, new_rs, now)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, "Progressing")
        cond = du.get_condition(status, "Progressing")
        done = (int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0) and cond is not None
                and cond.get("reason") == du.NEW_RS_AVAILABLE)
        rs_name = new_rs["metadata"]["name"] if new_rs else None
        if du.has_progress_deadline(d) and not done:
            if du.complete(d, status):
                msg = (f'ReplicaSet "{rs_name}" has successfully progressed.' if rs_name
                       else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.')
                du.set_condition(status, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE, msg, now))
            elif du.progressing(d, status):
                msg = (f'ReplicaSet "{rs_name}" is progressing.' if rs_name
                       else f'Deployment "{d["metadata"]["name"]}" is progressing.')
                new = du.new_condition("Progressing", "True", du.RS_UPDATED, msg, now)
                if cond is not None and cond.get("status") == "True":
                    new["lastTransitionTime"] = cond.get("lastTransitionTime", new["lastTransitionTime"])
                du.remove_condition(status, "Progressing")
                du.set_condition(status, new)
            elif du.timed_out(d, status, now):
                msg = (f'ReplicaSet "{rs_name}" has timed out progressing.' if rs_name
                       else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.')
                du.set_condition(status, du.new_condition("Progressing", "False", du.TIMED_OUT, msg, now))
        failures = [c for rs in all_rss for c in (rs.get("status") or {}).get("conditions") or ()
                    if c.get("type") == "ReplicaFailure" and c.get("status") == "True"]
        if failures:
            du.set_condition(status, {**du.new_condition("ReplicaFailure", "True", failures[0].get("reason", ""),
                                                         failures[0].get("message", ""), now)})
        else:
            du.remove_condition(status, "ReplicaFailure")
        if not await self._write_status(d, status):
            self.requeue_stuck(d, status, now)

    def requeue_stuck(self, d: Obj, status: Obj, now: dt.datetime) -> None:
        cond = du.get_condition(status, "Progressing")
        if cond is None or not du.has_progress_deadline(d) or du.complete(d, status) or cond.get("reason") in (
                du.NEW_RS_AVAILABLE, du.TIMED_OUT):
            return
        since = dt.datetime.fromisoformat(str(cond.get("lastUpdateTime")).replace("Z", "+00:00"))
        after = (since + dt.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"])) - now).total_seconds()
        self.queue.add_after(object_key(d), self.clock.real_seconds(max(after, 0.0)) + 1.0)

    async def _write_status(self, d: Obj, status: Obj) -> bool:
        status = du.strip_zero(status)
        if du.strip_zero(d.get("status") or {}) == status:
            return False
        d["status"] = status
        try:
            await self.client.replace_status(DEPLOYMENTS, d)
        except errors.NotFound:
            return False
        return True

