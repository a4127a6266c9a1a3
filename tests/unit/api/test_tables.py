"""Table rows carry the cells kubectl users know, computed as upstream's printers compute them."""

import datetime as dt

import pytest

from kapal.kube.api.tables import pod_status, selector_string, table
from kapal.kube.meta.resources import by_kind

NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
CREATED = "2024-01-01T11:55:00Z"


def _cells(api_version, kind, obj, wide=True):
    t = table(by_kind(api_version, kind), [obj], wide=wide, now=NOW)
    names = [c["name"] for c in t["columnDefinitions"]]
    return dict(zip(names, t["rows"][0]["cells"]))


def _pod(phase="Running", statuses=(), init=(), conditions=(), **extra):
    spec = {"containers": [{"name": s.get("name", f"c{i}")} for i, s in enumerate(statuses)] or [{"name": "c"}]}
    spec["initContainers"] = [{"name": s["name"], **({"restartPolicy": "Always"} if s.get("sidecar") else {})}
                              for s in init]
    status = {"phase": phase, "containerStatuses": list(statuses), "initContainerStatuses": list(init),
              "conditions": list(conditions)}
    meta = {"name": "p", "creationTimestamp": CREATED}
    meta.update(extra.pop("meta", {}))
    return {"metadata": meta, "spec": {**spec, **extra.pop("spec", {})}, "status": {**status, **extra}}


RUNNING = {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}}


def test_pod_columns_and_wide_cells():
    t = table(by_kind("v1", "Pod"), [], wide=True, now=NOW)
    assert [(c["name"], c["priority"]) for c in t["columnDefinitions"]] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1),
        ("Nominated Node", 1), ("Readiness Gates", 1)]
    assert t["columnDefinitions"][0]["format"] == "name"
    pod = _pod(statuses=[RUNNING], podIPs=[{"ip": "10.0.0.5"}], spec={"nodeName": "n1"})
    assert _cells("v1", "Pod", pod) == {"Name": "p", "Ready": "1/1", "Status": "Running", "Restarts": "0",
                                        "Age": "5m", "IP": "10.0.0.5", "Node": "n1", "Nominated Node": "<none>",
                                        "Readiness Gates": "<none>"}
    assert list(_cells("v1", "Pod", pod, wide=False)) == ["Name", "Ready", "Status", "Restarts", "Age"]


@pytest.mark.parametrize("pod, ready, status, restarts", [
    (_pod(phase="Pending", statuses=[{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
     "0/1", "ContainerCreating", 0),
    (_pod(statuses=[{"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:58:00Z"}}}]),
     "0/1", "CrashLoopBackOff", 4),
    (_pod(phase="Succeeded", statuses=[{"name": "a", "state": {"terminated": {"exitCode": 0,
                                                                              "reason": "Completed"}}}]),
     "0/1", "Completed", 0),
    (_pod(phase="Failed", statuses=[{"name": "a", "state": {"terminated": {"exitCode": 137}}}]),
     "0/1", "ExitCode:137", 0),
    (_pod(phase="Pending", init=[{"name": "i", "state": {"running": {}}}],
          statuses=[{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]),
     "0/1", "Init:0/1", 0),
    (_pod(phase="Pending", init=[{"name": "i", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
     "0/1", "Init:ImagePullBackOff", 0),
    (_pod(statuses=[RUNNING], init=[{"name": "s", "sidecar": True, "started": True, "ready": True,
                                     "state": {"running": {}}}],
          conditions=[{"type": "Initialized", "status": "True"}]),
     "2/2", "Running", 0),
    (_pod(statuses=[RUNNING], meta={"deletionTimestamp": "2024-01-01T11:59:00Z"}), "1/1", "Terminating", 0),
    (_pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     "0/1", "SchedulingGated", 0),
])
def test_pod_status_like_kubectl(pod, ready, status, restarts):
    got = pod_status(pod)
    assert got[:3] == (ready, status, restarts)


def test_restarts_show_when_the_last_one_was():
    pod = _pod(statuses=[{"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
                          "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:58:00Z"}}}])
    assert _cells("v1", "Pod", pod)["Restarts"] == "2 (2m ago)"


def test_completed_pods_carry_a_row_condition():
    pod = _pod(phase="Succeeded", statuses=[{"name": "a", "state": {"terminated": {"exitCode": 0,
                                                                                   "reason": "Completed"}}}])
    [row] = table(by_kind("v1", "Pod"), [pod], now=NOW)["rows"]
    assert row["conditions"][0]["type"] == "Completed"


def test_workload_rows():
    deployment = {"metadata": {"name": "web", "creationTimestamp": CREATED},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"spec": {"containers": [{"name": "n", "image": "nginx"},
                                                                {"name": "s", "image": "side"}]}}},
                  "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert _cells("apps/v1", "Deployment", deployment) == {
        "Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "5m", "Containers": "n,s",
        "Images": "nginx,side", "Selector": "app=web"}
    job = {"metadata": {"name": "j", "creationTimestamp": CREATED},
           "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": []}}},
           "status": {"succeeded": 1, "startTime": "2024-01-01T11:55:00Z", "completionTime": "2024-01-01T11:55:07Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    cells = _cells("batch/v1", "Job", job)
    assert (cells["Status"], cells["Completions"], cells["Duration"]) == ("Complete", "1/1", "7s")
    cron = {"metadata": {"name": "c", "creationTimestamp": CREATED},
            "spec": {"schedule": "*/5 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {}}}},
            "status": {"lastScheduleTime": "2024-01-01T11:59:00Z", "active": [{"name": "x"}]}}
    cells = _cells("batch/v1", "CronJob", cron)
    assert (cells["Schedule"], cells["Timezone"], cells["Suspend"], cells["Active"], cells["Last Schedule"]) == \
        ("*/5 * * * *", "<none>", "False", 1, "60s")
    sts = {"metadata": {"name": "s"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert _cells("apps/v1", "StatefulSet", sts)["Ready"] == "1/2"


def test_service_rows_by_type():
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
                                               "clusterIPs": ["10.96.0.9"], "selector": {"b": "2", "a": "1"},
                                               "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                                         {"port": 53, "protocol": "UDP"}]}}
    cells = _cells("v1", "Service", svc)
    assert (cells["Type"], cells["Cluster-IP"], cells["External-IP"], cells["Port(s)"], cells["Selector"]) == \
        ("NodePort", "10.96.0.9", "<none>", "80:30080/TCP,53/UDP", "a=1,b=2")
    lb = {"metadata": {"name": "l"}, "spec": {"type": "LoadBalancer", "ports": []}}
    assert _cells("v1", "Service", lb)["External-IP"] == "<pending>"
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert _cells("v1", "Service", headless)["Port(s)"] == "<none>"


def test_node_namespace_event_and_default_rows():
    node = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"},
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}
    cells = _cells("v1", "Node", node)
    assert (cells["Status"], cells["Roles"], cells["Version"], cells["Internal-IP"], cells["External-IP"],
            cells["OS-Image"]) == ("Ready,SchedulingDisabled", "control-plane", "v1.33.0", "192.168.1.2", "<none>",
                                   "<unknown>")
    assert _cells("v1", "Namespace", {"metadata": {"name": "d"}, "status": {"phase": "Active"}})["Status"] == "Active"
    event = {"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Scheduled", "message": " assigned \n",
             "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "default-scheduler"},
             "firstTimestamp": "2024-01-01T11:50:00Z", "lastTimestamp": "2024-01-01T11:59:00Z", "count": 3}
    assert _cells("v1", "Event", event) == {
        "Last Seen": "60s", "Type": "Normal", "Reason": "Scheduled", "Object": "pod/p", "Subobject": "",
        "Source": "default-scheduler", "Message": "assigned", "First Seen": "10m", "Count": 3, "Name": "p.1"}
    role = {"metadata": {"name": "r", "creationTimestamp": CREATED}}
    t = table(by_kind("rbac.authorization.k8s.io/v1", "Role"), [role], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Created At"]
    assert t["rows"][0]["cells"] == ["r", CREATED]


def test_small_rows():
    assert _cells("v1", "ConfigMap", {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}}
                  )["Data"] == 2
    assert _cells("v1", "Secret", {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA=="}})["Type"] == \
        "Opaque"
    rb = {"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "edit"},
          "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "d"}]}
    cells = _cells("rbac.authorization.k8s.io/v1", "RoleBinding", rb)
    assert (cells["Role"], cells["Users"], cells["ServiceAccounts"]) == ("ClusterRole/edit", "u", "d/sa")
    pdb = {"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}
    cells = _cells("policy/v1", "PodDisruptionBudget", pdb)
    assert (cells["Min Available"], cells["Max Unavailable"], cells["Allowed Disruptions"]) == ("50%", "N/A", 1)
    hpa = {"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                                               "minReplicas": 1, "maxReplicas": 5, "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                    "averageUtilization": 80}}}]}}
    cells = _cells("autoscaling/v2", "HorizontalPodAutoscaler", hpa)
    assert (cells["Reference"], cells["Targets"], cells["MinPods"], cells["MaxPods"]) == \
        ("Deployment/web", "cpu: <unknown>/80%", "1", 5)
    pc = {"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy":
          "PreemptLowerPriority"}
    cells = _cells("scheduling.k8s.io/v1", "PriorityClass", pc)
    assert (cells["Value"], cells["Global-Default"]) == (2000001000, False)
    ep = {"metadata": {"name": "kubernetes"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}],
                                                           "ports": [{"port": 6443}]}]}
    assert _cells("v1", "Endpoints", ep)["Endpoints"] == "10.0.0.1:6443"


def test_selector_strings():
    assert selector_string({"matchLabels": {"b": "2"}, "matchExpressions": [
        {"key": "a", "operator": "In", "values": ["y", "x"]}, {"key": "c", "operator": "DoesNotExist"}]}) == \
        "a in (x,y),b=2,!c"
    assert selector_string({}) == ""
