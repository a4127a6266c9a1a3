"""Real kubectl reads our OpenAPI documents: explain renders them, create/apply find fieldValidation support.

kubectl ≤1.28 read /openapi/v2 as gnostic protobuf first; later versions read /openapi/v3 only.
"""

import os

import pytest
from kubectl_recorder import RecordingServer, ok_json

VERSIONS = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()


@pytest.fixture
def server(tmp_path):
    with RecordingServer(tmp_path) as s:
        yield s


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_renders_fields_from_our_documents(server, version):
    p = server.kubectl(version, "explain", "deployment.spec.strategy")
    assert p.returncode == 0, p.stderr
    assert "KIND:       Deployment" in p.stdout
    assert "rollingUpdate\t<RollingUpdateDeployment>" in p.stdout
    assert "Type of deployment." in p.stdout
    p = server.kubectl(version, "explain", "pods.spec.containers.resources")
    assert p.returncode == 0, p.stderr
    assert "limits\t<map[string]Quantity>" in p.stdout


@pytest.mark.parametrize("version", [v for v in VERSIONS if v in ("1.27", "1.28")] or ["1.27"])
def test_explain_plaintext_openapiv2_reads_the_gnostic_protobuf(server, version):
    p = server.kubectl(version, "explain", "deployment.spec", "--output=plaintext-openapiv2")
    assert p.returncode == 0, p.stderr
    assert "RESOURCE: spec <Object>" in p.stdout
    assert "template\t<Object> -required-" in p.stdout
    v2 = [r for r in server.requests if r.path == "/openapi/v2"]
    assert v2 and "proto-openapi.spec.v2@v1.0+protobuf" in v2[0].headers["accept"]


@pytest.mark.parametrize("version", VERSIONS)
def test_create_from_file_leaves_validation_to_the_server(server, version, tmp_path):
    server.handlers.append(lambda r: ok_json(r.json(), 201) if r.method == "POST" else None)
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: foo\ndata:\n  a: b\n  typo: 1\n")
    p = server.kubectl(version, "create", "-f", str(manifest))
    assert p.returncode == 0, p.stderr
    assert "configmap/foo created" in p.stdout
    [post] = server.sent("POST", "/api/v1/namespaces/default/configmaps")
    assert post.query["fieldValidation"] == ["Strict"]
    assert post.json()["data"] == {"a": "b", "typo": 1}
