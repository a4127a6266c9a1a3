"""The 1.33 schemas: lookups, unknown-field detection and decoder-style type errors, worded as upstream."""

import pytest

from kapal.errors import NotFound
from kapal.kube.api import schemas
from kapal.kube.meta.resources import by_kind

DEPLOYMENT = by_kind("apps/v1", "Deployment")
CONFIGMAP = by_kind("v1", "ConfigMap")


def test_definition_lookup_and_missing_name():
    assert "spec" in schemas.for_resource(DEPLOYMENT)["properties"]
    with pytest.raises(NotFound, match="io.k8s.api.apps.v1.Nope"):
        schemas.definition("io.k8s.api.apps.v1.Nope")


def test_every_registered_kind_has_a_schema():
    from kapal.kube.meta.resources import COMPUTED_GROUPS, RESOURCES

    for r in RESOURCES:
        if r.group in COMPUTED_GROUPS:  # metrics.k8s.io: computed on request, published by no schema file
            continue
        assert schemas.for_resource(r)["x-kubernetes-group-version-kind"]


def test_property_extensions_stay_on_the_property_node():
    spec = schemas.property_schema(schemas.for_resource(DEPLOYMENT), "spec")
    strategy = schemas.property_schema(spec, "strategy")
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert "rollingUpdate" in schemas.properties(strategy)


def test_unknown_fields_reports_paths_in_document_order():
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"any-key": "ok"}, "colour": "red"},
        "spec": {"replicas": 1, "foo": 2, "template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "resources": {"limits": {"cpu": "1"}}},
            {"name": "b", "image": "nginx", "bar": True},
        ]}}},
    }
    assert schemas.unknown_fields(obj, DEPLOYMENT) == [
        ".metadata.colour", ".spec.foo", ".spec.template.spec.containers[1].bar"]


def test_maps_and_nulls_are_never_unknown():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": None},
           "data": {"whatever.key": "v"}, "binaryData": {"b": "AAAA"}}
    assert schemas.unknown_fields(obj, CONFIGMAP) == []


def test_free_form_nodes_accept_anything():
    revision = by_kind("apps/v1", "ControllerRevision")
    obj = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1,
           "data": {"spec": {"anything": {"goes": [1, 2]}}}}
    assert schemas.unknown_fields(obj, revision) == []


def test_strict_message_matches_upstream_wording():
    message = schemas.strict_decoding_message(DEPLOYMENT, [".spec.foo", ".spec.template.spec.containers[0].x"],
                                              duplicates=[".spec.replicas"])
    assert message == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
                       'unknown field "spec.foo", unknown field "spec.template.spec.containers[0].x", '
                       'duplicate field "spec.replicas"')
    assert schemas.unknown_field_warnings([".spec.foo"]) == ['unknown field "spec.foo"']
    assert schemas.field_not_declared_message([".spec.foo"]) == ".spec.foo: field not declared in schema"


@pytest.mark.parametrize("obj, message", [
    ({"spec": {"replicas": "3"}},
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ({"spec": "x"}, "json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec"),
    ({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 3}]}}}},
     "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type "
     "string"),
    ({"metadata": {"labels": {"a": True}}},
     "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of type string"),
    ({"spec": {"replicas": 2.5}},
     "json: cannot unmarshal number 2.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
])
def test_type_errors_are_worded_like_the_go_decoder(obj, message):
    assert schemas.type_error(obj, DEPLOYMENT) == message


def test_well_typed_objects_have_no_type_error():
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                    "template": {"spec": {"containers": [{"name": "a", "image": "i",
                                                          "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}}
    assert schemas.type_error(obj, DEPLOYMENT) is None
