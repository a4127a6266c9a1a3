"""Field sets: FieldsV1 encoding, ToFieldSet, Compare, Merge and RemoveItems with schema list semantics."""

from kapal.kube.api import fieldset, schemas
from kapal.kube.meta.resources import by_kind

DEPLOYMENT = schemas.for_resource(by_kind("apps/v1", "Deployment"))
POD = schemas.for_resource(by_kind("v1", "Pod"))


def test_fields_v1_round_trip_and_member_markers():
    paths = {("f:metadata", "f:labels"), ("f:metadata", "f:labels", "f:app"),
             ("f:spec", "f:containers", 'k:{"name":"a"}'), ("f:spec", "f:containers", 'k:{"name":"a"}', "f:image"),
             ("f:metadata", "f:finalizers", 'v:"x"')}
    encoded = fieldset.to_fields_v1(paths)
    assert encoded == {"f:metadata": {"f:finalizers": {'v:"x"': {}}, "f:labels": {".": {}, "f:app": {}}},
                       "f:spec": {"f:containers": {'k:{"name":"a"}': {".": {}, "f:image": {}}}}}
    assert fieldset.from_fields_v1(encoded) == paths


def test_to_field_set_follows_upstream_rules():
    config = {"metadata": {"labels": {"app": "web"}, "finalizers": ["x"]},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "strategy": {},
                       "template": {"spec": {"containers": [{"name": "a", "image": "i",
                                                             "ports": [{"containerPort": 80}]}]}}}}
    got = fieldset.field_set(config, DEPLOYMENT)
    assert got == {
        ("f:metadata", "f:labels", "f:app"),
        ("f:metadata", "f:finalizers", 'v:"x"'),
        ("f:spec", "f:replicas"),
        ("f:spec", "f:selector"),  # LabelSelector is an atomic map
        ("f:spec", "f:strategy"),  # an empty struct value is a member
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"a"}'),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"a"}', "f:name"),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"a"}', "f:image"),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"a"}', "f:ports",
         'k:{"containerPort":80,"protocol":"TCP"}'),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"a"}', "f:ports",
         'k:{"containerPort":80,"protocol":"TCP"}', "f:containerPort"),
    }


def test_compare_reports_added_modified_removed():
    old = {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"k": "v"}},
           "spec": {"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"k": "v"}}}
    new = {"metadata": {"labels": {"a": "9"}}, "spec": {"containers": [{"name": "c", "image": "x"},
                                                                        {"name": "d", "image": "y"}]}}
    added, modified, removed = fieldset.compare(old, new, POD)
    assert modified == {("f:metadata", "f:labels", "f:a")}
    assert removed == {("f:metadata", "f:labels", "f:b"), ("f:metadata", "f:annotations"),
                       ("f:metadata", "f:annotations", "f:k"), ("f:spec", "f:nodeSelector")}  # an atomic map
    assert added == {("f:spec", "f:containers", 'k:{"name":"d"}'),
                     ("f:spec", "f:containers", 'k:{"name":"d"}', "f:name"),
                     ("f:spec", "f:containers", 'k:{"name":"d"}', "f:image")}


def test_merge_keeps_live_only_items_in_place_and_config_order_for_shared_ones():
    live = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "side", "image": "s"},
                                    {"name": "b", "image": "2"}], "dnsPolicy": "ClusterFirst"}}
    config = {"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "new", "image": "n"},
                                      {"name": "a", "image": "1"}]}}
    merged = fieldset.merge(live, config, POD)
    assert [(c["name"], c["image"]) for c in merged["spec"]["containers"]] == [
        ("side", "s"), ("b", "3"), ("new", "n"), ("a", "1")]
    assert merged["spec"]["dnsPolicy"] == "ClusterFirst"
    atomic = fieldset.merge({"spec": {"tolerations": [{"key": "a"}]}}, {"spec": {"tolerations": [{"key": "b"}]}},
                            POD)
    assert atomic["spec"]["tolerations"] == [{"key": "b"}]


def test_remove_drops_members_with_everything_below():
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
           "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}
    out = fieldset.remove(obj, {("f:metadata", "f:labels", "f:a"), ("f:metadata", "f:finalizers", 'v:"y"'),
                                ("f:spec", "f:containers", 'k:{"name":"b"}')}, POD)
    assert out == {"metadata": {"labels": {"b": "2"}, "finalizers": ["x"]},
                   "spec": {"containers": [{"name": "a", "image": "1"}]}}


def test_ensure_named_fields_adds_struct_ancestors_only():
    paths = {("f:spec", "f:strategy", "f:rollingUpdate", "f:maxSurge"), ("f:metadata", "f:labels", "f:a")}
    got = fieldset.ensure_named_fields(paths, DEPLOYMENT)
    assert got == paths | {("f:spec",), ("f:spec", "f:strategy"), ("f:spec", "f:strategy", "f:rollingUpdate"),
                           ("f:metadata",), ("f:metadata", "f:labels")}


def test_path_strings_as_in_conflict_messages():
    assert fieldset.path_string(("f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image")) == \
        '.spec.containers[name="nginx"].image'
    assert fieldset.path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')) == \
        '.spec.ports[port=80,protocol="TCP"]'
    assert fieldset.path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'
