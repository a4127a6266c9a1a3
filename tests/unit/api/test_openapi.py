"""OpenAPI v3 and v2 documents: what kubectl looks for is there, and every reference resolves."""

import json

import pytest

from kapal.errors import NotFound
from kapal.kube.api import openapi, protowire
from kapal.kube.meta.resources import RESOURCES, groups


def _refs(node, out):
    if isinstance(node, dict):
        if "$ref" in node:
            out.add(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def test_index_lists_every_group_version_with_a_content_hash():
    index = openapi.v3_index("/prefix")["paths"]
    expected = {openapi.v3_path(g, v) for g, vs in groups().items() for v in vs}
    assert set(index) == expected
    url = index["apis/apps/v1"]["serverRelativeURL"]
    assert url == f"/prefix/openapi/v3/apis/apps/v1?hash={openapi.v3_hash('apps', 'v1')}"
    assert len(openapi.v3_hash("apps", "v1")) == 128


def test_lookup_maps_request_paths_to_group_versions():
    assert openapi.v3_lookup("/openapi/v3/api/v1") == ("", "v1")
    assert openapi.v3_lookup("apis/rbac.authorization.k8s.io/v1") == ("rbac.authorization.k8s.io", "v1")
    for bad in ("/openapi/v3/apis/apps/v9", "/openapi/v3/apis/nope/v1", "/openapi/v3/x"):
        with pytest.raises(NotFound):
            openapi.v3_lookup(bad)


def test_every_patch_operation_carries_gvk_and_field_validation():
    """kubectl sends fieldValidation=Strict (skipping client-side validation) only when it finds these."""
    for r in RESOURCES:
        doc = openapi.v3_document(r.group, r.version)
        item = doc["paths"].get(r.path("{namespace}" if r.namespaced else None, "{name}"))
        if "patch" not in r.verbs:
            continue
        patch = item["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {"group": r.group, "kind": r.kind, "version": r.version}
        assert patch["x-kubernetes-action"] == "patch"
        names = {p["name"] for p in patch["parameters"]}
        assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= names
        assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]


def test_documents_are_self_contained_and_in_openapi_form():
    for g, vs in groups().items():
        for v in vs:
            doc = openapi.v3_document(g, v)
            schemas_ = doc["components"]["schemas"]
            for ref in _refs(doc, set()):
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas_, ref
            assert json.loads(openapi.v3_document_bytes(g, v)) == doc


def test_component_schemas_keep_patch_metadata_and_lose_nullable_type_lists():
    schemas_ = openapi.v3_document("apps", "v1")["components"]["schemas"]
    deployment = schemas_["io.k8s.api.apps.v1.Deployment"]
    assert deployment["type"] == "object"
    assert deployment["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment",
                                                              "version": "v1"}]
    assert "enum" not in deployment["properties"]["kind"]
    strategy = schemas_["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    containers = schemas_["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert schemas_["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"


def test_scale_subresource_speaks_autoscaling_scale():
    doc = openapi.v3_document("apps", "v1")
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                                 "version": "v1"}
    assert "io.k8s.api.autoscaling.v1.Scale" in doc["components"]["schemas"]


def test_v2_document_uses_definitions_refs():
    doc = openapi.v2_document()
    assert doc["swagger"] == "2.0"
    for ref in _refs(doc, set()):
        assert ref.startswith("#/definitions/") and ref.rsplit("/", 1)[1] in doc["definitions"], ref
    spec = doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["strategy"]["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
    assert spec["strategy"]["x-kubernetes-patch-strategy"] == "retainKeys"
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])


def test_v2_protobuf_holds_every_path_and_definition():
    top = {}
    for number, _, value in protowire.fields(openapi.v2_protobuf()):
        top.setdefault(number, []).append(value)
    assert top[1] == [b"2.0"]
    paths = [v for n, _, v in protowire.fields(top[8][0]) if n == 2]
    definitions = [v for n, _, v in protowire.fields(top[9][0]) if n == 1]
    doc = openapi.v2_document()
    assert len(paths) == len(doc["paths"]) and len(definitions) == len(doc["definitions"])
    names = {dict((n, v) for n, _, v in protowire.fields(d))[1].decode() for d in definitions}
    assert names == set(doc["definitions"])
