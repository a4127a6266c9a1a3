"""Pod status from container records: phases, conditions and the reasons upstream shows."""

from __future__ import annotations

import datetime as dt

from kapal.kube.kubelet.containers import ContainerRecord
from kapal.kube.kubelet.status import ContainerView, SandboxView, container_status, phase, pod_status

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def rec(state, code=0, restarts=0, oom=False, error="", cid="abc", started=True):
    return ContainerRecord(id=cid, name="c", pod_uid="u", kind="regular", state=state, restart_count=restarts,
                           exit_code=code, oom_killed=oom, error=error, created=T0,
                           started_at=T0 if started else None, finished_at=T0 + dt.timedelta(seconds=5)
                           if state == "exited" else None, image_id="sha256:1")


def pod(policy="Always", inits=0):
    spec = {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}
    if inits:
        spec["initContainers"] = [{"name": f"i{n}", "image": "busybox"} for n in range(inits)]
    return {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec, "status": {}}


def view(*records, waiting=None, ready=False, name="c"):
    return ContainerView(name=name, image="busybox", records=list(records), waiting=waiting, ready=ready)


def test_running_with_a_previous_crash():
    s = container_status(view(rec("running", restarts=1, cid="new"), rec("exited", 2, cid="old"), ready=True), "x")
    assert s["state"] == {"running": {"startedAt": "2026-01-01T12:00:00Z"}}
    assert s["lastState"]["terminated"]["exitCode"] == 2 and s["lastState"]["terminated"]["reason"] == "Error"
    assert s["restartCount"] == 1 and s["ready"] and s["started"] and s["containerID"] == "kapal://new"


def test_crash_loop_and_oom():
    s = container_status(view(rec("exited", 137, restarts=3, oom=True),
                              waiting=("CrashLoopBackOff", "back-off 40s restarting failed container=c")), "x")
    assert s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert s["lastState"]["terminated"]["reason"] == "OOMKilled" and s["restartCount"] == 3


def test_never_started_and_start_errors():
    s = container_status(view(waiting=("ErrImagePull", 'Failed to pull image "x": not found')), "ContainerCreating")
    assert s["state"] == {"waiting": {"reason": "ErrImagePull", "message": 'Failed to pull image "x": not found'}}
    assert "containerID" not in s and s["restartCount"] == 0
    s = container_status(view(), "PodInitializing")
    assert s["state"] == {"waiting": {"reason": "PodInitializing"}}
    s = container_status(view(rec("exited", 127, error='exec: "nope": executable file not found in $PATH',
                                  started=False)), "x")
    t = s["state"]["terminated"]
    assert t["exitCode"] == 127 and t["reason"] == "StartError" and "not found" in t["message"]


def test_phases():
    assert phase(pod(), [], [view()]) == "Pending"
    assert phase(pod(), [], [view(rec("running"))]) == "Running"
    assert phase(pod("Never"), [], [view(rec("exited", 0))]) == "Succeeded"
    assert phase(pod("Never"), [], [view(rec("exited", 1))]) == "Failed"
    assert phase(pod("OnFailure"), [], [view(rec("exited", 1), waiting=("CrashLoopBackOff", ""))]) == "Running"
    assert phase(pod("Always"), [], [view(rec("exited", 0), waiting=("CrashLoopBackOff", ""))]) == "Running"
    init_running = view(rec("running"), name="i0")
    assert phase(pod(inits=1), [init_running], [view()]) == "Pending"
    init_failed = view(rec("exited", 1), name="i0")
    assert phase(pod("Never", inits=1), [init_failed], [view()]) == "Failed"


def test_conditions_and_addresses():
    p = pod(inits=1)
    s = pod_status(p, [view(rec("running"), name="i0")], [view()], SandboxView(True, ["10.244.0.9"]),
                   host_ip="192.0.2.2", qos="BestEffort", start_time="2026-01-01T11:59:59Z", now=T0)
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Initialized"]["status"] == "False" and conds["Initialized"]["reason"] == "ContainersNotInitialized"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [i0]"
    assert conds["Ready"]["message"] == "containers with unready status: [c]"
    assert conds["PodReadyToStartContainers"]["status"] == "True" and conds["PodScheduled"]["status"] == "True"
    assert s["podIP"] == "10.244.0.9" and s["podIPs"] == [{"ip": "10.244.0.9"}] and s["hostIPs"] == [{"ip":
                                                                                                     "192.0.2.2"}]
    assert s["initContainerStatuses"][0]["state"]["running"] and s["containerStatuses"][0]["state"]["waiting"][
        "reason"] == "PodInitializing"
    # lastTransitionTime stays while a condition keeps its value
    p["status"] = s
    later = pod_status(p, [view(rec("exited", 0), name="i0")], [view(rec("running"), ready=True)],
                       SandboxView(True, ["10.244.0.9"]), host_ip="192.0.2.2", qos="BestEffort",
                       start_time="x", now=T0 + dt.timedelta(minutes=1))
    conds2 = {c["type"]: c for c in later["conditions"]}
    assert conds2["Ready"]["status"] == "True" and conds2["Ready"]["lastTransitionTime"] == "2026-01-01T12:01:00Z"
    assert conds2["PodScheduled"]["lastTransitionTime"] == conds["PodScheduled"]["lastTransitionTime"]


def test_completed_pod_conditions():
    s = pod_status(pod("Never"), [], [view(rec("exited", 0))], SandboxView(False, []), host_ip="h", qos="BestEffort",
                   start_time="x", now=T0)
    conds = {c["type"]: c for c in s["conditions"]}
    assert s["phase"] == "Succeeded" and conds["Ready"]["reason"] == "PodCompleted"
    assert s["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
