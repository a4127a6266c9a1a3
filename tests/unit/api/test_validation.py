"""Validation causes carry upstream's field paths, reasons and wording."""

import copy

import pytest

from kapal.kube.api.defaults import apply_defaults
from kapal.kube.api.validation import validate
from kapal.kube.meta.resources import by_kind

SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
             "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def _causes(api_version, kind, obj, old=None, defaults=True):
    r = by_kind(api_version, kind)
    obj = copy.deepcopy(obj)
    if defaults:
        apply_defaults(r, obj)
    return [str(c) for c in validate(r, obj, old)]


def _deployment(**spec):
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}
    base["spec"].update(spec)
    return base


def test_invalid_name_message_is_upstreams():
    r = by_kind("v1", "ConfigMap")
    [cause] = validate(r, {"metadata": {"name": "Foo"}})
    assert (cause.field, cause.reason) == ("metadata.name", "FieldValueInvalid")
    assert cause.message == f'Invalid value: "Foo": {SUBDOMAIN}'


@pytest.mark.parametrize("api_version, kind, name, expected", [
    ("v1", "Namespace", "a.b", "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                               "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                               "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
    ("v1", "Service", "1abc", "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                              "with an alphabetic character, and end with an alphanumeric character (e.g. "
                              "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
    ("batch/v1", "CronJob", "c" * 53, "must be no more than 52 characters"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "a/b", "may not contain '/'"),
])
def test_name_rules_per_kind(api_version, kind, name, expected):
    causes = _causes(api_version, kind, {"metadata": {"name": name}}, defaults=False)
    assert any(c.startswith("metadata.name: Invalid value:") and c.endswith(expected) for c in causes), causes


def test_names_that_are_fine():
    assert _causes("rbac.authorization.k8s.io/v1", "ClusterRole", {"metadata": {"name": "system:controller:x"}}) \
        == []
    assert _causes("v1", "ConfigMap", {"metadata": {"generateName": "web-"}}) == []
    assert _causes("v1", "ConfigMap", {"metadata": {}}) == [
        "metadata.name: Required value: name or generateName is required"]


def test_labels_annotations_and_finalizers():
    causes = _causes("v1", "ConfigMap", {"metadata": {
        "name": "c", "labels": {"-bad": "ok", "good": "bad value"}, "annotations": {"a/b/c": "x"},
        "finalizers": ["example.com/ok", "not ok"]}})
    assert causes[0].startswith('metadata.labels: Invalid value: "-bad": name part must consist of alphanumeric')
    assert causes[1].startswith('metadata.labels: Invalid value: "bad value": a valid label must be an empty string')
    assert causes[2].startswith('metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of')
    assert causes[3].startswith('metadata.finalizers[1]: Invalid value: "not ok": name part must consist')
    assert len(causes) == 4


def test_pod_rules():
    pod = {"metadata": {"name": "p"}, "spec": {
        "restartPolicy": "Sometimes",
        "volumes": [{"name": "v", "emptyDir": {}}],
        "containers": [
            {"name": "a", "ports": [{"containerPort": 70000, "protocol": "tcp"}],
             "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}},
             "volumeMounts": [{"name": "missing", "mountPath": "/x"}]},
            {"name": "a", "image": "x", "env": [{"name": "1BAD"}]},
            {"image": "x"},
        ]}}
    causes = _causes("v1", "Pod", pod)
    expected = [
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].volumeMounts[0].name: Not found: "missing"',
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
        'spec.containers[1].name: Duplicate value: "a"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"',
        "spec.containers[2].name: Required value",
    ]
    for e in expected:
        assert e in causes, (e, causes)
    assert any(c.startswith('spec.containers[1].env[0].name: Invalid value: "1BAD": a valid environment variable')
               for c in causes)


def test_pod_update_may_change_only_images_and_a_few_fields():
    r = by_kind("v1", "Pod")
    old = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}}
    apply_defaults(r, old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "y"
    new["spec"]["activeDeadlineSeconds"] = 5
    assert validate(r, new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    [cause] = validate(r, new, old)
    assert cause.field == "spec" and cause.message.startswith("Forbidden: pod updates may not change fields")


def test_a_kubectl_style_deployment_is_valid():
    assert _causes("apps/v1", "Deployment", _deployment()) == []


def test_deployment_rules():
    assert _causes("apps/v1", "Deployment", _deployment(selector={"matchLabels": {"app": "other"}})) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
        "template `labels`"]
    causes = _causes("apps/v1", "Deployment", _deployment(
        replicas=-1, strategy={"type": "Recreate", "rollingUpdate": {}}, progressDeadlineSeconds=5,
        minReadySeconds=10))
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in causes
    assert "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'" in causes
    assert "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds" in causes
    causes = _causes("apps/v1", "Deployment", _deployment(strategy={"rollingUpdate": {"maxSurge": 0,
                                                                                      "maxUnavailable": 0}}))
    assert causes == ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    causes = _causes("apps/v1", "Deployment", _deployment(selector={}))
    assert causes[0] == ("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                         "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                         "deployment")
    bad_template = _deployment()
    bad_template["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert _causes("apps/v1", "Deployment", bad_template) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']
    missing = {"metadata": {"name": "d"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {
        "containers": [{"name": "a", "image": "b"}]}}}}
    assert "spec.selector: Required value" in _causes("apps/v1", "Deployment", missing)


def test_deployment_selector_is_immutable():
    old = _deployment()
    new = _deployment(selector={"matchLabels": {"app": "web", "x": "y"}})
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    causes = _causes("apps/v1", "Deployment", new, old)
    assert causes == ['spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", '
                      '"x":"y"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']


def test_job_and_cronjob_rules():
    job = {"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "b"}]}}}}
    assert _causes("batch/v1", "Job", job) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert _causes("batch/v1", "Job", job) == []
    cron = {"metadata": {"name": "c"}, "spec": {"schedule": "bad", "concurrencyPolicy": "Sometimes", "jobTemplate": {
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}], "restartPolicy": "Never"}}}}}}
    causes = _causes("batch/v1", "CronJob", cron)
    assert causes == ['spec.schedule: Invalid value: "bad": expected exactly 5 fields, found 1: [bad]',
                      'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", '
                      '"Replace"']
    cron["spec"].update(schedule="*/5 * * * *", concurrencyPolicy="Forbid", timeZone="Europe/Berlin")
    assert _causes("batch/v1", "CronJob", cron) == []


def test_service_rules():
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "nodePort": 30001}, {"port": 0}]}}
    causes = _causes("v1", "Service", svc)
    assert "spec.ports[0].name: Required value" in causes
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in causes
    assert "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive" in causes
    assert _causes("v1", "Service", {"metadata": {"name": "s"}, "spec": {}}) == ["spec.ports: Required value"]
    old = {"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                                               "ports": [{"port": 53}]}}
    new = copy.deepcopy(old)
    new["spec"].update(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"])
    assert _causes("v1", "Service", new, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set']


def test_config_data_keys_and_secret_types():
    causes = _causes("v1", "ConfigMap", {"metadata": {"name": "c"}, "data": {"bad key": "x", "ok": "y"},
                                         "binaryData": {"ok": "eQ=="}})
    assert causes == [
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, "
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')",
        'data[ok]: Invalid value: "ok": duplicate of key present in binaryData']
    assert _causes("v1", "Secret", {"metadata": {"name": "t"}, "type": "kubernetes.io/tls",
                                    "data": {"tls.crt": "eA=="}}) == ["data[tls.key]: Required value"]
    old = {"metadata": {"name": "s"}, "data": {"a": "eA=="}, "immutable": True}
    new = {**old, "data": {"a": "eQ=="}}
    assert _causes("v1", "Secret", new, old) == ["data: Forbidden: field is immutable when `immutable` is set"]


def test_rbac_rules():
    role = {"metadata": {"name": "r"}, "rules": [{"resources": ["pods"]}, {"verbs": ["get"],
                                                                          "nonResourceURLs": ["/x"]}]}
    assert _causes("rbac.authorization.k8s.io/v1", "Role", role) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        'rules[1].nonResourceURLs: Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs']
    binding = {"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"},
               "subjects": [{"kind": "User", "name": "u"}, {"kind": "Robot", "name": "x"}]}
    assert _causes("rbac.authorization.k8s.io/v1", "RoleBinding", binding) == [
        'subjects[1].kind: Unsupported value: "Robot": supported values: "Group", "ServiceAccount", "User"']
    changed = copy.deepcopy(binding)
    changed["roleRef"]["name"] = "other"
    apply_defaults(by_kind("rbac.authorization.k8s.io/v1", "RoleBinding"), binding)
    assert 'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", ' \
           'Name:"other"}: cannot change roleRef' in _causes("rbac.authorization.k8s.io/v1", "RoleBinding",
                                                             changed, binding)


def test_small_kinds():
    old = {"metadata": {"name": "p"}, "value": 5}
    assert _causes("scheduling.k8s.io/v1", "PriorityClass", {**old, "value": 6}, old) == [
        "value: Forbidden: may not be changed in an update."]
    pdb = {"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}}
    assert _causes("policy/v1", "PodDisruptionBudget", pdb) == [
        "spec: Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both "
        "set",
        'spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%']
    ing = {"metadata": {"name": "i"}, "spec": {"rules": [{"host": "foo.com", "http": {"paths": [
        {"path": "bar", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
        {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}}
    assert _causes("networking.k8s.io/v1", "Ingress", ing) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "bar": must be an absolute path',
        "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified"]
    assert _causes("networking.k8s.io/v1", "NetworkPolicy", {"metadata": {"name": "n"}, "spec": {}}) == []
    assert _causes("authorization.k8s.io/v1", "SelfSubjectAccessReview", {"spec": {}}) == []


def test_node_pod_cidr_is_set_once():
    def node(**spec):
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": spec}

    assert _causes("v1", "Node", node(podCIDR="10.244.0.0/24", podCIDRs=["10.244.0.0/24"]), node()) == []
    set_once = node(podCIDR="10.244.0.0/24", podCIDRs=["10.244.0.0/24"], providerID="kapal://n1")
    assert _causes("v1", "Node", set_once, set_once) == []
    moved = node(podCIDR="10.244.1.0/24", podCIDRs=["10.244.1.0/24"], providerID="other://n1")
    assert _causes("v1", "Node", moved, set_once) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid',
        'spec.providerID: Forbidden: node updates may not change providerID except from "" to valid']
