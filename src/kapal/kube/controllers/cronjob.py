"""CronJob controller: create a Job from spec.jobTemplate at each scheduled time (in spec.timeZone), honouring
concurrencyPolicy (Allow, Forbid, Replace), startingDeadlineSeconds, suspend and missed starts; keep
successfulJobsHistoryLimit/failedJobsHistoryLimit finished Jobs; track status.active, lastScheduleTime and
lastSuccessfulTime.

Time comes from the controller's clock: tests run the controller manager with a clock N times faster
(hidden flag --cronjob-clock-speed or KAPAL_CRONJOB_CLOCK_SPEED), so `*/1 * * * *` fires every 60/N seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kapal import errors
from kapal.kube.client.clock import format_time, parse_time
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import CRONJOBS, JOBS
from kapal.kube.client.store import NAMESPACE_INDEX, copy_object
from kapal.kube.controllers import cron
from kapal.kube.controllers import jobutil as ju
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.ownership import controller_of, owner_reference

Obj = dict[str, Any]
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"


class CronJobController(Controller):
    name = "cronjob-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs = self.informer(CRONJOBS)
        self.jobs = self.informer(JOBS)
        self.watch(self.cronjobs, self.enqueue_handler())
        self.watch(self.jobs, EventHandler(on_add=self._job_event, on_update=lambda _o, n: self._job_event(n),
                                           on_delete=self._job_event))

    def _job_event(self, job: Obj) -> None:
        ref = controller_of(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata']['namespace']}/{ref['name']}")

    async def sync(self, key: str) -> None:
        cached = self.cronjobs.indexer.get(key)
        if cached is None:
            return
        cj = copy_object(cached)
        meta = cj["metadata"]
        cj.setdefault("spec", {})
        if meta.get("deletionTimestamp"):
            return
        status = cj.setdefault("status", {})
        before = copy_object(status)
        now = self.clock.now()
        jobs = [j for j in self.jobs.indexer.by_index(NAMESPACE_INDEX, meta["namespace"])
                if (controller_of(j) or {}).get("uid") == meta["uid"]]
        self._reconcile_active(cj, jobs)
        await self._cleanup_history(cj, jobs)
        requeue: float | None = None
        try:
            requeue = await self._schedule(cj, now)
        finally:
            if status != before:
                try:
                    await self.client.replace_status(CRONJOBS, cj)
                except errors.NotFound:
                    pass
        if requeue is not None:
            self.queue.add_after(key, self.clock.real_seconds(max(requeue, 0.0)) + 0.1)

    def _reconcile_active(self, cj: Obj, jobs: list[Obj]) -> None:
        status = cj["status"]
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active = []
        for ref in status.get("active") or ():
            job = by_uid.get(ref.get("uid"))
            if job is None:
                continue
            if ju.is_finished(job):
                self._saw_finished(cj, job)
                continue
            active.append(ref)
        known = {ref.get("uid") for ref in active}
        for job in jobs:
            if job["metadata"]["uid"] not in known and not ju.is_finished(job):
                active.append(self._ref(job))
        for job in jobs:
            if ju.is_finished(job):
                self._saw_finished(cj, job, quiet=True)
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    def _saw_finished(self, cj: Obj, job: Obj, quiet: bool = False) -> None:
        cond = ju.finished_condition(job) or {}
        status = cj["status"]
        if cond.get("type") == "Complete":
            done = (job.get("status") or {}).get("completionTime")
            last = status.get("lastSuccessfulTime")
            if done and (not last or parse_time(done) > parse_time(last)):  # type: ignore[operator]
                status["lastSuccessfulTime"] = done
        if not quiet:
            self.recorder.record(cj, "Normal", "SawCompletedJob",
                                 f"Saw completed job: {job['metadata']['name']}, status: {cond.get('type')}")

    @staticmethod
    def _ref(job: Obj) -> dict[str, Any]:
        m = job["metadata"]
        return {"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "namespace": m["namespace"],
                "uid": m["uid"], "resourceVersion": m.get("resourceVersion", "")}

    async def _cleanup_history(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj["spec"]
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                            ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            finished = [j for j in jobs if (ju.finished_condition(j) or {}).get("type") == kind
                        and not j["metadata"].get("deletionTimestamp")]
            finished.sort(key=lambda j: (j.get("status") or {}).get("startTime")
                          or j["metadata"].get("creationTimestamp", ""))
            for job in finished[:max(0, len(finished) - int(limit))]:
                await self._delete_job(cj, job)

    async def _delete_job(self, cj: Obj, job: Obj) -> None:
        try:
            await self.client.delete(JOBS, job["metadata"]["name"], job["metadata"]["namespace"],
                                     propagation_policy="Background", uid=job["metadata"]["uid"])
        except (errors.NotFound, errors.Conflict):
            return
        self.recorder.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")

    async def _schedule(self, cj: Obj, now: dt.datetime) -> float | None:
        """Start the Job due now, if any; returns seconds (clock time) until the next start."""
        spec, status, meta = cj["spec"], cj["status"], cj["metadata"]
        try:
            schedule = cron.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except errors.Invalid as e:
            self.recorder.record(cj, "Warning", "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {e}")
            return None
        if spec.get("suspend"):
            return None
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(meta.get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
        scheduled, missed = cron.most_recent(schedule, earliest, now)
        next_run = schedule.next_after(now)
        wait = (next_run - now).total_seconds()
        if scheduled is None:
            return wait
        if missed > cron.MAX_MISSED:
            self.recorder.record(cj, "Warning", "TooManyMissedTimes",
                                 "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                                 "check clock skew")
        if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
            self.recorder.record(cj, "Warning", "MissSchedule",
                                 f"Missed scheduled time to start a job: {format_time(scheduled)}")
            return wait
        name = cron.job_name(meta["name"], scheduled)
        if any(ref.get("name") == name for ref in status.get("active") or ()):
            return wait
        policy = spec.get("concurrencyPolicy", "Allow")
        active = status.get("active") or []
        if policy == "Forbid" and active:
            self.recorder.record(cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is "
                                                                   "running and concurrency policy is Forbid")
            return wait
        if policy == "Replace":
            for ref in list(active):
                job = self.jobs.indexer.get(f"{ref.get('namespace', meta['namespace'])}/{ref['name']}")
                if job is not None:
                    await self._delete_job(cj, job)
            status.pop("active", None)
        job = self._job_from_template(cj, name, scheduled, schedule.tz)
        try:
            created = await self.client.create(JOBS, job, meta["namespace"])
        except errors.AlreadyExists:
            existing = self.jobs.indexer.get(f"{meta['namespace']}/{name}")
            if existing is not None and (controller_of(existing) or {}).get("uid") == meta["uid"]:
                status["lastScheduleTime"] = format_time(scheduled)
                return wait
            self.recorder.record(cj, "Warning", "FailedCreate", f"Error creating job: jobs.batch \"{name}\" "
                                                                "already exists")
            return wait
        except errors.KapalError as e:
            self.recorder.record(cj, "Warning", "FailedCreate", f"Error creating job: {e}")
            raise
        self.recorder.record(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        status.setdefault("active", []).append(self._ref(created))
        status["lastScheduleTime"] = format_time(scheduled)
        return wait

    @staticmethod
    def _job_from_template(cj: Obj, name: str, scheduled: dt.datetime, tz: dt.tzinfo) -> Obj:
        template = copy_object(cj["spec"].get("jobTemplate") or {})
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_ANNOTATION] = scheduled.astimezone(tz).isoformat().replace("+00:00", "Z")
        meta: dict[str, Any] = {"name": name, "namespace": cj["metadata"]["namespace"],
                                "labels": dict(tmeta.get("labels") or {}), "annotations": annotations,
                                "ownerReferences": [owner_reference(cj)]}
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template.get("spec") or {}}
