"""A pod's status from what the kubelet knows, worded as the upstream kubelet words it.

Pure: the pod, one `ContainerView` per spec container (its engine containers newest first, a waiting
reason the sync loop set, probe results) and the sandbox's addresses go in; the status object comes out:
phase, conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled),
containerStatuses / initContainerStatuses with state, lastState, ready, started, restartCount,
containerID `kapal://<id>`, imageID, and reasons ContainerCreating, PodInitializing, ErrImagePull,
ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError, Completed, Error, OOMKilled, StartError.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .containers import ContainerRecord, container_id


def ts(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerView:
    name: str
    image: str
    records: list[ContainerRecord] = field(default_factory=list)  # newest first
    waiting: tuple[str, str] | None = None  # (reason, message) set by the sync loop
    ready: bool = False
    started: bool | None = None
    termination_message: str = ""
    restartable: bool = False  # an init container with restartPolicy Always (a sidecar)

    @property
    def latest(self) -> ContainerRecord | None:
        return self.records[0] if self.records else None


def terminated_state(r: ContainerRecord, message: str = "") -> dict[str, Any]:
    if r.oom_killed:
        reason = "OOMKilled"
    elif r.error and not r.started_at:
        reason = "StartError"
    elif r.exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    out: dict[str, Any] = {"exitCode": r.exit_code, "reason": reason, "startedAt": ts(r.started_at or r.created),
                           "finishedAt": ts(r.finished_at or r.started_at or r.created),
                           "containerID": container_id(r.id)}
    text = message or (r.error if reason == "StartError" else "")
    if text:
        out["message"] = text
    return out


def container_status(v: ContainerView, default_waiting: str) -> dict[str, Any]:
    latest = v.latest
    status: dict[str, Any] = {"name": v.name, "image": v.image, "imageID": "", "ready": False, "restartCount": 0,
                              "started": False, "state": {}, "lastState": {}}
    if latest is None:
        reason, message = v.waiting or (default_waiting, "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return status
    status["restartCount"] = latest.restart_count
    status["containerID"] = container_id(latest.id)
    status["imageID"] = latest.image_id
    previous = next((r for r in v.records[1:] if r.exited), None)
    if latest.running:
        status["state"] = {"running": {"startedAt": ts(latest.started_at)}}
        status["ready"] = v.ready
        status["started"] = v.started if v.started is not None else True
        if previous is not None:
            status["lastState"] = {"terminated": terminated_state(previous)}
    elif latest.exited:
        terminated = terminated_state(latest, v.termination_message)
        if v.waiting is not None:
            reason, message = v.waiting
            status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            status["lastState"] = {"terminated": terminated}
        else:
            status["state"] = {"terminated": terminated}
            if previous is not None:
                status["lastState"] = {"terminated": terminated_state(previous)}
    else:  # created, not started yet
        reason, message = v.waiting or ("ContainerCreating", "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if previous is not None:
            status["lastState"] = {"terminated": terminated_state(previous)}
    return status


def _init_done(inits: list[ContainerView]) -> bool:
    for v in inits:
        r = v.latest
        if v.restartable:
            if r is None or not r.running or v.started is False:
                return False
            continue
        if r is None or not r.exited or r.exit_code != 0:
            return False
    return True


def _init_failed(pod: dict[str, Any], inits: list[ContainerView]) -> bool:
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    if policy != "Never":
        return False
    return any(v.latest is not None and v.latest.exited and v.latest.exit_code != 0 and not v.restartable
               for v in inits)


def phase(pod: dict[str, Any], inits: list[ContainerView], regular: list[ContainerView]) -> str:
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    if _init_failed(pod, inits):
        return "Failed"
    if not _init_done(inits):
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for v in regular:
        r = v.latest
        if r is None:
            waiting += 1
        elif r.running:
            running += 1
        elif r.exited:
            stopped += 1
            if v.waiting is None and r.exit_code == 0:  # waiting: about to be restarted
                succeeded += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, old: dict[str, dict[str, Any]], now: str, reason: str = "",
               message: str = "") -> dict[str, Any]:
    value = "True" if ok else "False"
    prev = old.get(kind)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == value else now
    cond: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    if ok and reason == "PodCompleted":
        cond["reason"] = reason
    return cond


@dataclass
class SandboxView:
    ready: bool = False
    ips: list[str] = field(default_factory=list)


def pod_status(pod: dict[str, Any], inits: list[ContainerView], regular: list[ContainerView], sandbox: SandboxView, *,
               host_ip: str, qos: str, start_time: str, now: dt.datetime | None = None,
               reason: str = "", message: str = "") -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    now_text = ts(now) or ""
    old_status = pod.get("status") or {}
    old = {c.get("type"): c for c in old_status.get("conditions") or []}
    p = phase(pod, inits, regular)
    init_done = _init_done(inits) or p in ("Succeeded",)
    init_statuses = [container_status(v, "PodInitializing") for v in inits]
    waiting_default = "PodInitializing" if inits and not _init_done(inits) else "ContainerCreating"
    statuses = [container_status(v, waiting_default) for v in regular]
    completed = p in ("Succeeded", "Failed")
    unready = [v.name for v, s in zip(regular, statuses) if not s["ready"]]
    unready += [v.name for v, s in zip(inits, init_statuses) if v.restartable and not s["ready"]]
    incomplete = [v.name for v in inits if v.latest is None or (not v.restartable and not (
        v.latest.exited and v.latest.exit_code == 0))]
    conditions = []
    conditions.append(_condition("PodReadyToStartContainers", sandbox.ready, old, now_text))
    if completed:
        conditions.append(_condition("Initialized", True, old, now_text, "PodCompleted"))
    elif init_done:
        conditions.append(_condition("Initialized", True, old, now_text))
    else:
        conditions.append(_condition("Initialized", False, old, now_text, "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(incomplete)}]"))
    if completed:
        ready_reason, ready_msg = "PodCompleted", ""
        containers_ready = False
    else:
        containers_ready = not unready
        ready_reason = "ContainersNotReady"
        ready_msg = f"containers with unready status: [{' '.join(unready)}]"
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    gates_ok = all((old.get(g) or {}).get("status") == "True" for g in gates)
    conditions.append(_condition("ContainersReady", containers_ready, old, now_text, ready_reason, ready_msg))
    if containers_ready and not gates_ok:
        missing = [g for g in gates if (old.get(g) or {}).get("status") != "True"]
        conditions.append(_condition("Ready", False, old, now_text, "ReadinessGatesNotReady",
                                     f"corresponding condition of pod readiness gate \"{missing[0]}\" does not "
                                     "exist."))
    else:
        conditions.append(_condition("Ready", containers_ready, old, now_text, ready_reason, ready_msg))
    scheduled = old.get("PodScheduled")
    conditions.append(scheduled if scheduled and scheduled.get("status") == "True" else
                      _condition("PodScheduled", True, old, now_text))
    for kind, cond in old.items():  # conditions others own (readiness gates, DisruptionTarget) stay
        if kind not in {c["type"] for c in conditions}:
            conditions.append(cond)
    status: dict[str, Any] = {"phase": p, "conditions": conditions, "hostIP": host_ip,
                              "hostIPs": [{"ip": host_ip}] if host_ip else [], "startTime": start_time,
                              "qosClass": qos, "containerStatuses": statuses}
    if sandbox.ips:
        status["podIP"] = sandbox.ips[0]
        status["podIPs"] = [{"ip": ip} for ip in sandbox.ips]
    elif old_status.get("podIP"):
        status["podIP"] = old_status["podIP"]
        status["podIPs"] = old_status.get("podIPs") or [{"ip": old_status["podIP"]}]
    if inits:
        status["initContainerStatuses"] = init_statuses
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
