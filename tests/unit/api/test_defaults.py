"""Defaults as upstream fills them, idempotent, never overriding what the user set."""

import copy

from kapal.kube.api.defaults import apply_defaults
from kapal.kube.meta.resources import by_kind


def _defaulted(api_version, kind, obj):
    r = by_kind(api_version, kind)
    out = copy.deepcopy(obj)
    apply_defaults(r, out)
    again = copy.deepcopy(out)
    apply_defaults(r, again)
    assert again == out, "defaulting must be idempotent"
    return out


def test_pod_spec_and_container_defaults():
    pod = _defaulted("v1", "Pod", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
         "resources": {"limits": {"cpu": "1"}},
         "livenessProbe": {"httpGet": {"port": 80}},
         "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
        {"name": "b", "image": "busybox:1.36", "imagePullPolicy": "Never"},
        {"name": "c", "image": "registry:5000/app@sha256:" + "0" * 64},
    ], "volumes": [{"name": "s", "secret": {"secretName": "x"}}, {"name": "h", "hostPath": {"path": "/x"}}]}})
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["schedulerName"]) == \
        ("Always", "ClusterFirst", "default-scheduler")
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    a, b, c = spec["containers"]
    assert a["imagePullPolicy"] == "Always" and b["imagePullPolicy"] == "Never"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert a["terminationMessagePath"] == "/dev/termination-log" and a["terminationMessagePolicy"] == "File"
    assert a["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert a["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}
    assert b["resources"] == {}
    assert a["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                  "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"][0]["secret"]["defaultMode"] == 420
    assert spec["volumes"][1]["hostPath"]["type"] == ""


def test_host_network_pods_publish_container_ports():
    pod = _defaulted("v1", "Pod", {"spec": {"hostNetwork": True, "containers": [
        {"name": "a", "image": "x:1", "ports": [{"containerPort": 8080}]}]}})
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


def test_deployment_defaults_and_template_without_pod_only_fields():
    d = _defaulted("apps/v1", "Deployment", {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "a", "image": "nginx:1.25", "resources": {"limits": {"cpu": "1"}}}]}}}})
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                           "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and "enableServiceLinks" not in pod
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "requests" not in pod["containers"][0]["resources"]
    recreate = _defaulted("apps/v1", "Deployment", {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}})
    assert recreate["spec"]["strategy"] == {"type": "Recreate"} and recreate["spec"]["replicas"] == 0


def test_job_and_cronjob_defaults():
    job = _defaulted("batch/v1", "Job", {"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {
        "spec": {"containers": [{"name": "a", "image": "busybox"}], "restartPolicy": "Never"}}}})
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "j", "job-name": "j"}
    parallel = _defaulted("batch/v1", "Job", {"spec": {"parallelism": 3}})
    assert "completions" not in parallel["spec"] and parallel["spec"]["parallelism"] == 3
    cron = _defaulted("batch/v1", "CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}})
    spec = cron["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 6
    assert "selector" not in spec["jobTemplate"]["spec"]


def test_service_defaults_by_type():
    svc = _defaulted("v1", "Service", {"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}})
    spec = svc["spec"]
    assert (spec["type"], spec["sessionAffinity"], spec["internalTrafficPolicy"]) == ("ClusterIP", "None", "Cluster")
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert "externalTrafficPolicy" not in spec
    lb = _defaulted("v1", "Service", {"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster" and lb["spec"]["allocateLoadBalancerNodePorts"]
    assert lb["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    ext = _defaulted("v1", "Service", {"spec": {"type": "ExternalName", "externalName": "x.example"}})
    assert "internalTrafficPolicy" not in ext["spec"]


def test_small_kinds():
    ns = _defaulted("v1", "Namespace", {"metadata": {"name": "team-a", "labels": {"x": "y"}}})
    assert ns["metadata"]["labels"] == {"x": "y", "kubernetes.io/metadata.name": "team-a"}
    assert _defaulted("v1", "Secret", {"data": {}})["type"] == "Opaque"
    rb = _defaulted("rbac.authorization.k8s.io/v1", "RoleBinding", {
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "d"}]})
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert rb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io" and rb["subjects"][1]["apiGroup"] == ""
    assert _defaulted("scheduling.k8s.io/v1", "PriorityClass", {"value": 1})["preemptionPolicy"] == \
        "PreemptLowerPriority"
    hpa = _defaulted("autoscaling/v2", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    hpa1 = _defaulted("autoscaling/v1", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})
    assert hpa1["spec"] == {"maxReplicas": 3, "minReplicas": 1}
    np = _defaulted("networking.k8s.io/v1", "NetworkPolicy", {"spec": {"egress": [{"ports": [{"port": 53}]}]}})
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
