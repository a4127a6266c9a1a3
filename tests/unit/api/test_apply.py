"""Server-side apply and managedFields: ownership, pruning, conflicts, force, status subresource."""

import copy

import pytest

from kapal.errors import Conflict, Invalid
from kapal.kube.api import apply
from kapal.kube.api.defaults import apply_defaults
from kapal.kube.meta.resources import by_kind

DEPLOYMENT = by_kind("apps/v1", "Deployment")
CONFIGMAP = by_kind("v1", "ConfigMap")
NOW = "2024-01-01T00:00:00Z"


def _config(**spec):
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}
    base["spec"].update(spec)
    return base


def _entries(obj):
    return {(m["manager"], m["operation"]): m for m in obj["metadata"]["managedFields"]}


def _stored(obj):
    """What the API server stores after an apply: defaults filled in."""
    apply_defaults(DEPLOYMENT, obj)
    return obj


def test_kubectl_create_records_an_update_manager_like_upstream():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d", "uid": "u"},
           "data": {"a": "b"}}
    out = apply.track_update(None, obj, CONFIGMAP, "kubectl-create", now=NOW)
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": NOW,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]
    assert obj["metadata"].get("managedFields") is None  # input untouched


def test_apply_creates_and_owns_exactly_what_it_sent():
    out = apply.apply(None, _config(replicas=2), DEPLOYMENT, "kubectl", now=NOW)
    assert out["spec"]["replicas"] == 2 and out["metadata"]["name"] == "web"
    [entry] = out["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl", "Apply", "apps/v1")
    assert entry["fieldsV1"] == {"f:spec": {
        "f:replicas": {}, "f:selector": {},
        "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
                       "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}


def test_reapply_prunes_what_the_manager_dropped_but_keeps_others_fields():
    live = _stored(apply.apply(None, _config(replicas=2, minReadySeconds=5), DEPLOYMENT, "kubectl", now=NOW))
    live = apply.track_update(live, {**live, "metadata": {**live["metadata"], "annotations": {"x": "y"}}},
                              DEPLOYMENT, "kubectl-annotate", now=NOW)
    out = apply.apply(live, _config(replicas=2), DEPLOYMENT, "kubectl", now=NOW)
    assert "minReadySeconds" not in out["spec"]
    assert out["metadata"]["annotations"] == {"x": "y"}
    assert out["spec"]["revisionHistoryLimit"] == 10  # defaulted, never owned by the applier: kept


def test_conflict_with_an_update_manager_and_force():
    created = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": _config(replicas=1)["spec"]}
    _stored(created)
    live = apply.track_update(None, created, DEPLOYMENT, "kubectl-create", now=NOW)
    with pytest.raises(Conflict) as e:
        apply.apply(live, _config(replicas=3), DEPLOYMENT, "kubectl", now=NOW)
    assert str(e.value) == 'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas'
    assert e.value.http_status == 409
    assert e.value.causes == [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-create" using '
                                                                            "apps/v1", "field": ".spec.replicas"}]
    same = apply.apply(live, _config(replicas=1), DEPLOYMENT, "kubectl", now=NOW)  # same value: shared, no conflict
    assert "f:replicas" in _entries(same)[("kubectl-create", "Update")]["fieldsV1"]["f:spec"]
    forced = apply.apply(live, _config(replicas=3), DEPLOYMENT, "kubectl", force=True, now=NOW)
    assert forced["spec"]["replicas"] == 3
    entries = _entries(forced)
    assert "f:replicas" not in entries[("kubectl-create", "Update")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in entries[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert [m["operation"] for m in forced["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_several_conflicts_are_listed_per_manager():
    live = _stored(apply.apply(None, _config(replicas=1, minReadySeconds=1), DEPLOYMENT, "alice", now=NOW))
    with pytest.raises(Conflict) as e:
        apply.apply(live, _config(replicas=2, minReadySeconds=2), DEPLOYMENT, "bob", now=NOW)
    assert str(e.value) == ('Apply failed with 2 conflicts: conflicts with "alice":\n- .spec.minReadySeconds\n'
                            "- .spec.replicas")


def test_update_takes_ownership_and_removal_releases_it():
    live = _stored(apply.apply(None, _config(replicas=2), DEPLOYMENT, "kubectl", now=NOW))
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    out = apply.track_update(live, scaled, DEPLOYMENT, "kubectl", subresource="scale", now=NOW)
    entries = {(m["manager"], m["operation"], m.get("subresource", "")): m for m in out["metadata"]["managedFields"]}
    assert entries[("kubectl", "Update", "scale")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entries[("kubectl", "Apply", "")]["fieldsV1"]["f:spec"]


def test_status_is_tracked_only_through_the_status_subresource():
    live = _stored(apply.apply(None, _config(), DEPLOYMENT, "kubectl", now=NOW))
    with_status = copy.deepcopy(live)
    with_status["status"] = {"replicas": 1}
    out = apply.track_update(live, with_status, DEPLOYMENT, "kube-controller-manager", subresource="status",
                             now=NOW)
    entry = [m for m in out["metadata"]["managedFields"] if m["manager"] == "kube-controller-manager"][0]
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}} and entry["subresource"] == "status"
    main = apply.track_update(live, with_status, DEPLOYMENT, "someone", now=NOW)
    assert all(m["manager"] != "someone" for m in main["metadata"]["managedFields"])


def test_objects_without_managed_fields_start_with_before_first_apply():
    live = _stored({**_config(replicas=1), "metadata": {"name": "web", "namespace": "default"}})
    with pytest.raises(Conflict, match='conflict with "before-first-apply" using apps/v1: .spec.replicas'):
        apply.apply(live, _config(replicas=4), DEPLOYMENT, "kubectl", now=NOW)


@pytest.mark.parametrize("config, message", [
    ({**_config(), "spec": {**_config()["spec"], "foo": 1}},
     r"failed to create typed patch object \(default/web; apps/v1, Kind=Deployment\): "
     r"\.spec\.foo: field not declared in schema"),
    ({**_config(), "spec": {**_config()["spec"], "replicas": "3"}}, "cannot unmarshal string into Go struct field"),
    ({**_config(), "kind": "StatefulSet"}, "is a StatefulSet of apps/v1"),
    ({"metadata": {"name": "web"}}, "apiVersion and kind must be set"),
    ("text", "must be a YAML or JSON object"),
])
def test_bad_apply_configurations(config, message):
    with pytest.raises(Invalid, match=message):
        apply.apply(None, config, DEPLOYMENT, "kubectl")


def test_client_sent_managed_fields_replace_or_reset_the_stored_ones():
    live = _stored(apply.apply(None, _config(), DEPLOYMENT, "kubectl", now=NOW))
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = []
    reset["spec"]["paused"] = True
    out = apply.track_update(live, reset, DEPLOYMENT, "kubectl-edit", now=NOW)
    assert [m["manager"] for m in out["metadata"]["managedFields"]] == ["kubectl-edit"]


def test_moving_from_client_side_to_server_side_apply_is_no_conflict():
    import json

    manifest = _config(replicas=2)
    live = copy.deepcopy(manifest)
    live["metadata"]["annotations"] = {apply.LAST_APPLIED: json.dumps(manifest)}
    _stored(live)
    live = apply.track_update(None, live, DEPLOYMENT, "kubectl-client-side-apply", now=NOW)
    out = apply.apply(live, _config(replicas=3), DEPLOYMENT, "kubectl", now=NOW)
    assert out["spec"]["replicas"] == 3
    assert json.loads(out["metadata"]["annotations"][apply.LAST_APPLIED])["spec"]["replicas"] == 3
    with pytest.raises(Conflict, match="kubectl-client-side-apply"):
        apply.apply(live, _config(replicas=3), DEPLOYMENT, "someone-else", now=NOW)
    drifted = copy.deepcopy(live)
    drifted["spec"]["replicas"] = 7  # the annotation no longer describes the object: real conflicts again
    with pytest.raises(Conflict):
        apply.apply(drifted, _config(replicas=3), DEPLOYMENT, "kubectl", now=NOW)
