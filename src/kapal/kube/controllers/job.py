"""Job controller: run pods until `completions` succeed (`parallelism` at a time; Indexed jobs once per
completion index), fail the Job past backoffLimit or activeDeadlineSeconds, suspend and resume, and write
the Complete/Failed conditions (with SuccessCriteriaMet/FailureTarget first, as 1.31+ do).

Finished pods are counted exactly once with upstream's job-tracking finalizer: every pod is created with
`batch.kubernetes.io/job-tracking`; a finished pod's uid first goes to status.uncountedTerminatedPods, then
its finalizer is removed, then it moves into the succeeded/failed counters. A pod deleted before it
finished is counted as failed. So counts survive pods being deleted (podgc, users) at any moment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import JOBS, PODS
from kapal.kube.client.store import copy_object, object_key
from kapal.kube.controllers import jobutil as ju
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.expectations import Expectations
from kapal.kube.controllers.ownership import candidates, claim, controller_of
from kapal.kube.controllers.podutil import deletion_rank, is_ready, pod_from_template
from kapal.kube.controllers.replicaset import slow_start
from kapal.kube.meta.selectors import label_selector_from_dict

Obj = dict[str, Any]
BURST = 500


def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase", "")


class JobController(Controller):
    name = "job-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.jobs = self.informer(JOBS)
        self.pods = self.informer(PODS)
        self.watch(self.jobs, EventHandler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n),
                                           on_delete=self._job_deleted))
        self.watch(self.pods, EventHandler(on_add=self._pod_added, on_update=lambda _o, n: self._pod_event(n),
                                           on_delete=self._pod_deleted))
        self._warned: set[str] = set()

    def _job_deleted(self, job: Obj) -> None:
        self.expectations.forget(object_key(job))
        self.enqueue(job)

    def _owner_key(self, pod: Obj) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        return f"{pod['metadata']['namespace']}/{ref['name']}"

    def _pod_added(self, pod: Obj) -> None:
        key = self._pod_event(pod)
        if key is not None:
            self.expectations.creation_observed(key)

    def _pod_event(self, pod: Obj) -> str | None:
        key = self._owner_key(pod)
        if key is None:
            return None
        job = self.jobs.indexer.get(key)
        if job is None or job["metadata"]["uid"] != (controller_of(pod) or {}).get("uid"):
            if ju.TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ()):
                self.queue.add("orphan-pod:" + object_key(pod))
            return None
        self.queue.add(key)
        return key

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    # --- sync -------------------------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith("orphan-pod:"):
            await self._release_orphan(key.split(":", 1)[1])
            return
        cached = self.jobs.indexer.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        job = copy_object(cached)
        spec = job.get("spec") or {}
        now = self.clock.now()
        status = job.setdefault("status", {})
        selector = label_selector_from_dict(spec.get("selector"))
        pods = await claim(self.client, PODS, job, selector, candidates(self.pods, job))
        if spec.get("podFailurePolicy") and key not in self._warned:
            self._warned.add(key)
            self.recorder.record(job, "Warning", "Unsupported",
                                 "spec.podFailurePolicy is not supported by kapal; failed pods count against "
                                 "backoffLimit")

        if ju.is_finished(job):
            await self._track(job, pods, finished=True)
            return
        satisfied = self.expectations.satisfied(key)
        changed = await self._track(job, pods, finished=False)
        if changed:
            return  # the status write brings us back with fresh counts
        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not p["metadata"].get(
            "deletionTimestamp")]
        terminating = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and p["metadata"].get(
            "deletionTimestamp")]
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        indexed = ju.is_indexed(job)
        completions = spec.get("completions")
        done_indexes = ju.parse_indexes(status.get("completedIndexes"), completions) if indexed else set()

        # suspension
        if spec.get("suspend"):
            if active:
                await self._delete_pods(key, job, active)
            if status.get("startTime") is not None or not any(
                    c.get("type") == "Suspended" and c.get("status") == "True" for c in status.get("conditions") or ()):
                ju.set_condition(status, ju.condition("Suspended", "JobSuspended", "Job suspended", now))
                status.pop("startTime", None)
                self.recorder.record(job, "Normal", "Suspended", "Job suspended")
            await self._write_status(job, active=0, ready=0, terminating=len(terminating))
            return
        if any(c.get("type") == "Suspended" and c.get("status") == "True" for c in status.get("conditions") or ()):
            ju.set_condition(status, ju.condition("Suspended", "JobResumed", "Job resumed", now, "False"))
            self.recorder.record(job, "Normal", "Resumed", "Job resumed")
        if not status.get("startTime"):
            status["startTime"] = ju.condition("x", "", "", now)["lastTransitionTime"]

        # failure: backoff limit, deadline
        failure: tuple[str, str] | None = None
        backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
        if failed > backoff_limit or ju.past_backoff_limit_on_failure(job, active):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        left = ju.past_deadline(job, now)
        if failure is None and left is not None and left <= 0:
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if failure is not None:
            if active:
                await self._delete_pods(key, job, active)
            ju.set_condition(status, ju.condition("FailureTarget", failure[0], failure[1], now))
            ju.set_condition(status, ju.condition("Failed", failure[0], failure[1], now))
            self.recorder.record(job, "Warning", failure[0], failure[1])
            await self._write_status(job, active=0, ready=0, terminating=len(terminating) + len(active))
            return
        if left is not None:
            self.queue.add_after(key, self.clock.real_seconds(left) + 0.05)

        # completion
        if indexed:
            complete = completions is not None and len(done_indexes) >= int(completions)
        elif completions is None:
            complete = succeeded > 0 and not active and not terminating
        else:
            complete = succeeded >= int(completions)
        if complete:
            if active:
                await self._delete_pods(key, job, active)
            msg = "Reached expected number of succeeded pods"
            ju.set_condition(status, ju.condition("SuccessCriteriaMet", "CompletionsReached", msg, now))
            ju.set_condition(status, ju.condition("Complete", "CompletionsReached", msg, now))
            status["completionTime"] = ju.condition("x", "", "", now)["lastTransitionTime"]
            self.recorder.record(job, "Normal", "Completed", "Job completed")
            await self._write_status(job, active=0, ready=0, terminating=len(terminating))
            return

        # converge the number of running pods
        if satisfied:
            if indexed:
                await self._manage_indexed(key, job, active, done_indexes, terminating)
            else:
                want = ju.want_active(job, succeeded, len(active))
                if spec.get("podReplacementPolicy") == "Failed":
                    want_new = want - len(active) - len(terminating)
                else:
                    want_new = want - len(active)
                if len(active) > want:
                    colocated: dict[str, int] = {}
                    victims = sorted(active, key=lambda p: deletion_rank(p, colocated))[:len(active) - want]
                    await self._delete_pods(key, job, victims)
                elif want_new > 0:
                    await self._create_pods(key, job, [None] * min(want_new, BURST))
        await self._write_status(job, active=len(active), ready=sum(1 for p in active if is_ready(p)),
                                 terminating=len(terminating))

    async def _manage_indexed(self, key: str, job: Obj, active: list[Obj], done: set[int],
                              terminating: list[Obj]) -> None:
        spec = job["spec"]
        completions = int(spec.get("completions") or 0)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        running: dict[int, list[Obj]] = {}
        for p in active:
            idx = ju.pod_index(p)
            if idx is None or idx >= completions or idx in done:
                await self._delete_pods(key, job, [p])
                continue
            running.setdefault(idx, []).append(p)
        for dupes in running.values():
            if len(dupes) > 1:
                await self._delete_pods(key, job, dupes[1:])
        busy = set(running) | {i for i in (ju.pod_index(p) for p in terminating) if i is not None}
        pending = [i for i in range(completions) if i not in done and i not in busy]
        room = parallelism - len(running)
        if room > 0 and pending:
            await self._create_pods(key, job, pending[:min(room, BURST)])

    async def _create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        ns = job["metadata"]["namespace"]
        template = job["spec"].get("template") or {}
        self.expectations.expect_creations(key, len(indexes))
        queue = list(indexes)

        async def create() -> None:
            index = queue.pop(0)
            pod = pod_from_template(template, job, ns)
            pod["metadata"].setdefault("finalizers", []).append(ju.TRACKING_FINALIZER)
            if index is not None:
                name = job["metadata"]["name"]
                pod["metadata"]["generateName"] = f"{name}-{index}-"
                pod["metadata"].setdefault("annotations", {})[ju.INDEX_ANNOTATION] = str(index)
                pod["metadata"]["labels"][ju.INDEX_LABEL] = str(index)
                pod["spec"].setdefault("hostname", f"{name}-{index}")
                for c in [*(pod["spec"].get("initContainers") or ()), *(pod["spec"].get("containers") or ())]:
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == ju.INDEX_ENV for e in env):
                        env.append({"name": ju.INDEX_ENV, "valueFrom": {"fieldRef": {
                            "apiVersion": "v1", "fieldPath": f"metadata.labels['{ju.INDEX_LABEL}']"}}})
            try:
                created = await self.client.create(PODS, pod, ns)
            except errors.KapalError as e:
                self.recorder.record(job, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.record(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

        done = await slow_start(len(indexes), 1, create)
        if done < len(indexes):
            self.expectations.creations_skipped(key, len(indexes) - done)

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> None:
        self.expectations.expect_deletions(key, [object_key(p) for p in pods])

        async def delete(pod: Obj) -> None:
            try:
                await self.client.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
                self.recorder.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
            except errors.NotFound:
                self.expectations.deletion_skipped(key, object_key(pod))

        await asyncio.gather(*(delete(p) for p in pods))

    # --- counting finished pods -------------------------------------------------------------------------------------

    async def _track(self, job: Obj, pods: list[Obj], finished: bool) -> bool:
        """Count finished pods exactly once; True when the status was written (the next sync sees it).

        A: finished pods still holding the finalizer go to uncountedTerminatedPods (Indexed: their index to
        completedIndexes); B: their finalizers are removed; C: they move into the succeeded/failed counters."""
        status = job["status"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        u_ok, u_failed = set(uncounted.get("succeeded") or ()), set(uncounted.get("failed") or ())
        tracked = [p for p in pods if ju.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or ())]
        if finished:
            await asyncio.gather(*(self._remove_finalizer(p) for p in tracked))
            if u_ok or u_failed:
                status["uncountedTerminatedPods"] = {}
                await self._write_status(job)
                return True
            return False
        indexed = ju.is_indexed(job)
        completions = job["spec"].get("completions")
        done = ju.parse_indexes(status.get("completedIndexes"), completions) if indexed else set()
        new_ok, new_failed, new_indexes = [], [], set()
        for p in tracked:
            uid = p["metadata"]["uid"]
            if uid in u_ok or uid in u_failed:
                continue
            phase = _phase(p)
            if phase == "Succeeded":
                new_ok.append(uid)
                idx = ju.pod_index(p) if indexed else None
                if idx is not None and idx not in done and (completions is None or idx < int(completions)):
                    new_indexes.add(idx)
            elif phase == "Failed" or p["metadata"].get("deletionTimestamp"):
                new_failed.append(uid)
        if new_ok or new_failed:
            status["uncountedTerminatedPods"] = {"succeeded": sorted(u_ok | set(new_ok)),
                                                 "failed": sorted(u_failed | set(new_failed))}
            if new_indexes:
                status["completedIndexes"] = ju.format_indexes(done | new_indexes)
            await self._write_status(job)
            return True
        if not u_ok and not u_failed:
            return False
        await asyncio.gather(*(self._remove_finalizer(p) for p in tracked
                               if p["metadata"]["uid"] in u_ok or p["metadata"]["uid"] in u_failed))
        if indexed:
            status["succeeded"] = len(done)
        else:
            status["succeeded"] = int(status.get("succeeded") or 0) + len(u_ok)
        status["failed"] = int(status.get("failed") or 0) + len(u_failed)
        status["uncountedTerminatedPods"] = {}
        await self._write_status(job)
        return True

    async def _remove_finalizer(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.patch(PODS, meta["name"], {"metadata": {
                "$deleteFromPrimitiveList/finalizers": [ju.TRACKING_FINALIZER]}}, meta["namespace"],
                patch_type="strategic")
        except errors.NotFound:
            pass

    async def _release_orphan(self, pod_key: str) -> None:
        pod = self.pods.indexer.get(pod_key)
        if pod is not None and ju.TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ()):
            key = self._owner_key(pod)
            if key is None or self.jobs.indexer.get(key) is None or self.jobs.indexer.get(key)["metadata"][
                    "uid"] != (controller_of(pod) or {}).get("uid"):
                await self._remove_finalizer(pod)

    async def _write_status(self, job: Obj, **counts: int) -> None:
        status = job["status"]
        for k, v in counts.items():
            if v:
                status[k] = v
            else:
                status.pop(k, None)
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = {k: v for k, v in uncounted.items() if v}
        for k in ("succeeded", "failed"):
            if not status.get(k):
                status.pop(k, None)
        if counts:
            status["ready"] = counts.get("ready", 0)
        cached = self.jobs.indexer.get(object_key(job))
        if cached is not None and (cached.get("status") or {}) == status:
            return
        try:
            await self.client.replace_status(JOBS, job)
        except errors.NotFound:
            pass
