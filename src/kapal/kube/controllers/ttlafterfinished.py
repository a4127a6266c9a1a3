"""TTL-after-finished controller: a Job with spec.ttlSecondsAfterFinished is deleted (foreground, so its pods
go first) that many seconds after it completed or failed."""

from __future__ import annotations

import datetime as dt

from kapal import errors
from kapal.kube.client.kinds import JOBS
from kapal.kube.client.store import split_key
from kapal.kube.controllers import jobutil as ju
from kapal.kube.controllers.base import Controller, ControllerContext


def expires_in(job: dict, now: dt.datetime) -> float | None:
    """Seconds until the Job may be deleted (<= 0: now), None if it has no TTL or has not finished."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    cond = ju.finished_condition(job)
    if ttl is None or cond is None or job["metadata"].get("deletionTimestamp"):
        return None
    finished = (job.get("status") or {}).get("completionTime") if cond.get("type") == "Complete" else None
    finished = finished or cond.get("lastTransitionTime")
    if not finished:
        return None
    at = dt.datetime.fromisoformat(finished.replace("Z", "+00:00")) + dt.timedelta(seconds=int(ttl))
    return (at - now).total_seconds()


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = self.informer(JOBS)
        self.watch(self.jobs, self.enqueue_handler())

    async def sync(self, key: str) -> None:
        job = self.jobs.indexer.get(key)
        if job is None:
            return
        left = expires_in(job, self.clock.now())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, self.clock.real_seconds(left) + 0.05)
            return
        ns, name = split_key(key)
        try:
            await self.client.delete(JOBS, name, ns, propagation_policy="Foreground", uid=job["metadata"]["uid"])
        except (errors.NotFound, errors.Conflict):
            pass
