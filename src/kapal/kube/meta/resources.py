"""The resource registry: every API kind kapal serves, described once as data.

Everything generic reads this table: URL routing, discovery, OpenAPI paths,
RBAC resource names, clients building URLs, `kubectl api-resources`. Adding
a kind is adding a row, never a handler.

Glossary: *group* "" is the core group (served under /api/v1); *plural* is
the URL segment and the RBAC resource name; *storage_group/storage_plural*
name the objects' one home when two API versions or groups serve the same
objects (HPA autoscaling/v1 and v2; core and events.k8s.io Events).
"""

from __future__ import annotations

from dataclasses import dataclass

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)

# Schema packages in kubernetes-validate's _definitions.json, by API group.
_SCHEMA_PACKAGE = {
    "": "io.k8s.api.core",
    "apps": "io.k8s.api.apps",
    "batch": "io.k8s.api.batch",
    "autoscaling": "io.k8s.api.autoscaling",
    "networking.k8s.io": "io.k8s.api.networking",
    "policy": "io.k8s.api.policy",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "certificates.k8s.io": "io.k8s.api.certificates",
    "discovery.k8s.io": "io.k8s.api.discovery",
    "events.k8s.io": "io.k8s.api.events",
    "storage.k8s.io": "io.k8s.api.storage",
    "scheduling.k8s.io": "io.k8s.api.scheduling",
    "node.k8s.io": "io.k8s.api.node",
    "authentication.k8s.io": "io.k8s.api.authentication",
    "authorization.k8s.io": "io.k8s.api.authorization",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "metrics.k8s.io": "io.k8s.metrics.pkg.apis.metrics",
}


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    storage_group: str | None = None
    storage_plural: str | None = None

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def schema_name(self) -> str:
        """Definition name in the Kubernetes JSON schemas, e.g. io.k8s.api.apps.v1.Deployment."""
        return f"{_SCHEMA_PACKAGE[self.group]}.{self.version}.{self.kind}"

    @property
    def storage_key(self) -> tuple[str, str]:
        """Where the objects live, shared by every version/group that serves them."""
        return (
            self.group if self.storage_group is None else self.storage_group,
            self.plural if self.storage_plural is None else self.storage_plural,
        )

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of a collection, an object, or an object's subresource."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


def _r(group: str, version: str, kind: str, plural: str, namespaced: bool = True, **kw) -> ResourceType:
    for key in ("short_names", "categories", "verbs", "subresources"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return ResourceType(group, version, kind, plural, namespaced, **kw)


ALL = ("all",)

RESOURCES: tuple[ResourceType, ...] = (
    # core/v1
    _r("", "v1", "Binding", "bindings", verbs=CREATE_ONLY),
    _r("", "v1", "ConfigMap", "configmaps", short_names=["cm"]),
    _r("", "v1", "Endpoints", "endpoints", short_names=["ep"]),
    _r("", "v1", "Event", "events", short_names=["ev"]),
    _r("", "v1", "LimitRange", "limitranges", short_names=["limits"]),
    _r("", "v1", "Namespace", "namespaces", False, short_names=["ns"],
       verbs=("create", "delete", "get", "list", "patch", "update", "watch"), subresources=["status", "finalize"]),
    _r("", "v1", "Node", "nodes", False, short_names=["no"], subresources=["status", "proxy"]),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=["pvc"], subresources=["status"]),
    _r("", "v1", "PersistentVolume", "persistentvolumes", False, short_names=["pv"], subresources=["status"]),
    _r("", "v1", "Pod", "pods", short_names=["po"], categories=ALL,
       subresources=["attach", "binding", "eviction", "exec", "log", "portforward", "proxy", "status",
                     "ephemeralcontainers", "resize"]),
    _r("", "v1", "PodTemplate", "podtemplates"),
    _r("", "v1", "ReplicationController", "replicationcontrollers", short_names=["rc"], categories=ALL,
       subresources=["scale", "status"]),
    _r("", "v1", "ResourceQuota", "resourcequotas", short_names=["quota"], subresources=["status"]),
    _r("", "v1", "Secret", "secrets"),
    _r("", "v1", "ServiceAccount", "serviceaccounts", short_names=["sa"], subresources=["token"]),
    _r("", "v1", "Service", "services", short_names=["svc"], categories=ALL, subresources=["status", "proxy"]),
    # apps/v1
    _r("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _r("apps", "v1", "DaemonSet", "daemonsets", short_names=["ds"], categories=ALL, subresources=["status"]),
    _r("apps", "v1", "Deployment", "deployments", short_names=["deploy"], categories=ALL,
       subresources=["scale", "status"]),
    _r("apps", "v1", "ReplicaSet", "replicasets", short_names=["rs"], categories=ALL,
       subresources=["scale", "status"]),
    _r("apps", "v1", "StatefulSet", "statefulsets", short_names=["sts"], categories=ALL,
       subresources=["scale", "status"]),
    # batch/v1
    _r("batch", "v1", "CronJob", "cronjobs", short_names=["cj"], categories=ALL, subresources=["status"]),
    _r("batch", "v1", "Job", "jobs", categories=ALL, subresources=["status"]),
    # autoscaling: v2 is the storage version; v1 is a converted view of the same objects.
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=["hpa"],
       categories=ALL, subresources=["status"]),
    _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=["hpa"],
       categories=ALL, subresources=["status"]),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=["ing"], subresources=["status"]),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=["netpol"]),
    # policy/v1
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=["pdb"], subresources=["status"]),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "Lease", "leases"),
    # certificates.k8s.io/v1
    _r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", False,
       short_names=["csr"], subresources=["approval", "status"]),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    # events.k8s.io/v1: the same objects as core/v1 Events, in the newer shape.
    _r("events.k8s.io", "v1", "Event", "events", short_names=["ev"], storage_group=""),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    _r("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    _r("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities"),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, short_names=["sc"]),
    _r("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, subresources=["status"]),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, short_names=["pc"]),
    # node.k8s.io/v1
    _r("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
    # authentication.k8s.io/v1 and authorization.k8s.io/v1: create-only reviews, never stored.
    _r("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False, verbs=CREATE_ONLY),
    _r("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False,
       verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False,
       verbs=CREATE_ONLY),
    _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False, verbs=CREATE_ONLY),
    # metrics.k8s.io/v1beta1: resource usage the API server reads from the kubelets, never stored.
    _r("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, verbs=("get", "list")),
    _r("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", verbs=("get", "list")),
)

# Kinds that are requests, answered and never stored.
REVIEW_KINDS = frozenset(
    r.kind for r in RESOURCES if r.group in ("authentication.k8s.io", "authorization.k8s.io")
) | {"Binding"}

# Groups whose objects are computed on request, never stored (no storage key, no watch cache).
COMPUTED_GROUPS = frozenset({"metrics.k8s.io"})

# The version each group prefers (first in discovery).
PREFERRED_VERSION = {"autoscaling": "v2"}


def groups() -> dict[str, list[str]]:
    """API groups in discovery order, each with its versions, preferred first."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    for group, preferred in PREFERRED_VERSION.items():
        if group in out and preferred in out[group]:
            out[group].remove(preferred)
            out[group].insert(0, preferred)
    return out


def by_group_version(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for r in RESOURCES:
        if r.api_version == api_version and r.kind == kind:
            return r
    return None
