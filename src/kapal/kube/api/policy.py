"""The default RBAC policy an API server bootstraps: cluster roles, bindings, and a few namespaced roles.

Written as data in our own compact form (verbs, groups, resources) from
what upstream's bootstrap policy grants, so `kubectl get clusterroles`
shows the roles users and components expect and each component's identity
has the access it needs.
"""

from __future__ import annotations

from typing import Any

RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
R = ("get", "list", "watch")
W = ("create", "delete", "deletecollection", "patch", "update")
EVENTS = (("create", "patch", "update"), ("", "events.k8s.io"), ("events",))

BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
AGG = "rbac.authorization.k8s.io/aggregate-to-"


def rule(verbs: tuple[str, ...] | str, groups: tuple[str, ...] | str, resources: tuple[str, ...] | str,
         names: tuple[str, ...] = ()) -> dict[str, Any]:
    def seq(v: tuple[str, ...] | str) -> list[str]:
        return [v] if isinstance(v, str) else list(v)

    out: dict[str, Any] = {"verbs": seq(verbs), "apiGroups": seq(groups), "resources": seq(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(verbs: tuple[str, ...] | str, *paths: str) -> dict[str, Any]:
    return {"verbs": [verbs] if isinstance(verbs, str) else list(verbs), "nonResourceURLs": list(paths)}


def _events() -> dict[str, Any]:
    return rule(*EVENTS)


_VIEW = [
    rule(R, "", ("configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                 "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                 "services/status")),
    rule(R, "", ("bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                 "replicationcontrollers/status", "resourcequotas", "resourcequotas/status")),
    rule(R, "", "namespaces"),
    rule(R, "discovery.k8s.io", "endpointslices"),
    rule(R, "apps", ("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                     "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                     "statefulsets/scale", "statefulsets/status")),
    rule(R, "autoscaling", ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    rule(R, "batch", ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
    rule(R, "extensions", ("daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                           "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                           "replicasets/scale", "replicasets/status", "replicationcontrollers/scale")),
    rule(R, "policy", ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(R, "networking.k8s.io", ("ingresses", "ingresses/status", "networkpolicies")),
]

_EDIT = [
    rule(R, "", ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy")),
    rule("impersonate", "", "serviceaccounts"),
    rule(W, "", ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")),
    rule("create", "", "pods/eviction"),
    rule(W, "", ("configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                 "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy")),
    rule("create", "", "serviceaccounts/token"),
    rule(W, "apps", ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                     "replicasets/scale", "statefulsets", "statefulsets/scale")),
    rule(W, "autoscaling", "horizontalpodautoscalers"),
    rule(W, "batch", ("cronjobs", "jobs")),
    rule(W, "extensions", ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                           "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale")),
    rule(W, "policy", "poddisruptionbudgets"),
    rule(W, "networking.k8s.io", ("ingresses", "networkpolicies")),
    rule(("create", "delete", "get", "list", "patch", "update", "watch"), "coordination.k8s.io", "leases"),
]

_ADMIN = [
    rule("create", "authorization.k8s.io", "localsubjectaccessreviews"),
    rule(RW, "rbac.authorization.k8s.io", ("rolebindings", "roles")),
]

_CONTROLLER_COMMON = [_events()]

# system:controller:<name> roles, bound to the service account kube-system/<name>.
CONTROLLER_ROLES: dict[str, list[dict[str, Any]]] = {
    "attachdetach-controller": [
        rule(R, "", ("persistentvolumeclaims", "persistentvolumes")),
        rule(("get", "list", "watch"), "", "nodes"), rule(("patch", "update"), "", "nodes/status"),
        rule(R, "", "pods"), rule(("create", "delete", "get", "list", "watch"), "storage.k8s.io", "volumeattachments"),
        rule(R, "storage.k8s.io", ("csidrivers", "csinodes")), _events()],
    "certificate-controller": [
        rule(("delete", "get", "list", "watch"), "certificates.k8s.io", "certificatesigningrequests"),
        rule("update", "certificates.k8s.io", ("certificatesigningrequests/approval",
                                               "certificatesigningrequests/status")),
        rule("approve", "certificates.k8s.io", "signers",
             ("kubernetes.io/kube-apiserver-client-kubelet",)),
        rule("sign", "certificates.k8s.io", "signers",
             ("kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
              "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown")),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"), _events()],
    "clusterrole-aggregation-controller": [
        rule(("escalate", "get", "list", "patch", "update", "watch"), "rbac.authorization.k8s.io", "clusterroles")],
    "cronjob-controller": [
        rule(("create", "delete", "get", "list", "patch", "update", "watch"), "batch", "jobs"),
        rule(("get", "list", "update", "watch"), "batch", "cronjobs"), rule("update", "batch", "cronjobs/status"),
        rule("update", "batch", "cronjobs/finalizers"), rule(("delete", "list"), "", "pods"), _events()],
    "daemon-set-controller": [
        rule(R, ("apps", "extensions"), "daemonsets"), rule("update", ("apps", "extensions"), "daemonsets/status"),
        rule("update", ("apps", "extensions"), "daemonsets/finalizers"), rule(R, "", "nodes"),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"), rule("create", "", "pods/binding"),
        rule(("create", "delete", "list", "patch", "update", "watch"), "apps", "controllerrevisions"), _events()],
    "deployment-controller": [
        rule(("get", "list", "update", "watch"), ("apps", "extensions"), "deployments"),
        rule("update", ("apps", "extensions"), "deployments/status"),
        rule("update", ("apps", "extensions"), "deployments/finalizers"),
        rule(("create", "delete", "get", "list", "patch", "update", "watch"), ("apps", "extensions"), "replicasets"),
        rule(("get", "list", "update", "watch"), "", "pods"), _events()],
    "disruption-controller": [
        rule(R, ("apps", "extensions"), ("deployments", "replicasets", "statefulsets")),
        rule(R, "", ("replicationcontrollers", "pods")), rule(R, "policy", "poddisruptionbudgets"),
        rule("update", "policy", "poddisruptionbudgets/status"), rule("get", "*", "*/scale"), _events()],
    "endpoint-controller": [
        rule(R, "", ("services", "pods")), rule(("create", "delete", "get", "list", "update"), "", "endpoints"),
        rule("create", "", "endpoints/restricted"), _events()],
    "endpointslice-controller": [
        rule(R, "", ("services", "pods", "nodes")),
        rule(("create", "delete", "get", "list", "update"), "discovery.k8s.io", "endpointslices"), _events()],
    "endpointslicemirroring-controller": [
        rule(R, "", ("services", "endpoints")),
        rule(("create", "delete", "get", "list", "update"), "discovery.k8s.io", "endpointslices"), _events()],
    "ephemeral-volume-controller": [
        rule(R, "", "pods"), rule("update", "", "pods/finalizers"),
        rule(("create", "get", "list", "watch"), "", "persistentvolumeclaims"), _events()],
    "expand-controller": [
        rule(("get", "list", "patch", "update", "watch"), "", "persistentvolumes"),
        rule("patch", "", "persistentvolumeclaims/status"), rule(R, "", "persistentvolumeclaims"),
        rule(R, "storage.k8s.io", "storageclasses"), rule("get", "", ("endpoints", "services")),
        rule("get", "", "secrets"), _events()],
    "generic-garbage-collector": [rule(("delete", "get", "list", "patch", "update", "watch"), "*", "*")],
    "horizontal-pod-autoscaler": [
        rule(("get", "list", "watch"), "autoscaling", "horizontalpodautoscalers"),
        rule("update", "autoscaling", "horizontalpodautoscalers/status"),
        rule(("get", "update"), "*", "*/scale"), rule("list", "", "pods"),
        rule("list", "metrics.k8s.io", "pods"), rule(("get", "list"), "custom.metrics.k8s.io", "*"),
        rule(("get", "list"), "external.metrics.k8s.io", "*"), _events()],
    "job-controller": [
        rule(("get", "list", "patch", "update", "watch"), "batch", "jobs"),
        rule("update", "batch", "jobs/status"), rule("update", "batch", "jobs/finalizers"),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"), _events()],
    "namespace-controller": [
        rule(("delete", "get", "list", "watch"), "", "namespaces"),
        rule("update", "", ("namespaces/finalize", "namespaces/status")),
        rule(("delete", "deletecollection", "get", "list"), "*", "*")],
    "node-controller": [
        rule(("delete", "get", "list", "patch", "update"), "", "nodes"),
        rule(("patch", "update"), "", "nodes/status"), rule("update", "", "pods/status"),
        rule(("delete", "list"), "", "pods"), rule("get", "", "pods"), _events()],
    "persistent-volume-binder": [
        rule(("create", "delete", "get", "list", "update", "watch"), "", "persistentvolumes"),
        rule("update", "", "persistentvolumes/status"),
        rule(("get", "list", "update", "watch"), "", "persistentvolumeclaims"),
        rule("update", "", "persistentvolumeclaims/status"),
        rule(("create", "delete", "get", "list", "watch"), "", "pods"), rule(R, "storage.k8s.io", "storageclasses"),
        rule(("create", "delete", "get"), "", ("endpoints", "services")), rule("get", "", "secrets"),
        rule(R, "", "nodes"), _events()],
    "pod-garbage-collector": [
        rule(("delete", "list", "watch"), "", "pods"), rule(("get", "list", "watch"), "", "nodes"),
        rule("patch", "", "pods/status")],
    "pv-protection-controller": [
        rule(("get", "list", "update", "watch"), "", "persistentvolumes"), _events()],
    "pvc-protection-controller": [
        rule(("get", "list", "update", "watch"), "", "persistentvolumeclaims"),
        rule(("get", "list", "watch"), "", "pods"), _events()],
    "replicaset-controller": [
        rule(("get", "list", "update", "watch"), ("apps", "extensions"), "replicasets"),
        rule("update", ("apps", "extensions"), "replicasets/status"),
        rule("update", ("apps", "extensions"), "replicasets/finalizers"),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"), _events()],
    "replication-controller": [
        rule(("get", "list", "update", "watch"), "", "replicationcontrollers"),
        rule("update", "", "replicationcontrollers/status"),
        rule("update", "", "replicationcontrollers/finalizers"),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"), _events()],
    "resourcequota-controller": [
        rule(("list", "watch"), "*", "*"), rule("update", "", "resourcequotas/status"), _events()],
    "root-ca-cert-publisher": [
        rule(("create", "update"), "", "configmaps"), _events()],
    "route-controller": [
        rule("list", "", "nodes"), rule("patch", "", "nodes/status"), _events()],
    "service-account-controller": [rule("create", "", "serviceaccounts"), _events()],
    "service-controller": [
        rule(R, "", "services"), rule(("patch", "update"), "", "services/status"),
        rule(("list", "watch"), "", "nodes"), _events()],
    "statefulset-controller": [
        rule(("list", "watch"), "", "pods"), rule(R, "apps", "statefulsets"),
        rule("update", "apps", "statefulsets/status"), rule("update", "apps", "statefulsets/finalizers"),
        rule(("create", "delete", "get", "patch", "update"), "", "pods"),
        rule(("create", "delete", "list", "patch", "update", "watch"), "apps", "controllerrevisions"),
        rule(("create", "get"), "", "persistentvolumeclaims"), _events()],
    "ttl-after-finished-controller": [rule(("delete", "get", "list", "watch"), "batch", "jobs"), _events()],
    "ttl-controller": [rule(("list", "patch", "update", "watch"), "", "nodes"), _events()],
    "legacy-service-account-token-cleaner": [
        rule(("delete", "get", "list", "patch"), "", "secrets"), rule(R, "", "pods"), _events()],
    "validatingadmissionpolicy-status-controller": [],
}

_NODE = [
    rule("create", "authentication.k8s.io", "tokenreviews"),
    rule("create", "authorization.k8s.io", ("localsubjectaccessreviews", "subjectaccessreviews")),
    rule(R, "", "services"),
    rule(("create", "get", "list", "watch"), "", "nodes"),
    rule(("patch", "update"), "", "nodes/status"),
    rule(("patch", "update"), "", "nodes"),
    _events(),
    rule(R, "", "pods"),
    rule(("create", "delete"), "", "pods"),
    rule(("patch", "update"), "", "pods/status"),
    rule("create", "", "pods/eviction"),
    rule(R, "", ("configmaps", "secrets")),
    rule("get", "", ("persistentvolumeclaims", "persistentvolumes")),
    rule("get", "", "endpoints"),
    rule(("create", "get", "list", "watch"), "certificates.k8s.io", "certificatesigningrequests"),
    rule(("create", "delete", "get", "patch", "update"), "coordination.k8s.io", "leases"),
    rule("get", "storage.k8s.io", "volumeattachments"),
    rule("create", "", "serviceaccounts/token"),
    rule(("get", "patch", "update"), "", "persistentvolumeclaims/status"),
    rule(R, "storage.k8s.io", "csidrivers"),
    rule(("create", "delete", "get", "patch", "update"), "storage.k8s.io", "csinodes"),
    rule(R, "node.k8s.io", "runtimeclasses"),
]

CLUSTER_ROLES: dict[str, dict[str, Any]] = {
    "cluster-admin": {"rules": [rule("*", "*", "*"), urls("*", "*")]},
    "system:discovery": {"rules": [urls("get", "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                        "/openapi", "/openapi/*", "/readyz", "/version", "/version/")]},
    "system:public-info-viewer": {"rules": [urls("get", "/healthz", "/livez", "/readyz", "/version", "/version/")]},
    "system:basic-user": {"rules": [
        rule("create", "authentication.k8s.io", "selfsubjectreviews"),
        rule("create", "authorization.k8s.io", ("selfsubjectaccessreviews", "selfsubjectrulesreviews"))]},
    "system:monitoring": {"rules": [urls("get", "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics",
                                         "/metrics/slis", "/readyz", "/readyz/*")]},
    "admin": {"aggregate": "admin", "rules": []},
    "edit": {"aggregate": "edit", "labels": {AGG + "admin": "true"}, "rules": []},
    "view": {"aggregate": "view", "labels": {AGG + "edit": "true"}, "rules": []},
    "system:aggregate-to-admin": {"labels": {AGG + "admin": "true"}, "rules": _ADMIN},
    "system:aggregate-to-edit": {"labels": {AGG + "edit": "true"}, "rules": _EDIT},
    "system:aggregate-to-view": {"labels": {AGG + "view": "true"}, "rules": _VIEW},
    "system:aggregated-metrics-reader": {"labels": {AGG + "view": "true", AGG + "edit": "true",
                                                    AGG + "admin": "true"},
                                         "rules": [rule(R, "metrics.k8s.io", ("nodes", "pods"))]},
    "system:heapster": {"rules": [rule(R, "", ("events", "namespaces", "nodes", "pods")),
                                  rule(R, "extensions", "deployments")]},
    "system:node": {"rules": _NODE},
    "system:node-problem-detector": {"rules": [rule("get", "", "nodes"), rule("patch", "", "nodes/status"),
                                               _events()]},
    "system:kubelet-api-admin": {"rules": [
        rule(("get", "list", "watch", "proxy"), "", "nodes"),
        rule("*", "", ("nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"))]},
    "system:node-bootstrapper": {"rules": [
        rule(("create", "get", "list", "watch"), "certificates.k8s.io", "certificatesigningrequests")]},
    "system:auth-delegator": {"rules": [rule("create", "authentication.k8s.io", "tokenreviews"),
                                        rule("create", "authorization.k8s.io", "subjectaccessreviews")]},
    "system:kube-aggregator": {"rules": [rule(R, "", ("endpoints", "services"))]},
    "system:kube-controller-manager": {"rules": [
        _events(),
        rule("create", "coordination.k8s.io", "leases"),
        rule(("get", "update"), "coordination.k8s.io", "leases", ("kube-controller-manager",)),
        rule("create", "", ("secrets", "serviceaccounts")),
        rule("delete", "", "secrets"),
        rule("get", "", ("configmaps", "namespaces", "secrets", "serviceaccounts")),
        rule("update", "", ("secrets", "serviceaccounts")),
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"),
        rule(("list", "watch"), "*", "*"),
        rule("create", "", "serviceaccounts/token"),
    ]},
    "system:kube-dns": {"rules": [rule(("list", "watch"), "", ("endpoints", "services"))]},
    "system:persistent-volume-provisioner": {"rules": [
        rule(("create", "delete", "get", "list", "watch"), "", "persistentvolumes"),
        rule(("get", "list", "update", "watch"), "", "persistentvolumeclaims"),
        rule(R, "storage.k8s.io", "storageclasses"), rule("watch", "", "events"), _events()]},
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": {"rules": [
        rule("create", "certificates.k8s.io", "certificatesigningrequests/nodeclient")]},
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": {"rules": [
        rule("create", "certificates.k8s.io", "certificatesigningrequests/selfnodeclient")]},
    "system:volume-scheduler": {"rules": [
        rule(("get", "list", "patch", "update", "watch"), "", "persistentvolumes"),
        rule(R, "storage.k8s.io", "storageclasses"),
        rule(("get", "list", "patch", "update", "watch"), "", "persistentvolumeclaims")]},
    "system:certificates.k8s.io:legacy-unknown-approver": {"rules": [
        rule("approve", "certificates.k8s.io", "signers", ("kubernetes.io/legacy-unknown",))]},
    "system:certificates.k8s.io:kubelet-serving-approver": {"rules": [
        rule("approve", "certificates.k8s.io", "signers", ("kubernetes.io/kubelet-serving",))]},
    "system:certificates.k8s.io:kube-apiserver-client-approver": {"rules": [
        rule("approve", "certificates.k8s.io", "signers", ("kubernetes.io/kube-apiserver-client",))]},
    "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver": {"rules": [
        rule("approve", "certificates.k8s.io", "signers", ("kubernetes.io/kube-apiserver-client-kubelet",))]},
    "system:service-account-issuer-discovery": {"rules": [
        urls("get", "/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks",
             "/openid/v1/jwks/")]},
    "system:node-proxier": {"rules": [
        rule(("list", "watch"), "", ("endpoints", "services")), rule(R, "", "nodes"), _events(),
        rule(("list", "watch"), "discovery.k8s.io", "endpointslices")]},
    "system:kube-scheduler": {"rules": [
        _events(),
        rule("create", "coordination.k8s.io", "leases"),
        rule(("get", "update"), "coordination.k8s.io", "leases", ("kube-scheduler",)),
        rule("create", "", "endpoints"),
        rule(("get", "update"), "", "endpoints", ("kube-scheduler",)),
        rule(R, "", "nodes"),
        rule(("delete", "get", "list", "watch"), "", "pods"),
        rule("create", "", ("bindings", "pods/binding")),
        rule(("patch", "update"), "", "pods/status"),
        rule(R, "", ("replicationcontrollers", "services")),
        rule(R, ("apps", "extensions"), "replicasets"),
        rule(R, "apps", "statefulsets"),
        rule(R, "policy", "poddisruptionbudgets"),
        rule(R, "", ("persistentvolumeclaims", "persistentvolumes")),
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"),
        rule(R, "storage.k8s.io", "csinodes"),
        rule(R, "", "namespaces"),
        rule(R, "storage.k8s.io", ("csidrivers", "csistoragecapacities")),
    ]},
}
for _name, _rules in CONTROLLER_ROLES.items():
    CLUSTER_ROLES[f"system:controller:{_name}"] = {"rules": _rules}


def _user(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def _group(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def _sa(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


# binding name -> (cluster role, subjects)
CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[dict[str, str]]]] = {
    "cluster-admin": ("cluster-admin", [_group("system:masters")]),
    "kubeadm:cluster-admins": ("cluster-admin", [_group("kubeadm:cluster-admins")]),
    "system:basic-user": ("system:basic-user", [_group("system:authenticated")]),
    "system:discovery": ("system:discovery", [_group("system:authenticated")]),
    "system:public-info-viewer": ("system:public-info-viewer",
                                  [_group("system:authenticated"), _group("system:unauthenticated")]),
    "system:kube-controller-manager": ("system:kube-controller-manager", [_user("system:kube-controller-manager")]),
    "system:kube-dns": ("system:kube-dns", [_sa("kube-system", "kube-dns")]),
    "system:kube-scheduler": ("system:kube-scheduler", [_user("system:kube-scheduler")]),
    "system:volume-scheduler": ("system:volume-scheduler", [_user("system:kube-scheduler")]),
    "system:node": ("system:node", []),
    "system:node-proxier": ("system:node-proxier", [_user("system:kube-proxy")]),
    "system:monitoring": ("system:monitoring", [_group("system:monitoring")]),
    "system:service-account-issuer-discovery": ("system:service-account-issuer-discovery",
                                                [_group("system:serviceaccounts")]),
}
for _name in CONTROLLER_ROLES:
    CLUSTER_ROLE_BINDINGS[f"system:controller:{_name}"] = (f"system:controller:{_name}", [_sa("kube-system", _name)])

# (namespace, role name) -> rules, and (namespace, binding name) -> (role, subjects)
NAMESPACE_ROLES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("kube-system", "extension-apiserver-authentication-reader"): [
        rule(R, "", "configmaps", ("extension-apiserver-authentication",))],
    ("kube-system", "system::leader-locking-kube-controller-manager"): [
        rule("watch", "", "configmaps"), rule(("get", "update"), "", "configmaps", ("kube-controller-manager",))],
    ("kube-system", "system::leader-locking-kube-scheduler"): [
        rule("watch", "", "configmaps"), rule(("get", "update"), "", "configmaps", ("kube-scheduler",))],
    ("kube-system", "system:controller:bootstrap-signer"): [rule(R, "", "secrets")],
    ("kube-system", "system:controller:token-cleaner"): [rule(("delete", "get", "list", "watch"), "", "secrets"),
                                                         _events()],
    ("kube-public", "system:controller:bootstrap-signer"): [
        rule(R, "", "configmaps"), rule("update", "", "configmaps", ("cluster-info",)), _events()],
}
NAMESPACE_ROLE_BINDINGS: dict[tuple[str, str], tuple[str, list[dict[str, str]]]] = {
    ("kube-system", "system::extension-apiserver-authentication-reader"): (
        "extension-apiserver-authentication-reader",
        [_user("system:kube-controller-manager"), _user("system:kube-scheduler")]),
    ("kube-system", "system::leader-locking-kube-controller-manager"): (
        "system::leader-locking-kube-controller-manager",
        [_user("system:kube-controller-manager"), _sa("kube-system", "kube-controller-manager")]),
    ("kube-system", "system::leader-locking-kube-scheduler"): (
        "system::leader-locking-kube-scheduler",
        [_user("system:kube-scheduler"), _sa("kube-system", "kube-scheduler")]),
    ("kube-system", "system:controller:bootstrap-signer"): (
        "system:controller:bootstrap-signer", [_sa("kube-system", "bootstrap-signer")]),
    ("kube-system", "system:controller:token-cleaner"): (
        "system:controller:token-cleaner", [_sa("kube-system", "token-cleaner")]),
    ("kube-public", "system:controller:bootstrap-signer"): (
        "system:controller:bootstrap-signer", [_sa("kube-system", "bootstrap-signer")]),
}


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})},
                            "annotations": dict(AUTOUPDATE)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def cluster_role_objects() -> list[dict[str, Any]]:
    out = []
    aggregated: dict[str, list[dict[str, Any]]] = {}
    for spec in CLUSTER_ROLES.values():
        for label in spec.get("labels", {}):
            if label.startswith(AGG):
                aggregated.setdefault(label[len(AGG):], []).extend(spec["rules"])
    # edit aggregates into admin, view into edit: close the chain.
    aggregated["edit"] = aggregated.get("edit", []) + aggregated.get("view", [])
    aggregated["admin"] = aggregated.get("admin", []) + aggregated["edit"]
    for name, spec in CLUSTER_ROLES.items():
        obj: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                               "metadata": _meta(name, labels=spec.get("labels")), "rules": list(spec["rules"])}
        if "aggregate" in spec:
            obj["aggregationRule"] = {"clusterRoleSelectors": [
                {"matchLabels": {AGG + spec["aggregate"]: "true"}}]}
            obj["rules"] = aggregated.get(spec["aggregate"], [])
        out.append(obj)
    return out


def cluster_role_binding_objects() -> list[dict[str, Any]]:
    out = []
    for name, (role, subjects) in CLUSTER_ROLE_BINDINGS.items():
        obj: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                               "metadata": _meta(name),
                               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                           "name": role}}
        if subjects:
            obj["subjects"] = subjects
        out.append(obj)
    return out


def role_objects() -> list[dict[str, Any]]:
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, ns),
             "rules": rules} for (ns, name), rules in NAMESPACE_ROLES.items()]


def role_binding_objects() -> list[dict[str, Any]]:
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, ns),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
             "subjects": subjects} for (ns, name), (role, subjects) in NAMESPACE_ROLE_BINDINGS.items()]
