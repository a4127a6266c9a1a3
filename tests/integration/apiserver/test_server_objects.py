"""Object semantics through the official Python client: patch types, pagination, selectors, subresources,
deletion, allocation and the objects a fresh server bootstraps."""

from __future__ import annotations

import json
import time

import pytest


@pytest.fixture(scope="module")
def api(apiserver):
    from kubernetes import config

    return config.new_client_from_config(str(apiserver.kubeconfig))


@pytest.fixture(scope="module")
def ns(api):
    from kubernetes import client

    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="objs")))
    return "objs"


def _deployment(name: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}


def test_each_patch_type(api, ns):
    from kubernetes import client

    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("patchy"))
    apps.patch_namespaced_deployment("patchy", ns, [{"op": "replace", "path": "/spec/replicas", "value": 2}])
    apps.patch_namespaced_deployment("patchy", ns, {"metadata": {"labels": {"m": "1"}}},
                                     _content_type="application/merge-patch+json")
    apps.patch_namespaced_deployment(
        "patchy", ns, {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}},
        _content_type="application/strategic-merge-patch+json")
    d = apps.read_namespaced_deployment("patchy", ns)
    assert d.spec.replicas == 2 and d.metadata.labels["m"] == "1"
    assert sorted(c.name for c in d.spec.template.spec.containers) == ["c", "side"]
    applied = _deployment("patchy", 4)
    applied["spec"]["template"]["spec"]["containers"] = [{"name": "c", "image": "busybox:1.36"},
                                                         {"name": "side", "image": "busybox"}]
    apps.patch_namespaced_deployment("patchy", ns, applied, field_manager="tester", force=True,
                                     _content_type="application/apply-patch+yaml")
    d = apps.read_namespaced_deployment("patchy", ns)
    assert d.spec.replicas == 4
    assert d.metadata.generation >= 3


def test_generation_and_status_subresource(api, ns):
    from kubernetes import client

    apps = client.AppsV1Api(api)
    d = apps.create_namespaced_deployment(ns, _deployment("gen"))
    assert d.metadata.generation == 1 and not (d.status and d.status.replicas)
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment_status("gen", ns, {"status": {"replicas": 1, "observedGeneration": 1}})
    assert d.status.replicas == 1 and d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 3}, "status": {"replicas": 99}})
    assert d.metadata.generation == 2 and d.status.replicas == 1
    scale = apps.read_namespaced_deployment_scale("gen", ns)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=gen"
    apps.patch_namespaced_deployment_scale("gen", ns, {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("gen", ns).spec.replicas == 5


def test_pagination_and_selectors(api, ns):
    from kubernetes import client

    core = client.CoreV1Api(api)
    for i in range(7):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"page-{i}", labels={"page": "yes", "odd": str(i % 2)})))
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="page=yes", limit=3, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        assert len(page.items) <= 3
        if not token:
            break
    assert names == [f"page-{i}" for i in range(7)]
    odd = core.list_namespaced_config_map(ns, label_selector="page=yes,odd in (1)")
    assert [c.metadata.name for c in odd.items] == ["page-1", "page-3", "page-5"]
    one = core.list_namespaced_config_map(ns, field_selector="metadata.name=page-4")
    assert [c.metadata.name for c in one.items] == ["page-4"]
    everywhere = core.list_config_map_for_all_namespaces(label_selector="page=yes")
    assert len(everywhere.items) == 7


def test_generate_name_and_finalizers(api, ns):
    from kubernetes import client

    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(
        generate_name="gen-", finalizers=["example.com/hold"])))
    name = cm.metadata.name
    assert name.startswith("gen-") and len(name) == len("gen-") + 5
    core.delete_namespaced_config_map(name, ns)
    held = core.read_namespaced_config_map(name, ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map(name, ns, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_config_map(name, ns)
    assert e.value.status == 404


def test_pods_get_service_account_volume_priority_and_graceful_deletion(api, ns):
    from kubernetes import client

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items):
            break
        time.sleep(0.05)
    pod = core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {
        "priorityClassName": "system-cluster-critical", "containers": [{"name": "c", "image": "busybox"}]}})
    assert pod.spec.service_account_name == "default"
    assert pod.spec.priority == 2000000000
    vols = [v for v in pod.spec.volumes if v.name.startswith("kube-api-access-")]
    assert len(vols) == 1 and vols[0].projected.sources[0].service_account_token.expiration_seconds == 3607
    mounts = pod.spec.containers[0].volume_mounts
    assert any(m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount" and m.read_only for m in mounts)
    assert pod.status.phase == "Pending"
    # Upstream answers a binding with a bare Status, which the client cannot load as a V1Binding: read it raw.
    resp = core.create_namespaced_pod_binding("p", ns, {"metadata": {"name": "p"}, "target": {
        "kind": "Node", "name": "node-1"}}, _preload_content=False)
    assert json.loads(resp.data)["status"] == "Success"
    bound = core.read_namespaced_pod("p", ns)
    assert bound.spec.node_name == "node-1"
    core.delete_namespaced_pod("p", ns)
    terminating = core.read_namespaced_pod("p", ns)
    assert terminating.metadata.deletion_timestamp and terminating.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("p", ns, grace_period_seconds=0)
    with pytest.raises(client.ApiException):
        core.read_namespaced_pod("p", ns)


def test_services_get_cluster_ips_and_node_ports(api, ns):
    from kubernetes import client

    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}})
    ip = svc.spec.cluster_ip
    assert ip.startswith("10.") and svc.spec.cluster_ips == [ip]
    port = svc.spec.ports[0].node_port
    assert 30000 <= port <= 32767
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_service(ns, {"metadata": {"name": "clash"}, "spec": {
            "clusterIP": ip, "ports": [{"port": 80}]}})
    assert e.value.status == 422 and "already allocated" in json.loads(e.value.body)["message"]
    core.delete_namespaced_service("np", ns)
    again = core.create_namespaced_service(ns, {"metadata": {"name": "reuse"}, "spec": {
        "clusterIP": ip, "type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}})
    assert again.spec.cluster_ip == ip and again.spec.ports[0].node_port == port


def test_bootstrapped_objects(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = core.read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip == "10.96.0.1" and svc.spec.ports[0].port == 443
    ep = core.read_namespaced_endpoints("kubernetes", "default")
    assert ep.subsets[0].ports[0].name == "https"
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes")
    assert len(slices.items) == 1
    pcs = {p.metadata.name: p.value for p in client.SchedulingV1Api(api).list_priority_class().items}
    assert pcs["system-node-critical"] == 2000001000 and pcs["system-cluster-critical"] == 2000000000
    rbac = client.RbacAuthorizationV1Api(api)
    roles = {r.metadata.name for r in rbac.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
            "system:public-info-viewer", "system:node", "system:kube-scheduler",
            "system:kube-controller-manager"} <= roles
    edit = rbac.read_cluster_role("edit")
    assert any("deployments" in (r.resources or []) and "create" in r.verbs for r in edit.rules)
    binding = rbac.read_cluster_role_binding("kubeadm:cluster-admins")
    assert binding.role_ref.name == "cluster-admin"
    with pytest.raises(client.ApiException) as e:
        core.delete_namespace("kube-system")
    assert e.value.status == 403


def test_namespace_deletion_blocks_new_content(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating" and ns.metadata.deletion_timestamp
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_config_map("doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert e.value.status == 403
    assert "because it is being terminated" in json.loads(e.value.body)["message"]
    core.replace_namespace_finalize("doomed", {"metadata": {"name": "doomed"}, "spec": {"finalizers": []}})
    with pytest.raises(client.ApiException) as e:
        core.read_namespace("doomed")
    assert e.value.status == 404


def test_dry_run_stores_nothing(api, ns):
    from kubernetes import client

    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dry")),
                                           dry_run="All")
    assert cm.metadata.uid
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("dry", ns)


def test_watch_resource_version_semantics(api, ns):
    from kubernetes import client, watch

    core = client.CoreV1Api(api)
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="s1")))
    rv = core.list_namespaced_secret(ns).metadata.resource_version
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="s2")))
    from_zero = [e["object"].metadata.name for e in watch.Watch().stream(
        core.list_namespaced_secret, ns, resource_version="0", timeout_seconds=1)]
    assert from_zero == ["s1", "s2"]
    from_rv = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_secret, ns, resource_version=rv, timeout_seconds=1)]
    assert from_rv == [("ADDED", "s2")]


def test_certificate_signing_request_flow(api):
    import base64

    from kubernetes import client

    from kapal.kube import pki

    csr_pem, _ = pki.new_csr("system:node:n1", organizations=["system:nodes"])
    certs = client.CertificatesV1Api(api)
    csr = certs.create_certificate_signing_request({"metadata": {"name": "node-csr"}, "spec": {
        "request": base64.b64encode(csr_pem).decode(), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
        "usages": ["digital signature", "client auth"], "username": "someone-else"}})
    assert csr.spec.username == "kubernetes-admin" and "system:masters" in csr.spec.groups
    csr.status = client.V1CertificateSigningRequestStatus(conditions=[client.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="Test", message="ok")])
    certs.replace_certificate_signing_request_approval("node-csr", csr)
    got = certs.read_certificate_signing_request("node-csr")
    assert [c.type for c in got.status.conditions] == ["Approved"]
    certs.patch_certificate_signing_request_status("node-csr", {"status": {"certificate": base64.b64encode(
        b"-----BEGIN CERTIFICATE-----\n").decode()}})
    assert certs.read_certificate_signing_request("node-csr").status.certificate


def test_eviction_respects_disruption_budgets(api, ns):
    from kubernetes import client

    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    core.create_namespaced_pod(ns, {"metadata": {"name": "guarded", "labels": {"app": "guarded"}}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})
    core.patch_namespaced_pod_status("guarded", ns, {"status": {"phase": "Running"}})
    policy.create_namespaced_pod_disruption_budget(ns, {"metadata": {"name": "pdb"}, "spec": {
        "minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "guarded", "namespace": ns}}
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod_eviction("guarded", ns, eviction)
    assert e.value.status == 429
    assert json.loads(e.value.body)["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    policy.patch_namespaced_pod_disruption_budget_status("pdb", ns, {"status": {
        "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
        "observedGeneration": 1}})
    core.create_namespaced_pod_eviction("guarded", ns, eviction)
    pod = core.read_namespaced_pod("guarded", ns)
    assert pod.metadata.deletion_timestamp is not None
    pdb = policy.read_namespaced_pod_disruption_budget("pdb", ns)
    assert pdb.status.disruptions_allowed == 0 and "guarded" in pdb.status.disrupted_pods


def test_limit_ranges_and_quotas(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    ns = "quoted"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_limit_range(ns, {"metadata": {"name": "lr"}, "spec": {"limits": [{
        "type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"},
        "max": {"cpu": "1"}}]}})
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "q"}, "spec": {"hard": {
        "pods": "2", "requests.cpu": "250m", "configmaps": "3"}}})

    def pod(name, cpu_limit=None):
        c = {"name": "c", "image": "busybox"}
        if cpu_limit:
            c["resources"] = {"limits": {"cpu": cpu_limit}}
        return {"metadata": {"name": name}, "spec": {"containers": [c]}}

    p = core.create_namespaced_pod(ns, pod("a"))
    res = p.spec.containers[0].resources
    assert res.limits == {"cpu": "500m", "memory": "128Mi"} and res.requests == {"cpu": "100m", "memory": "128Mi"}
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod(ns, pod("big", "2"))
    assert e.value.status == 403
    assert "maximum cpu usage per Container is 1, but limit is 2" in json.loads(e.value.body)["message"]
    core.create_namespaced_pod(ns, pod("b"))
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod(ns, pod("c"))
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == (
        'pods "c" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=100m, used: '
        "pods=2,requests.cpu=200m, limited: pods=2,requests.cpu=250m")
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="one")))


def test_new_workloads_carry_go_zero_counters_and_ready_nodes_no_taints(api, ns):
    """Typed clients refuse a ReplicaSet or DaemonSet status without its required counters."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    rs = _deployment("zero-rs")
    rs["kind"] = "ReplicaSet"
    created = apps.create_namespaced_replica_set(ns, rs)
    assert created.status.replicas == 0
    ds = _deployment("zero-ds")
    ds["kind"] = "DaemonSet"
    del ds["spec"]["replicas"]
    created = apps.create_namespaced_daemon_set(ns, ds)
    assert (created.status.number_ready, created.status.desired_number_scheduled) == (0, 0)
    core = client.CoreV1Api(api)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "zero-node"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    try:
        raw = core.create_node(node, _preload_content=False)
        assert "taints" not in json.loads(raw.data).get("spec", {})
    finally:
        core.delete_node("zero-node")
