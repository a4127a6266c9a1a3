"""RBAC rule matching, subjects, aggregation and the authorizer chain, over a real watch cache."""

from __future__ import annotations

import asyncio
import json

from kapal.kube.api.authn import UserInfo
from kapal.kube.api.authz import Attributes, Authorizer, rule_allows, subject_matches
from kapal.kube.api.cache import WatchCache, object_key
from kapal.kube.api.policy import cluster_role_binding_objects, cluster_role_objects
from kapal.kube.storage.memory import MemoryBackend

RBAC = "rbac.authorization.k8s.io"
ALICE = UserInfo("alice", groups=("dev", "system:authenticated"))


def test_rule_matching():
    rule = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}
    assert rule_allows(rule, Attributes(ALICE, "get", "ns", "", "v1", "pods"))
    assert rule_allows(rule, Attributes(ALICE, "get", "ns", "", "v1", "pods", "log"))
    assert not rule_allows(rule, Attributes(ALICE, "get", "ns", "", "v1", "pods", "exec"))
    assert not rule_allows(rule, Attributes(ALICE, "delete", "ns", "", "v1", "pods"))
    assert not rule_allows(rule, Attributes(ALICE, "get", "ns", "apps", "v1", "pods"))
    scale = {"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]}
    assert rule_allows(scale, Attributes(ALICE, "get", "ns", "apps", "v1", "deployments", "scale"))
    named = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"]}
    assert rule_allows(named, Attributes(ALICE, "get", "ns", "", "v1", "configmaps", name="one"))
    assert not rule_allows(named, Attributes(ALICE, "get", "ns", "", "v1", "configmaps", name="two"))
    assert not rule_allows(named, Attributes(ALICE, "list", "ns", "", "v1", "configmaps"))
    urls = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}
    assert rule_allows(urls, Attributes(ALICE, "get", is_resource=False, path="/apis/apps/v1"))
    assert not rule_allows(urls, Attributes(ALICE, "get", is_resource=False, path="/metrics"))


def test_subjects():
    sa = UserInfo("system:serviceaccount:ns:bot", groups=("system:serviceaccounts",))
    assert subject_matches({"kind": "ServiceAccount", "name": "bot"}, sa, "ns")
    assert not subject_matches({"kind": "ServiceAccount", "name": "bot"}, sa, "other")
    assert subject_matches({"kind": "Group", "name": "dev"}, ALICE, "")
    assert subject_matches({"kind": "User", "name": "alice"}, ALICE, "")


def _authorizer(objects: list[tuple[str, str | None, dict]]) -> tuple[Authorizer, WatchCache]:
    async def body():
        b = MemoryBackend()
        for plural, ns, obj in objects:
            await b.create(object_key((RBAC, plural), ns, obj["metadata"]["name"]), json.dumps(obj).encode())
        c = WatchCache(b)
        await c.start()
        return c

    cache = asyncio.run(body())
    return Authorizer(["Node", "RBAC"], cache), cache


def test_default_policy_and_role_binding():
    objs = [("clusterroles", None, o) for o in cluster_role_objects()]
    objs += [("clusterrolebindings", None, o) for o in cluster_role_binding_objects()]
    objs.append(("rolebindings", "team", {
        "metadata": {"name": "dev-edit", "namespace": "team"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "Group", "name": "dev"}]}))
    authz, _ = _authorizer(objs)

    def ok(user, verb, ns, group, resource, sub=""):
        return authz.authorize(Attributes(user, verb, ns, group, "v1", resource, sub))[0]

    assert ok(ALICE, "create", "team", "apps", "deployments")
    assert ok(ALICE, "create", "team", "", "pods", "exec")
    assert ok(ALICE, "get", "team", "", "pods", "log")
    assert not ok(ALICE, "create", "team", RBAC, "roles")
    assert not ok(ALICE, "get", "other", "", "pods")
    assert not ok(ALICE, "list", "", "", "namespaces")
    assert ok(ALICE, "create", "", "authorization.k8s.io", "selfsubjectaccessreviews")
    admin = UserInfo("root", groups=("system:masters",))
    assert ok(admin, "delete", "", "", "nodes")
    node = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))
    assert ok(node, "get", "x", "", "secrets") and not ok(node, "delete", "x", "", "secrets")
    own = Attributes(node, "patch", "", "", "v1", "nodes", "status", "n1")
    other = Attributes(node, "patch", "", "", "v1", "nodes", "status", "n2")
    assert authz.authorize(own)[0] and not authz.authorize(other)[0]
    lease = Attributes(node, "update", "kube-node-lease", "coordination.k8s.io", "v1", "leases", name="n2")
    assert not authz.authorize(lease)[0]
    sched = UserInfo("system:kube-scheduler", groups=("system:authenticated",))
    assert ok(sched, "create", "x", "", "pods", "binding") and not ok(sched, "create", "x", "", "secrets")


def test_aggregated_roles_follow_labels():
    base = {"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"example.com/agg": "true"}}]}, "rules": []}
    part = {"metadata": {"name": "part", "labels": {"example.com/agg": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}]}
    binding = {"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "agg"},
               "subjects": [{"kind": "User", "name": "alice"}]}
    authz, _ = _authorizer([("clusterroles", None, base), ("clusterroles", None, part),
                            ("clusterrolebindings", None, binding)])
    assert authz.authorize(Attributes(ALICE, "get", "ns", "example.com", "v1", "widgets"))[0]


def test_modes():
    _, cache = _authorizer([])
    allow = Authorizer(["AlwaysAllow"], cache)
    assert allow.authorize(Attributes(ALICE, "delete", "", "", "v1", "nodes"))[0]
    deny = Authorizer(["AlwaysDeny"], cache)
    assert not deny.authorize(Attributes(ALICE, "get", "", "", "v1", "nodes"))[0]
    import pytest

    from kapal.errors import Invalid

    with pytest.raises(Invalid):
        Authorizer(["Webhook"], cache)
