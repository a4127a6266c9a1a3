"""kubectl's client-side apply builds a strategic merge patch from our OpenAPI patch metadata (v2 protobuf on
1.27/1.28, v3 later); applied by patch.py to the live object it yields the manifest plus the server's fields."""

import copy
import json
import os

import pytest
from kubectl_recorder import RecordingServer, ok_json

from kapal.kube.api import patch
from kapal.kube.meta.resources import by_kind

VERSIONS = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()
DEPLOYMENT = by_kind("apps/v1", "Deployment")
PATH = "/apis/apps/v1/namespaces/default/deployments/web"

LAST_APPLIED = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"},
                 "finalizers": ["a/x", "b/y"]},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                 {"name": "a", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                 {"name": "b", "image": "busybox", "args": ["sleep", "1d"]}]}}},
}


def _live():
    live = copy.deepcopy(LAST_APPLIED)
    live["metadata"].update(uid="u1", resourceVersion="5", annotations={
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(LAST_APPLIED), "other": "keep"})
    spec = live["spec"]
    spec["strategy"]["rollingUpdate"]["maxUnavailable"] = "25%"
    spec["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    spec["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    spec["template"]["spec"]["containers"].insert(1, {"name": "sidecar", "image": "injected"})
    return live


def _manifest():
    m = copy.deepcopy(LAST_APPLIED)
    del m["metadata"]["labels"]["tier"]
    m["metadata"]["finalizers"] = ["b/y", "c/z"]
    m["spec"]["strategy"] = {"type": "Recreate"}
    containers = m["spec"]["template"]["spec"]["containers"]
    containers[0].update(image="nginx:2", env=[{"name": "C", "value": "3"}, {"name": "A", "value": "1"}])
    del containers[1]
    containers.insert(0, {"name": "c", "image": "redis"})
    return m


@pytest.mark.parametrize("version", VERSIONS)
def test_client_side_apply_patch_round_trip(tmp_path, version):
    state = {"obj": _live()}

    def serve(req):
        if req.path != PATH:
            return None
        if req.method == "PATCH":
            state["obj"] = patch.strategic_merge_patch(state["obj"], req.json(), DEPLOYMENT)
        return ok_json(state["obj"])

    manifest = tmp_path / "web.json"
    manifest.write_text(json.dumps(_manifest()))
    with RecordingServer(tmp_path) as server:
        server.handlers.append(serve)
        p = server.kubectl(version, "apply", "-f", str(manifest))
        assert p.returncode == 0, p.stderr
        assert "deployment.apps/web configured" in p.stdout
        [sent] = server.sent("PATCH", PATH)
    assert sent.headers["content-type"] == "application/strategic-merge-patch+json"
    assert sent.query["fieldManager"] == ["kubectl-client-side-apply"]
    body = sent.json()
    assert body["spec"]["strategy"]["$retainKeys"] == ["type"]
    assert body["spec"]["template"]["spec"]["$setElementOrder/containers"] == [{"name": "c"}, {"name": "a"}]

    out = state["obj"]
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["finalizers"] == ["b/y", "c/z"]
    assert out["metadata"]["annotations"]["other"] == "keep"
    assert json.loads(out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]) == \
        {**_manifest(), "metadata": {**_manifest()["metadata"], "annotations": {}}}
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["c", "a", "sidecar"]
    assert containers[1]["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert containers[1]["terminationMessagePath"] == "/dev/termination-log"
