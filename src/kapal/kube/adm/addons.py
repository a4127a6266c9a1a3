"""kubeadm's addon phase: kube-proxy and CoreDNS, played by `kapal proxy` and `kapal dns`.

The objects are kubeadm's: for kube-proxy a ServiceAccount bound to system:node-proxier, a `kube-proxy`
ConfigMap with the kubeconfig the proxy uses, and a DaemonSet (host network, privileged, every toleration)
running `kapal proxy`; for CoreDNS the `coredns` ServiceAccount with its ClusterRole, a Deployment of two
replicas running `kapal dns`, and the `kube-dns` Service at the tenth address of the service subnet.

Both reach the API server at the control-plane endpoint (kube-proxy is what makes the `kubernetes`
Service work) with a service-account token from a projected volume requested for a year: kapal's API server
does not extend pod tokens the way kube-apiserver's --service-account-extend-token-expiration does, and
the clients read their token once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import COREDNS, KUBE_PROXY
from .images import image_reference
from .manifests import POD_SECCOMP_PROFILE

if TYPE_CHECKING:
    from .init import InitContext

DEPLOYABLE: frozenset[str] = frozenset({KUBE_PROXY, COREDNS})
RBAC = "rbac.authorization.k8s.io/v1"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 365 * 24 * 3600


def in_cluster_kubeconfig(server: str) -> str:
    import yaml

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"cluster": {"certificate-authority": f"{SA_DIR}/ca.crt", "server": server}, "name": "default"}],
        "contexts": [{"context": {"cluster": "default", "namespace": "default", "user": "default"},
                      "name": "default"}],
        "current-context": "default",
        "users": [{"name": "default", "user": {"tokenFile": f"{SA_DIR}/token"}}],
    }, sort_keys=False)


def _token_volume() -> dict[str, Any]:
    return {"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}


def _kapal_volumes(ctx: InitContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes, mounts = [], []
    for name, path in ctx.install.mounts():
        volumes.append({"name": name, "hostPath": {"path": str(path), "type": "Directory"}})
        mounts.append({"name": name, "mountPath": str(path), "readOnly": True})
    return volumes, mounts


def _sa(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": "kube-system"}}


def kube_proxy_objects(ctx: InitContext) -> list[dict[str, Any]]:
    cfg = ctx.cfg
    server = f"https://{cfg.api_endpoint}"
    volumes, mounts = _kapal_volumes(ctx)
    volumes += [{"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}}, _token_volume()]
    mounts += [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
               {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
               {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": True},
               {"name": "kube-api-access", "mountPath": SA_DIR, "readOnly": True}]
    labels = {"k8s-app": "kube-proxy"}
    return [
        _sa("kube-proxy"),
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:node-proxier"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
         "subjects": [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system",
                                                               "labels": {"app": "kube-proxy"}},
         "data": {"kubeconfig.conf": in_cluster_kubeconfig(server)}},
        {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kube-proxy"],
                    "verbs": ["get"]}]},
        {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kube-proxy"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                       "name": "system:bootstrappers:kubeadm:default-node-token"}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": labels},
         "spec": {"selector": {"matchLabels": labels}, "updateStrategy": {"type": "RollingUpdate"},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "automountServiceAccountToken": False,
                      "containers": [{
                          "name": "kube-proxy", "image": image_reference(cfg, KUBE_PROXY),
                          "imagePullPolicy": cfg.image_pull_policy,
                          "command": ["kapal", "proxy", "--kubeconfig=/var/lib/kube-proxy/kubeconfig.conf",
                                      "--hostname-override=$(NODE_NAME)", f"--cluster-cidr={cfg.pod_subnet}"],
                          "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                          "securityContext": {"privileged": True},
                          "volumeMounts": mounts}],
                      "hostNetwork": True, "nodeSelector": {"kubernetes.io/os": "linux"},
                      "priorityClassName": "system-node-critical", "serviceAccountName": "kube-proxy",
                      "tolerations": [{"operator": "Exists"}], "volumes": volumes}}}},
    ]


def coredns_objects(ctx: InitContext) -> list[dict[str, Any]]:
    cfg = ctx.cfg
    server = f"https://{cfg.api_endpoint}"
    labels = {"k8s-app": "kube-dns"}
    volumes, mounts = _kapal_volumes(ctx)
    volumes += [{"name": "kubeconfig", "configMap": {"name": "kapal-dns"}}, _token_volume()]
    mounts += [{"name": "kubeconfig", "mountPath": "/etc/kapal-dns", "readOnly": True},
               {"name": "kube-api-access", "mountPath": SA_DIR, "readOnly": True}]
    return [
        _sa("coredns"),
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kapal-dns", "namespace": "kube-system"},
         "data": {"kubeconfig.conf": in_cluster_kubeconfig(server)}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "automountServiceAccountToken": False,
                      "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                          "weight": 100, "podAffinityTerm": {
                              "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In",
                                                                      "values": ["kube-dns"]}]},
                              "topologyKey": "kubernetes.io/hostname"}}]}},
                      "containers": [{
                          "name": "coredns", "image": image_reference(cfg, COREDNS),
                          "imagePullPolicy": cfg.image_pull_policy,
                          "command": ["kapal", "dns", "--kubeconfig=/etc/kapal-dns/kubeconfig.conf",
                                      f"--cluster-domain={cfg.dns_domain}"],
                          "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                    {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                    {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                            "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1,
                                            "failureThreshold": 5},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
                          "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m",
                                                                                     "memory": "70Mi"}},
                          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                          "volumeMounts": mounts}],
                      "dnsPolicy": "Default", "nodeSelector": {"kubernetes.io/os": "linux"},
                      "priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns",
                      "securityContext": {"seccompProfile": {"type": POD_SECCOMP_PROFILE}},
                      "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                      {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                      "volumes": volumes}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system",
                      "labels": {**labels, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                      "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
         "spec": {"clusterIP": cfg.dns_service_ip, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}},
    ]


def apply(ctx: InitContext, component: str) -> None:
    client = ctx.client()
    objects = kube_proxy_objects(ctx) if component == KUBE_PROXY else coredns_objects(ctx)
    for obj in objects:
        if obj["kind"] == "Service":  # a Service's clusterIP cannot be replaced: keep one that is there
            from .apiclient import resource_path

            if client.get(resource_path(obj, obj["metadata"]["name"])) is None:
                client.create(obj)
        else:
            client.create_or_update(obj)
