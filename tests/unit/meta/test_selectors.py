"""Label and field selectors as kubectl users write them."""

from __future__ import annotations

import pytest

from kapal.errors import Invalid
from kapal.kube.meta.quantity import milli, parse_quantity, whole
from kapal.kube.meta.selectors import (
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("env in (a, b),tier", {"env": "b", "tier": "x"}, True),
        ("env notin (a,b)", {"env": "a"}, False),
        ("env notin (a,b)", {}, True),
        ("!legacy", {"legacy": "1"}, False),
        ("!legacy,app=web", {"app": "web"}, True),
        ("example.com/role=x", {"example.com/role": "x"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("", {"anything": "goes"}, True),
    ],
)
def test_label_selector_string(selector, labels, expected):
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["app=", "=web", "app in a", "a b", "app=we b", "app=-x-"])
def test_label_selector_rejects_garbage(bad):
    if bad == "app=":
        assert parse_label_selector(bad).matches({"app": ""})
        return
    with pytest.raises(Invalid):
        parse_label_selector(bad)


def test_label_selector_object_form():
    sel = label_selector_from_dict({"matchLabels": {"app": "web"},
                                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]},
                                                         {"key": "old", "operator": "DoesNotExist"}]})
    assert sel.matches({"app": "web", "tier": "fe"})
    assert not sel.matches({"app": "web", "tier": "fe", "old": "y"})
    assert label_selector_from_dict({}).matches({"x": "y"})
    assert not label_selector_from_dict(None).matches({})


def test_field_selector_on_pods():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", ("", "pods"))
    assert sel.matches(pod)
    assert not parse_field_selector("metadata.name==q", ("", "pods")).matches(pod)
    assert parse_field_selector("spec.nodeName=", ("", "pods")).matches({"spec": {}})
    assert sel.exact("spec.nodeName") == "n1"


def test_field_selector_refuses_unknown_labels_like_upstream():
    with pytest.raises(Invalid, match="field label not supported: spec.foo"):
        parse_field_selector("spec.foo=bar", ("", "configmaps"))
    with pytest.raises(Invalid):
        parse_field_selector("nonsense", ("", "pods"))


def test_quantities():
    assert milli("100m") == 100 and milli("1") == 1000 and milli("0.5") == 500
    assert whole("1Gi") == 2**30 and whole("1k") == 1000 and whole("1e3") == 1000
    assert parse_quantity("100m") + parse_quantity("900m") == 1
    with pytest.raises(Invalid):
        parse_quantity("12x")
