"""kubectl apply --server-side against apply.py: create, re-apply, conflict message, --force-conflicts."""

import json
import os

import pytest
import yaml
from kubectl_recorder import RecordingServer, ok_json, status

from kapal.kube.api import apply
from kapal.kube.api.defaults import apply_defaults
from kapal.kube.meta.resources import by_kind

VERSIONS = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()
DEPLOYMENT = by_kind("apps/v1", "Deployment")
PATH = "/apis/apps/v1/namespaces/default/deployments/web"


def _manifest(replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}


@pytest.mark.parametrize("version", VERSIONS)
def test_server_side_apply_round_trip(tmp_path, version):
    state = {}

    def serve(req):
        if req.path != PATH:
            return None
        if req.method == "GET":
            return ok_json(state["obj"]) if "obj" in state else status(404, "NotFound",
                                                                         'deployments.apps "web" not found')
        if req.method == "PATCH":
            assert req.headers["content-type"] == "application/apply-patch+yaml"
            try:
                out = apply.apply(state.get("obj"), yaml.safe_load(req.body), DEPLOYMENT,
                                  req.query["fieldManager"][0], force=req.query.get("force") == ["true"])
            except apply.ApplyConflict as e:
                return status(409, "Conflict", str(e), causes=e.causes)
            apply_defaults(DEPLOYMENT, out)
            created = "obj" not in state
            state["obj"] = out
            return ok_json(out, 201 if created else 200)
        return None

    manifest = tmp_path / "web.json"
    with RecordingServer(tmp_path) as server:
        server.handlers.append(serve)
        manifest.write_text(json.dumps(_manifest(2)))
        p = server.kubectl(version, "apply", "--server-side", "-f", str(manifest))
        assert p.returncode == 0, p.stderr
        assert "deployment.apps/web serverside-applied" in p.stdout
        assert state["obj"]["spec"]["replicas"] == 2

        p = server.kubectl(version, "apply", "--server-side", "--field-manager=other", "-f", str(manifest))
        assert p.returncode == 0, p.stderr  # same values: shared ownership, no conflict

        manifest.write_text(json.dumps(_manifest(3)))
        p = server.kubectl(version, "apply", "--server-side", "--field-manager=other", "-f", str(manifest))
        assert p.returncode != 0
        assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in p.stderr
        assert "--force-conflicts" in p.stderr, p.stderr

        p = server.kubectl(version, "apply", "--server-side", "--field-manager=other", "--force-conflicts",
                           "-f", str(manifest))
        assert p.returncode == 0, p.stderr
        assert state["obj"]["spec"]["replicas"] == 3
        owners = {m["manager"]: m["fieldsV1"] for m in state["obj"]["metadata"]["managedFields"]}
        assert "f:replicas" in owners["other"]["f:spec"] and "f:replicas" not in owners["kubectl"]["f:spec"]
