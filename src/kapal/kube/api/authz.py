"""May this user do this: the authorizer chain (system:masters, Node, RBAC, AlwaysAllow/AlwaysDeny).

RBAC reads roles and bindings from the watch cache and memoises each
user's applicable rules until an RBAC object changes. ClusterRoles with an
aggregationRule grant the union of the roles their selectors pick, as the
aggregation controller would write them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api.authn import MASTERS, UserInfo
from kapal.kube.api.cache import CacheEvent, WatchCache
from kapal.kube.api.policy import CLUSTER_ROLES
from kapal.kube.meta.selectors import label_selector_from_dict

log = logging.getLogger(__name__)

RBAC = "rbac.authorization.k8s.io"
_RBAC_KEYS = {(RBAC, "roles"), (RBAC, "clusterroles"), (RBAC, "rolebindings"), (RBAC, "clusterrolebindings")}
MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC", "ABAC", "Webhook")


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    is_resource: bool = True
    path: str = ""


def _has(values: list[str] | None, want: str) -> bool:
    return bool(values) and ("*" in values or want in values)  # type: ignore[operator]


def rule_allows(rule: dict[str, Any], a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if not _has(verbs, a.verb):
        return False
    if not a.is_resource:
        for u in rule.get("nonResourceURLs") or []:
            if u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups"), a.api_group):
        return False
    resources = rule.get("resources") or []
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not ("*" in resources or combined in resources or
            (a.subresource and f"*/{a.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


class RBACAuthorizer:
    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache
        self._memo: dict[tuple[Any, str], list[dict[str, Any]]] = {}
        self._cluster_roles: dict[str, list[dict[str, Any]]] | None = None
        cache.add_listener(self._on_event)

    def _on_event(self, storage_key: tuple[str, str], ev: CacheEvent) -> None:
        if storage_key in _RBAC_KEYS:
            self._memo.clear()
            self._cluster_roles = None

    def _items(self, plural: str) -> list[dict[str, Any]]:
        return [e.obj for e in self.cache.resource((RBAC, plural)).items.values()]

    def cluster_role_rules(self) -> dict[str, list[dict[str, Any]]]:
        if self._cluster_roles is None:
            roles = self._items("clusterroles")
            rules: dict[str, list[dict[str, Any]]] = {}
            for role in roles:
                rules[role["metadata"]["name"]] = list(role.get("rules") or [])
            for role in roles:
                agg = role.get("aggregationRule")
                if not agg:
                    continue
                name = role["metadata"]["name"]
                selectors = [label_selector_from_dict(s) for s in agg.get("clusterRoleSelectors") or []]
                for other in roles:
                    oname = other["metadata"]["name"]
                    if oname == name:
                        continue
                    labels = other["metadata"].get("labels") or {}
                    if any(s.matches(labels) for s in selectors):
                        for r in other.get("rules") or []:
                            if r not in rules[name]:
                                rules[name].append(r)
            self._cluster_roles = rules
        return self._cluster_roles

    def _role_rules(self, namespace: str, ref: dict[str, Any]) -> list[dict[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_role_rules().get(ref.get("name", ""), [])
        entry = self.cache.get((RBAC, "roles"), namespace, ref.get("name", ""))
        return list(entry.obj.get("rules") or []) if entry is not None else []

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict[str, Any]]:
        """Every rule that applies to the user in a namespace ("" = cluster-wide rules only)."""
        memo_key = (user.key, namespace)
        hit = self._memo.get(memo_key)
        if hit is not None:
            return hit
        rules: list[dict[str, Any]] = []
        for crb in self._items("clusterrolebindings"):
            if any(subject_matches(s, user, "") for s in crb.get("subjects") or []):
                rules.extend(self.cluster_role_rules().get((crb.get("roleRef") or {}).get("name", ""), []))
        if namespace:
            rc = self.cache.resource((RBAC, "rolebindings"))
            prefix = f"{rc.prefix}{namespace}/"
            for key, entry in rc.items.items():
                if not key.startswith(prefix):
                    continue
                rb = entry.obj
                if any(subject_matches(s, user, namespace) for s in rb.get("subjects") or []):
                    rules.extend(self._role_rules(namespace, rb.get("roleRef") or {}))
        if len(self._memo) > 10000:
            self._memo.clear()
        self._memo[memo_key] = rules
        return rules

    def authorize(self, a: Attributes) -> tuple[bool, str]:
        for rule in self.rules_for(a.user, a.namespace if a.is_resource else ""):
            if rule_allows(rule, a):
                return True, "allowed by RBAC"
        return False, ""


class NodeAuthorizer:
    """Nodes (group system:nodes, user system:node:<name>) get the system:node role's access, and may write only
    their own Node, Lease and the status of pods bound to them (NodeRestriction's rules for those objects)."""

    _RULES = CLUSTER_ROLES["system:node"]["rules"]
    _WRITES = ("create", "update", "patch", "delete")

    def __init__(self, cache: WatchCache | None = None) -> None:
        self.cache = cache

    def authorize(self, a: Attributes) -> tuple[bool, str]:
        if "system:nodes" not in a.user.groups or not a.user.name.startswith("system:node:"):
            return False, ""
        node = a.user.name[len("system:node:"):]
        if not any(rule_allows(r, a) for r in self._RULES):
            return False, ""
        if a.is_resource and a.verb in self._WRITES and a.name:
            if a.api_group == "" and a.resource == "nodes" and a.name != node:
                return False, f"node {node!r} cannot modify node {a.name!r}"
            if a.api_group == "coordination.k8s.io" and a.resource == "leases" and a.name != node:
                return False, f"node {node!r} cannot modify lease {a.name!r}"
            if a.api_group == "" and a.resource == "pods" and self.cache is not None:
                pod = self.cache.get(("", "pods"), a.namespace, a.name)
                bound = (pod.obj.get("spec") or {}).get("nodeName") if pod is not None else None
                if pod is not None and bound != node:
                    return False, f"node {node!r} can only modify pods bound to it"
        return True, "allowed by Node authorizer"


class Authorizer:
    def __init__(self, modes: list[str], cache: WatchCache) -> None:
        for m in modes:
            if m not in MODES:
                raise Invalid(f"unknown --authorization-mode {m!r}; use a comma list of AlwaysAllow, AlwaysDeny, "
                              "Node, RBAC")
            if m in ("ABAC", "Webhook"):
                raise Invalid(f"--authorization-mode {m} is not supported by kapal; use Node,RBAC or AlwaysAllow")
        self.modes = modes
        self.rbac = RBACAuthorizer(cache) if "RBAC" in modes else None
        self.node = NodeAuthorizer(cache) if "Node" in modes else None

    def authorize(self, a: Attributes) -> tuple[bool, str]:
        if MASTERS in a.user.groups:
            return True, "system:masters"
        for mode in self.modes:
            if mode == "AlwaysAllow":
                return True, "AlwaysAllow"
            if mode == "AlwaysDeny":
                return False, "AlwaysDeny"
            if mode == "Node" and self.node is not None:
                ok, why = self.node.authorize(a)
                if ok:
                    return ok, why
            if mode == "RBAC" and self.rbac is not None:
                ok, why = self.rbac.authorize(a)
                if ok:
                    return ok, why
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(resource rules, non-resource rules) for SelfSubjectRulesReview."""
        if MASTERS in user.groups or "AlwaysAllow" in self.modes:
            return ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    [{"verbs": ["*"], "nonResourceURLs": ["*"]}])
        rules = list(self.rbac.rules_for(user, namespace)) if self.rbac is not None else []
        if self.node is not None and "system:nodes" in user.groups:
            rules += NodeAuthorizer._RULES
        res = [r for r in rules if r.get("resources")]
        non = [r for r in rules if r.get("nonResourceURLs")]
        return res, non
