"""What a kubelet reports for a pod it runs without processes: pure functions from the pod and its simulated
lifecycle to the pod's status (phase, conditions, IPs, container statuses), as the real kubelet words them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

EXIT_ANNOTATION = "kapal.dev/hollow-exit"
CRASH_BACKOFF_BASE = 10.0
CRASH_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class ExitSpec:
    after: float
    code: int


def parse_exit(annotations: dict[str, str] | None) -> ExitSpec | None:
    """`kapal.dev/hollow-exit: "<seconds>[:<exit code>]"`; None when absent or malformed."""
    raw = (annotations or {}).get(EXIT_ANNOTATION)
    if raw is None:
        return None
    seconds, _, code = raw.strip().partition(":")
    try:
        return ExitSpec(max(0.0, float(seconds)), int(code) if code else 0)
    except ValueError:
        return None


def ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodRun:
    """The simulated life of one pod on a hollow node: when it started, its restarts, how it ended."""

    uid: str
    ip: str
    started: dt.datetime
    run_started: dt.datetime  # the current container run
    restarts: int = 0
    last_exit: dict[str, Any] | None = None  # lastState.terminated of the previous run
    waiting_until: dt.datetime | None = None  # in CrashLoopBackOff until then
    finished: dict[str, Any] | None = None  # terminal: {"code", "at"}
    transitions: dict[str, dt.datetime] = field(default_factory=dict)

    def advance(self, pod: dict[str, Any], now: dt.datetime) -> float | None:
        """Move the simulation to `now`; the seconds until the next change, or None if nothing is pending."""
        if self.finished is not None:
            return None
        if self.waiting_until is not None:
            if now < self.waiting_until:
                return (self.waiting_until - now).total_seconds()
            self.waiting_until = None
            self.run_started = now
        spec = parse_exit((pod.get("metadata") or {}).get("annotations"))
        if spec is None:
            return None
        ends = self.run_started + dt.timedelta(seconds=spec.after)
        if now < ends:
            return (ends - now).total_seconds()
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if policy == "Never" or (policy == "OnFailure" and spec.code == 0):
            self.finished = {"code": spec.code, "at": ends}
            return None
        self.last_exit = {"exitCode": spec.code, "reason": "Completed" if spec.code == 0 else "Error",
                          "startedAt": ts(self.run_started), "finishedAt": ts(ends),
                          "containerID": ""}
        self.restarts += 1
        backoff = min(CRASH_BACKOFF_BASE * 2 ** (self.restarts - 1), CRASH_BACKOFF_MAX)
        self.waiting_until = ends + dt.timedelta(seconds=backoff)
        if now >= self.waiting_until:
            return self.advance(pod, now)
        return (self.waiting_until - now).total_seconds()

    def since(self, condition: str, value: str, now: dt.datetime) -> str:
        """lastTransitionTime of a condition: kept while its value stays, reset when it flips."""
        key = f"{condition}={value}"
        if key not in self.transitions:
            for k in [k for k in self.transitions if k.startswith(condition + "=")]:
                del self.transitions[k]
            self.transitions[key] = now
        return ts(self.transitions[key])


def container_id(run: PodRun, name: str) -> str:
    return f"hollow://{run.uid[:13]}-{name}"


def _container_status(c: dict[str, Any], run: PodRun, *, init: bool) -> dict[str, Any]:
    image = c.get("image", "")
    status: dict[str, Any] = {"name": c.get("name", ""), "image": image, "imageID": f"hollow://{image}",
                              "containerID": container_id(run, c.get("name", "")), "restartCount": 0}
    if init:
        status.update(ready=True, started=False, state={"terminated": {
            "exitCode": 0, "reason": "Completed", "startedAt": ts(run.started), "finishedAt": ts(run.started),
            "containerID": status["containerID"]}})
        return status
    status["restartCount"] = run.restarts
    if run.last_exit is not None:
        status["lastState"] = {"terminated": {**run.last_exit, "containerID": status["containerID"]}}
    else:
        status["lastState"] = {}
    if run.finished is not None:
        code = run.finished["code"]
        status.update(ready=False, started=False, state={"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": ts(run.run_started),
            "finishedAt": ts(run.finished["at"]), "containerID": status["containerID"]}})
    elif run.waiting_until is not None:
        status.update(ready=False, started=False, state={"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {int(min(CRASH_BACKOFF_BASE * 2 ** (run.restarts - 1), CRASH_BACKOFF_MAX))}s "
                       f"restarting failed container={c.get('name', '')} pod="}})
    else:
        status.update(ready=True, started=True, state={"running": {"startedAt": ts(run.run_started)}})
    return status


def pod_status(pod: dict[str, Any], run: PodRun, host_ip: str, now: dt.datetime) -> dict[str, Any]:
    """The status the hollow kubelet reports for `pod` in the state `run` is in."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    containers = [_container_status(c, run, init=False) for c in spec.get("containers") or []]
    inits = [_container_status(c, run, init=True) for c in spec.get("initContainers") or []]
    ready = all(c["ready"] for c in containers)
    if run.finished is not None:
        phase = "Succeeded" if run.finished["code"] == 0 else "Failed"
    else:
        phase = "Running"

    def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        value = "True" if ok else "False"
        c: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None,
                             "lastTransitionTime": run.since(kind, value, now)}
        if reason and not ok:
            c["reason"] = reason
        return c

    terminal = run.finished is not None
    not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    conditions = [
        cond("PodReadyToStartContainers", not terminal),
        cond("Initialized", True),
        cond("Ready", ready, not_ready_reason),
        cond("ContainersReady", ready, not_ready_reason),
        cond("PodScheduled", True),
    ]
    if not ready and not terminal:
        names = ",".join(c["name"] for c in containers if not c["ready"])
        for c in conditions[2:4]:
            c["message"] = f"containers with unready status: [{names}]"
    status: dict[str, Any] = {
        "phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": run.ip, "podIPs": [{"ip": run.ip}], "startTime": ts(run.started),
        "containerStatuses": containers, "qosClass": old.get("qosClass", "BestEffort"),
    }
    if spec.get("hostNetwork"):
        status["podIP"] = host_ip
        status["podIPs"] = [{"ip": host_ip}]
    if inits:
        status["initContainerStatuses"] = inits
    return status


def same_status(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Whether reporting `b` would change nothing a reader sees in `a`."""
    if not a:
        return False
    return all(a.get(k) == v for k, v in b.items())
