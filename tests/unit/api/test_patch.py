"""JSON patch, JSON merge patch and strategic merge patch, as the API server applies them."""

import pytest

from kapal.errors import Invalid
from kapal.kube.api import patch
from kapal.kube.api.patch import UnprocessablePatch
from kapal.kube.meta.resources import by_kind

DEPLOYMENT = by_kind("apps/v1", "Deployment")
POD = by_kind("v1", "Pod")
PDB = by_kind("policy/v1", "PodDisruptionBudget")


# --- merge patch (RFC 7386, its appendix examples) -------------------------------------------------------------

@pytest.mark.parametrize("target, p, result", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7386_examples(target, p, result):
    assert patch.merge_patch(target, p) == result


def test_merge_patch_does_not_touch_its_inputs_and_needs_an_object():
    target = {"metadata": {"labels": {"a": "b"}}}
    patch.merge_patch(target, {"metadata": {"labels": {"a": None}}})
    assert target == {"metadata": {"labels": {"a": "b"}}}
    with pytest.raises(Invalid, match="must be a JSON object"):
        patch.merge_patch(target, ["x"])


# --- JSON patch (RFC 6902) ----------------------------------------------------------------------------------------

def test_json_patch_operations():
    doc = {"metadata": {"name": "a", "labels": {"x/y": "1"}}, "spec": {"list": [1, 2, 3]}}
    out = patch.json_patch(doc, [
        {"op": "add", "path": "/spec/list/1", "value": 9},
        {"op": "add", "path": "/spec/list/-", "value": 4},
        {"op": "remove", "path": "/spec/list/0"},
        {"op": "replace", "path": "/metadata/labels/x~1y", "value": "2"},
        {"op": "copy", "from": "/metadata/name", "path": "/spec/name"},
        {"op": "move", "from": "/spec/name", "path": "/metadata/generateName"},
        {"op": "test", "path": "/spec/list", "value": [9, 2, 3, 4]},
        {"op": "test", "path": "/metadata/labels", "value": {"x/y": "2"}},
    ])
    assert out == {"metadata": {"name": "a", "labels": {"x/y": "2"}, "generateName": "a"},
                   "spec": {"list": [9, 2, 3, 4]}}
    assert doc["spec"]["list"] == [1, 2, 3]


@pytest.mark.parametrize("ops, error, message", [
    ([{"op": "test", "path": "/a", "value": 2}], UnprocessablePatch, "testing value /a failed"),
    ([{"op": "test", "path": "/a", "value": True}], UnprocessablePatch, "testing value /a failed"),
    ([{"op": "replace", "path": "/nope", "value": 1}], UnprocessablePatch, "replace operation does not apply"),
    ([{"op": "remove", "path": "/b/5"}], UnprocessablePatch, "out of bounds"),
    ([{"op": "add", "path": "/x/y", "value": 1}], UnprocessablePatch, 'doc is missing path: "/x/y"'),
    ([{"op": "move", "from": "/b", "path": "/b/0"}], UnprocessablePatch, "its own child"),
    ([{"op": "frobnicate", "path": "/a"}], Invalid, "Unexpected kind: frobnicate"),
    ([{"op": "add", "path": "a", "value": 1}], Invalid, "must start with '/'"),
    ([{"op": "add", "path": "/a"}], Invalid, "has no value"),
    ({"op": "add"}, Invalid, "JSON array"),
])
def test_json_patch_failures(ops, error, message):
    with pytest.raises(error, match=message):
        patch.json_patch({"a": 1, "b": [1]}, ops)


# --- strategic merge patch ------------------------------------------------------------------------------------

LIVE = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a/x", "b/y"],
                 "annotations": {"other": "keep"}},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "web", "injected": "yes"}}, "spec": {
            "dnsPolicy": "ClusterFirst",
            "containers": [
                {"name": "a", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80}], "terminationMessagePath": "/dev/termination-log"},
                {"name": "sidecar", "image": "injected"},
                {"name": "b", "image": "busybox", "args": ["sleep", "1d"]},
            ]}},
    },
}

# What kubectl 1.27 and 1.33 `apply` sent (identical) after the manifest dropped label tier, finalizer a/x,
# container b and env B, switched the strategy to Recreate and put a new container c first.
KUBECTL_APPLY_PATCH = {
    "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"], "$setElementOrder/finalizers": ["b/y", "c/z"],
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "..."},
                 "finalizers": ["c/z"], "labels": {"tier": None}},
    "spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
             "template": {"spec": {
                 "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                 "containers": [{"image": "redis", "name": "c"},
                                {"$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
                                 "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}],
                                 "image": "nginx:2", "name": "a"},
                                {"$patch": "delete", "name": "b"}]}}},
}


def test_kubectl_apply_patch_gives_the_manifest_and_keeps_server_fields():
    out = patch.strategic_merge_patch(LIVE, KUBECTL_APPLY_PATCH, DEPLOYMENT)
    meta = out["metadata"]
    assert meta["labels"] == {"app": "web"}
    assert meta["finalizers"] == ["b/y", "c/z"]
    assert meta["annotations"] == {"other": "keep", "kubectl.kubernetes.io/last-applied-configuration": "..."}
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    spec = out["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["c", "a", "sidecar"]
    a = spec["containers"][1]
    assert a["image"] == "nginx:2"
    assert a["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert a["terminationMessagePath"] == "/dev/termination-log"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert out["spec"]["template"]["metadata"]["labels"]["injected"] == "yes"
    assert LIVE["spec"]["template"]["spec"]["containers"][2]["name"] == "b"  # inputs untouched


def test_kubectl_set_image_patch():
    p = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "sidecar"},
                                                                          {"name": "b"}],
                                        "containers": [{"image": "nginx:2", "name": "a"}]}}}}
    out = patch.strategic_merge_patch(LIVE, p, DEPLOYMENT)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("a", "nginx:2"), ("sidecar", "injected"),
                                                             ("b", "busybox")]
    assert containers[0]["env"] == LIVE["spec"]["template"]["spec"]["containers"][0]["env"]


def test_merge_list_appends_new_items_before_server_only_ones_and_replaces_atomic_lists():
    p = {"spec": {"template": {"spec": {"containers": [{"name": "b", "args": ["x"]}, {"name": "new"}]}}}}
    out = patch.strategic_merge_patch(LIVE, p, DEPLOYMENT)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "sidecar", "b", "new"]
    assert containers[2]["args"] == ["x"]  # args has no merge strategy: replaced


def test_patch_directives_on_maps_and_lists():
    replace_map = {"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}}}
    out = patch.strategic_merge_patch(LIVE, replace_map, DEPLOYMENT)
    assert out["spec"]["template"]["metadata"]["labels"] == {"only": "this"}

    delete_map = {"metadata": {"annotations": {"$patch": "delete"}}}
    assert patch.strategic_merge_patch(LIVE, delete_map, DEPLOYMENT)["metadata"]["annotations"] == {}

    replace_list = {"spec": {"template": {"spec": {"containers": [{"name": "z", "image": "z"},
                                                                  {"$patch": "replace"}]}}}}
    out = patch.strategic_merge_patch(LIVE, replace_list, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "z", "image": "z"}]

    delete_item = {"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}}}
    out = patch.strategic_merge_patch(LIVE, delete_item, DEPLOYMENT)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["a", "b"]


def test_primitive_merge_list_union_and_delete_list():
    out = patch.strategic_merge_patch(LIVE, {"metadata": {"finalizers": ["b/y", "z/z"]}}, DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["a/x", "b/y", "z/z"]
    out = patch.strategic_merge_patch(LIVE, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}},
                                      DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["b/y"]


def test_replace_strategy_and_new_subtrees_lose_their_directives():
    live = {"spec": {"selector": {"matchLabels": {"a": "b"}, "matchExpressions": []}}}
    out = patch.strategic_merge_patch(live, {"spec": {"selector": {"matchLabels": {"c": "d"}}}}, PDB)
    assert out["spec"]["selector"] == {"matchLabels": {"c": "d"}}
    out = patch.strategic_merge_patch({"spec": {}}, {"spec": {"strategy": {"$retainKeys": ["type"],
                                                                           "type": "Recreate", "x": None}}},
                                      DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_clears_unlisted_live_keys():
    live = {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}
    p = {"spec": {"volumes": [{"$retainKeys": ["hostPath", "name"], "name": "v", "hostPath": {"path": "/x"}}]}}
    out = patch.strategic_merge_patch(live, p, POD)
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]


@pytest.mark.parametrize("p, message", [
    ({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}},
     "invalid patch format of retainKeys"),
    ({"spec": {"strategy": {"$patch": "frobnicate"}}}, "unknown patch type: frobnicate"),
    ({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
     "map: map\\[image:x\\] does not contain declared merge key: name"),
    ({"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "a"}]}}}},
     "merging lists cannot yet be specified"),
    ({"metadata": {"$setElementOrder/finalizers": "x"}}, "invalid patch format of setElementOrder list"),
    ({"metadata": {"$setElementOrder/finalizers": ["a/x"], "finalizers": ["q", "a/x"]}},
     "doesn't match \\$setElementOrder list"),
    ({"metadata": {"finalizers": [1]}}, "list element types are not identical"),
    (["not", "a", "map"], "must be a JSON object"),
])
def test_malformed_strategic_patches(p, message):
    with pytest.raises(Invalid, match=message):
        patch.strategic_merge_patch(LIVE, p, DEPLOYMENT)


def test_type_changes_replace_and_nulls_delete():
    out = patch.strategic_merge_patch(LIVE, {"spec": {"replicas": None, "selector": "x"}}, DEPLOYMENT)
    assert "replicas" not in out["spec"] and out["spec"]["selector"] == "x"
