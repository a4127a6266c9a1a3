"""Pure Job arithmetic: how many pods should run, which completion indexes are done ("0-2,5" strings),
whether the backoff limit or the deadline is reached, and the conditions upstream writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"


def parse_indexes(text: str | None, limit: int | None = None) -> set[int]:
    """"1,3-5,7" → {1, 3, 4, 5, 7}; indexes at or above `limit` are dropped."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            continue
        out.update(i for i in range(a, b + 1) if limit is None or i < limit)
    return out


def format_indexes(indexes: set[int] | list[int]) -> str:
    """{0, 1, 2, 5} → "0-2,5" (ranges of three or more; pairs written out as upstream does: "0,1")."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(ordered[k]) for k in range(i, j + 1))
        i = j + 1
    return ",".join(parts)


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def pod_index(pod: Obj) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(INDEX_LABEL)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def want_active(job: Obj, succeeded: int, active: int) -> int:
    """NonIndexed: up to parallelism, never more than the completions still missing; with no completions
    (a work queue) nothing new starts once one pod has succeeded."""
    spec = job.get("spec") or {}
    parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
    completions = spec.get("completions")
    if completions is None:
        return active if succeeded > 0 else parallelism
    return max(0, min(parallelism, int(completions) - succeeded))


def finished_condition(job: Obj) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c
    return None


def is_finished(job: Obj) -> bool:
    return finished_condition(job) is not None


def condition(kind: str, reason: str, message: str, now: dt.datetime, status: str = "True") -> dict[str, Any]:
    t = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": status, "lastProbeTime": t, "lastTransitionTime": t, "reason": reason,
            "message": message}


def set_condition(status: Obj, cond: dict[str, Any]) -> bool:
    """Add or update a condition; keep lastTransitionTime when its status does not change. Returns changed."""
    conditions = status.setdefault("conditions", [])
    for i, c in enumerate(conditions):
        if c.get("type") == cond["type"]:
            if c.get("status") == cond["status"] and c.get("reason") == cond["reason"] and \
                    c.get("message") == cond["message"]:
                return False
            if c.get("status") == cond["status"]:
                cond = {**cond, "lastTransitionTime": c.get("lastTransitionTime", cond["lastTransitionTime"])}
            conditions[i] = cond
            return True
    conditions.append(cond)
    return True


def past_deadline(job: Obj, now: dt.datetime) -> float | None:
    """Seconds left before activeDeadlineSeconds (negative when past), None without a deadline."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    deadline = spec.get("activeDeadlineSeconds")
    start = status.get("startTime")
    if deadline is None or not start:
        return None
    started = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    return (started + dt.timedelta(seconds=int(deadline)) - now).total_seconds()


def restarts(pods: list[Obj]) -> int:
    total = 0
    for p in pods:
        st = p.get("status") or {}
        for c in [*(st.get("initContainerStatuses") or ()), *(st.get("containerStatuses") or ())]:
            total += int(c.get("restartCount") or 0)
    return total


def past_backoff_limit_on_failure(job: Obj, active: list[Obj]) -> bool:
    """restartPolicy OnFailure: container restarts in running pods count against backoffLimit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
    total = restarts(active)
    return total > 0 if limit == 0 else total >= limit
