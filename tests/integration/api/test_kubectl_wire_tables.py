"""kubectl get prints our Table responses: the columns, the wide columns, the cells."""

import datetime as dt
import os

import pytest
from kubectl_recorder import RecordingServer, ok_json

from kapal.kube.api.tables import table
from kapal.kube.meta.resources import by_kind

VERSIONS = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()
NOW = dt.datetime.now(dt.UTC)
CREATED = (NOW - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

PODS = [
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": CREATED, "uid": "u1"},
     "spec": {"nodeName": "node-a", "containers": [{"name": "nginx", "image": "nginx"}]},
     "status": {"phase": "Running", "podIPs": [{"ip": "10.244.0.7"}],
                "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 0, "state": {"running": {}}}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "web-2", "namespace": "default", "creationTimestamp": CREATED, "uid": "u2"},
     "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
     "status": {"phase": "Pending", "containerStatuses": [
         {"name": "nginx", "ready": False, "restartCount": 0,
          "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
]


def _serve_table(req):
    if req.method != "GET" or req.path != "/api/v1/namespaces/default/pods":
        return None
    assert "as=Table" in req.headers.get("accept", "")
    t = table(by_kind("v1", "Pod"), PODS, wide=True, now=NOW)
    for row, pod in zip(t["rows"], PODS):
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod["metadata"]}
    t["metadata"] = {"resourceVersion": "42"}
    return ok_json(t)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_get_pods_prints_our_table(tmp_path, version):
    with RecordingServer(tmp_path) as server:
        server.handlers.append(_serve_table)
        p = server.kubectl(version, "get", "pods")
        assert p.returncode == 0, p.stderr
        lines = [line.split() for line in p.stdout.splitlines()]
        assert lines == [["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                         ["web-1", "1/1", "Running", "0", "5m"],
                         ["web-2", "0/1", "ContainerCreating", "0", "5m"]]
        p = server.kubectl(version, "get", "pods", "-o", "wide")
        assert p.returncode == 0, p.stderr
        header, first, second = p.stdout.splitlines()
        assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                                  "READINESS", "GATES"]
        assert first.split() == ["web-1", "1/1", "Running", "0", "5m", "10.244.0.7", "node-a", "<none>", "<none>"]
        assert second.split()[5:] == ["<none>", "<none>", "<none>", "<none>"]
