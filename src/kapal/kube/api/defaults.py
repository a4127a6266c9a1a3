"""Field defaults, as upstream's defaulting functions set them on every decoded object (create and update).

Server-owned values that need state (ClusterIPs, NodePorts, service account, priority, status on create) are
the API server's; this module only fills fields from the object itself. `apply_defaults` is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kapal.kube.meta.resources import ResourceType

Obj = dict[str, Any]

DEFAULT_MODE = 0o644  # 420: secret, configMap, projected and downwardAPI volumes


def apply_defaults(r: ResourceType, obj: Obj) -> None:
    """Fill upstream's defaults into `obj` in place."""
    if (r.group, r.version, r.kind) == ("autoscaling", "v1", "HorizontalPodAutoscaler"):
        _hpa_v1(obj)
        return
    fn = _BY_KIND.get((r.group, r.kind))
    if fn is not None:
        fn(obj)


def _d(node: Obj, key: str, value: Any) -> None:
    """Set a default: only when the field is absent or null."""
    if node.get(key) is None:
        node[key] = value


def _sub(node: Obj, key: str) -> Obj:
    value = node.get(key)
    if not isinstance(value, dict):
        value = {}
        node[key] = value
    return value


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- pods ------------------------------------------------------------------------------------------------------


def pod_spec(spec: Obj, pod: bool = False) -> None:
    """PodSpec defaults; `pod` adds those upstream gives only to Pods, not to templates."""
    _d(spec, "dnsPolicy", "ClusterFirst")
    _d(spec, "restartPolicy", "Always")
    _d(spec, "terminationGracePeriodSeconds", 30)
    _d(spec, "securityContext", {})
    _d(spec, "schedulerName", "default-scheduler")
    if pod:
        _d(spec, "enableServiceLinks", True)
    host_network = pod and bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            _container(c, host_network, pod)
    for v in _dicts(spec.get("volumes")):
        _volume(v)


def _container(c: Obj, host_network: bool, pod: bool) -> None:
    _d(c, "terminationMessagePath", "/dev/termination-log")
    _d(c, "terminationMessagePolicy", "File")
    _d(c, "imagePullPolicy", _pull_policy(str(c.get("image") or "")))
    resources = c.get("resources")
    if resources is None and "resources" not in c:
        c["resources"] = {}
    elif isinstance(resources, dict) and pod:
        limits, requests = resources.get("limits"), resources.get("requests")
        if isinstance(limits, dict) and limits:
            requests = requests if isinstance(requests, dict) else {}
            for name, quantity in limits.items():
                requests.setdefault(name, quantity)
            resources["requests"] = requests
    for port in _dicts(c.get("ports")):
        _d(port, "protocol", "TCP")
        if host_network and port.get("hostPort") is None and port.get("containerPort") is not None:
            port["hostPort"] = port["containerPort"]
    for env in _dicts(c.get("env")):
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env.get("valueFrom"), dict) else None
        if isinstance(field_ref, dict):
            _d(field_ref, "apiVersion", "v1")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(key)
        if isinstance(probe, dict):
            _d(probe, "timeoutSeconds", 1)
            _d(probe, "periodSeconds", 10)
            _d(probe, "successThreshold", 1)
            _d(probe, "failureThreshold", 3)
            _handler(probe)
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for key in ("postStart", "preStop"):
            if isinstance(lifecycle.get(key), dict):
                _handler(lifecycle[key])


def _handler(handler: Obj) -> None:
    http = handler.get("httpGet")
    if isinstance(http, dict):
        _d(http, "path", "/")
        _d(http, "scheme", "HTTP")


def _pull_policy(image: str) -> str:
    """Always for `:latest` or untagged images (without a digest), IfNotPresent otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _volume(v: Obj) -> None:
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(key)
        if isinstance(src, dict):
            _d(src, "defaultMode", DEFAULT_MODE)
            for item in _dicts(src.get("items")):
                field_ref = item.get("fieldRef")
                if isinstance(field_ref, dict):
                    _d(field_ref, "apiVersion", "v1")
            for source in _dicts(src.get("sources")):
                downward = source.get("downwardAPI")
                for item in _dicts(downward.get("items") if isinstance(downward, dict) else None):
                    if isinstance(item.get("fieldRef"), dict):
                        _d(item["fieldRef"], "apiVersion", "v1")
                token = source.get("serviceAccountToken")
                if isinstance(token, dict):
                    _d(token, "expirationSeconds", 3600)
    host_path = v.get("hostPath")
    if isinstance(host_path, dict):
        _d(host_path, "type", "")
    iscsi = v.get("iscsi")
    if isinstance(iscsi, dict):
        _d(iscsi, "iscsiInterface", "default")
    rbd = v.get("rbd")
    if isinstance(rbd, dict):
        _d(rbd, "pool", "rbd")
        _d(rbd, "user", "admin")
        _d(rbd, "keyring", "/etc/ceph/keyring")
    azure = v.get("azureDisk")
    if isinstance(azure, dict):
        _d(azure, "cachingMode", "ReadWrite")
        _d(azure, "fsType", "ext4")
        _d(azure, "readOnly", False)
        _d(azure, "kind", "Shared")


def _template(spec_holder: Obj) -> None:
    template = spec_holder.get("template")
    if isinstance(template, dict):
        pod_spec(_sub(template, "spec"))


def _pod(obj: Obj) -> None:
    pod_spec(_sub(obj, "spec"), pod=True)


def _pod_template(obj: Obj) -> None:
    _template(obj)


# --- workloads -----------------------------------------------------------------------------------------------


def _deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "replicas", 1)
    strategy = _sub(spec, "strategy")
    _d(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _d(rolling, "maxUnavailable", "25%")
        _d(rolling, "maxSurge", "25%")
    _d(spec, "revisionHistoryLimit", 10)
    _d(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _replica_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "replicas", 1)
    _template(spec)


def _replication_controller(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "replicas", 1)
    template = spec.get("template")
    labels = ((template or {}).get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _sub(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    _template(spec)


def _stateful_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "replicas", 1)
    _d(spec, "podManagementPolicy", "OrderedReady")
    strategy = _sub(spec, "updateStrategy")
    _d(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _d(_sub(strategy, "rollingUpdate"), "partition", 0)
    _d(spec, "revisionHistoryLimit", 10)
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    _d(retention, "whenDeleted", "Retain")
    _d(retention, "whenScaled", "Retain")
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        claim_spec = _sub(claim, "spec")
        _d(claim_spec, "volumeMode", "Filesystem")
        _d(claim, "status", {"phase": "Pending"})
    _template(spec)


def _daemon_set(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    _d(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _d(rolling, "maxUnavailable", 1)
        _d(rolling, "maxSurge", 0)
    _d(spec, "revisionHistoryLimit", 10)
    _template(spec)


def job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _d(spec, "parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    _d(spec, "completionMode", "NonIndexed")
    _d(spec, "suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    failure = spec.get("podFailurePolicy")
    if isinstance(failure, dict):
        for rule in _dicts(failure.get("rules")):
            for condition in _dicts(rule.get("onPodConditions")):
                _d(condition, "status", "True")
    _template(spec)


def _job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    job_spec(spec)
    _job_selector(obj, spec)


def _job_selector(obj: Obj, spec: Obj) -> None:
    """The generated selector and labels upstream gives a Job with a uid and no manualSelector."""
    meta = obj.get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    if not uid or spec.get("manualSelector") or spec.get("selector"):
        return
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = _sub(spec, "template")
    labels = _sub(_sub(template, "metadata"), "labels")
    labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    labels.setdefault("controller-uid", uid)
    if name:
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("job-name", name)


def _cron_job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "concurrencyPolicy", "Allow")
    _d(spec, "suspend", False)
    _d(spec, "successfulJobsHistoryLimit", 3)
    _d(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        job_spec(_sub(job_template, "spec"))


def _hpa_v2(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        up = _sub(behavior, "scaleUp")
        _d(up, "stabilizationWindowSeconds", 0)
        _d(up, "selectPolicy", "Max")
        _d(up, "policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                            {"type": "Percent", "value": 100, "periodSeconds": 15}])
        down = _sub(behavior, "scaleDown")
        _d(down, "selectPolicy", "Max")
        _d(down, "policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _hpa_v1(obj: Obj) -> None:
    _d(_sub(obj, "spec"), "minReplicas", 1)


# --- core ------------------------------------------------------------------------------------------------------


def _service(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "type", "ClusterIP")
    _d(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _sub(_sub(spec, "sessionAffinityConfig"), "clientIP")
        _d(client_ip, "timeoutSeconds", 10800)
    kind = spec["type"]
    for port in _dicts(spec.get("ports")):
        _d(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if kind != "ExternalName":
        _d(spec, "internalTrafficPolicy", "Cluster")
    if kind in ("NodePort", "LoadBalancer"):
        _d(spec, "externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _d(spec, "allocateLoadBalancerNodePorts", True)


def _namespace(obj: Obj) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        _sub(_sub(obj, "metadata"), "labels")["kubernetes.io/metadata.name"] = name


def _secret(obj: Obj) -> None:
    _d(obj, "type", "Opaque")


def _endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            _d(port, "protocol", "TCP")


def _persistent_volume(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "persistentVolumeReclaimPolicy", "Retain")
    _d(spec, "volumeMode", "Filesystem")
    host_path = spec.get("hostPath")
    if isinstance(host_path, dict):
        _d(host_path, "type", "")


def _persistent_volume_claim(obj: Obj) -> None:
    _d(_sub(obj, "spec"), "volumeMode", "Filesystem")


def _limit_range(obj: Obj) -> None:
    for item in _dicts(_sub(obj, "spec").get("limits")):
        if item.get("type") != "Container":
            continue
        maximum = item.get("max") if isinstance(item.get("max"), dict) else {}
        default = item.get("default") if isinstance(item.get("default"), dict) else {}
        for name, quantity in maximum.items():
            default.setdefault(name, quantity)
        if default:
            item["default"] = default
        request = item.get("defaultRequest") if isinstance(item.get("defaultRequest"), dict) else {}
        for name, quantity in default.items():
            request.setdefault(name, quantity)
        if request:
            item["defaultRequest"] = request


# --- other groups ----------------------------------------------------------------------------------------------


def _binding(obj: Obj) -> None:
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict):
        _d(role_ref, "apiGroup", "rbac.authorization.k8s.io")
    for subject in _dicts(obj.get("subjects")):
        if subject.get("apiGroup") is None or subject.get("apiGroup") == "":
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = "rbac.authorization.k8s.io"
            elif subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""


def _network_policy(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    for rule in _dicts(spec.get("ingress")) + _dicts(spec.get("egress")):
        for port in _dicts(rule.get("ports")):
            _d(port, "protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _priority_class(obj: Obj) -> None:
    _d(obj, "preemptionPolicy", "PreemptLowerPriority")


def _storage_class(obj: Obj) -> None:
    _d(obj, "reclaimPolicy", "Delete")
    _d(obj, "volumeBindingMode", "Immediate")


def _csi_driver(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _d(spec, "attachRequired", True)
    _d(spec, "podInfoOnMount", False)
    _d(spec, "storageCapacity", False)
    _d(spec, "fsGroupPolicy", "ReadWriteOnceWithFSType")
    _d(spec, "requiresRepublish", False)
    _d(spec, "volumeLifecycleModes", ["Persistent"])
    _d(spec, "seLinuxMount", False)


def _endpoint_slice(obj: Obj) -> None:
    for port in _dicts(obj.get("ports")):
        _d(port, "protocol", "TCP")
        _d(port, "name", "")


def _ingress_class(obj: Obj) -> None:
    params = _sub(obj, "spec").get("parameters")
    if isinstance(params, dict):
        _d(params, "scope", "Cluster")


_BY_KIND: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "Pod"): _pod,
    ("", "PodTemplate"): _pod_template,
    ("", "ReplicationController"): _replication_controller,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("", "Secret"): _secret,
    ("", "Endpoints"): _endpoints,
    ("", "PersistentVolume"): _persistent_volume,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "LimitRange"): _limit_range,
    ("apps", "Deployment"): _deployment,
    ("apps", "ReplicaSet"): _replica_set,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cron_job,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding,
    ("networking.k8s.io", "NetworkPolicy"): _network_policy,
    ("networking.k8s.io", "IngressClass"): _ingress_class,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("storage.k8s.io", "CSIDriver"): _csi_driver,
    ("discovery.k8s.io", "EndpointSlice"): _endpoint_slice,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa_v2,
}
