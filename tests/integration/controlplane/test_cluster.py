"""DaemonSets, namespaces, the garbage collector's three propagation policies, what every namespace gets
(default ServiceAccount, kube-root-ca.crt), Services' Endpoints and EndpointSlices, node pod CIDRs, and the
scheduler's events as kubectl describe shows them."""

from __future__ import annotations

import json

from controlplane_harness import Kubectl, wait_for

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox:1.35}]
"""


def running_pods(k: Kubectl, ns: str, selector: str) -> list[dict]:
    return [p for p in k.json("-n", ns, "get", "pods", "-l", selector)["items"]
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def test_daemonset_one_pod_per_node_and_rolling_update(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "apply", "-f", "-", input=DAEMONSET)
    k("-n", ns, "rollout", "status", "daemonset/agent", "--timeout=60s")
    pods = running_pods(k, ns, "app=agent")
    nodes = [n["metadata"]["name"] for n in k.json("get", "nodes")["items"]]
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(nodes)
    ds = k.json("-n", ns, "get", "daemonset", "agent")["status"]
    assert ds["desiredNumberScheduled"] == ds["numberReady"] == ds["currentNumberScheduled"] == 3

    k("-n", ns, "set", "image", "daemonset/agent", "agent=busybox:1.36")
    k("-n", ns, "rollout", "status", "daemonset/agent", "--timeout=60s")
    wait_for(lambda: sorted(p["spec"]["containers"][0]["image"] for p in running_pods(k, ns, "app=agent")) ==
             ["busybox:1.36"] * 3, 30, "one updated pod per node")
    history = k.out("-n", ns, "rollout", "history", "daemonset/agent")
    assert "1 " in history and "2 " in history
    k("-n", ns, "rollout", "undo", "daemonset/agent")
    k("-n", ns, "rollout", "status", "daemonset/agent", "--timeout=60s")
    wait_for(lambda: sorted(p["spec"]["containers"][0]["image"] for p in running_pods(k, ns, "app=agent")) ==
             ["busybox:1.35"] * 3, 30, "the first template back on every node")


def test_daemonset_honours_node_selector(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    obj = json.loads(json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "picky"},
                                 "spec": {"selector": {"matchLabels": {"app": "picky"}}, "template": {
                                     "metadata": {"labels": {"app": "picky"}},
                                     "spec": {"nodeSelector": {"kubernetes.io/hostname": "hollow-node-1"},
                                              "containers": [{"name": "c", "image": "busybox"}]}}}}))
    k("-n", ns, "apply", "-f", "-", input=json.dumps(obj))
    k("-n", ns, "rollout", "status", "daemonset/picky", "--timeout=60s")
    assert [p["spec"]["nodeName"] for p in running_pods(k, ns, "app=picky")] == ["hollow-node-1"]


def test_namespace_deletion_removes_everything(kubectl: Kubectl, unique: str):
    k, ns = kubectl, unique
    k("create", "namespace", ns)
    k("-n", ns, "create", "deployment", "web", "--image=busybox", "--replicas=3")
    k("-n", ns, "create", "configmap", "settings", "--from-literal=a=b")
    k("-n", ns, "create", "secret", "generic", "pw", "--from-literal=p=q")
    k("-n", ns, "create", "service", "clusterip", "web", "--tcp=80:80")
    k("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    k("delete", "namespace", ns, "--timeout=60s")
    assert "NotFound" in k("get", "namespace", ns, check=False).stderr
    leftovers = [o for o in k.json("get", "pods,replicasets,deployments,services,configmaps,secrets", "-A")["items"]
                 if o["metadata"].get("namespace") == ns]
    assert leftovers == []


def test_garbage_collection_policies(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    for name in ("bg", "fg", "orphan"):
        k("-n", ns, "create", "deployment", name, "--image=busybox", "--replicas=2")
    for name in ("bg", "fg", "orphan"):
        k("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=60s")

    k("-n", ns, "delete", "deployment", "bg")  # kubectl's default: background
    wait_for(lambda: not k.json("-n", ns, "get", "rs,pods", "-l", "app=bg")["items"], 30,
             "the ReplicaSet and pods to follow the Deployment")

    k("-n", ns, "delete", "deployment", "fg", "--cascade=foreground", "--wait=false")
    d = k("-n", ns, "get", "deployment", "fg", "-o", "json", check=False)
    if d.returncode == 0:
        assert "foregroundDeletion" in json.loads(d.stdout)["metadata"].get("finalizers", [])
    wait_for(lambda: "NotFound" in k("-n", ns, "get", "deployment", "fg", check=False).stderr, 30,
             "the foreground-deleted Deployment to go once its dependents are gone")
    assert not k.json("-n", ns, "get", "rs,pods", "-l", "app=fg")["items"]

    k("-n", ns, "delete", "deployment", "orphan", "--cascade=orphan")
    wait_for(lambda: "NotFound" in k("-n", ns, "get", "deployment", "orphan", check=False).stderr, 30,
             "the orphaning delete to finish")
    rs = k.json("-n", ns, "get", "rs", "-l", "app=orphan")["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    assert len(running_pods(k, ns, "app=orphan")) == 2


def test_new_namespace_gets_service_account_and_root_ca(kubectl: Kubectl, unique: str):
    k, ns = kubectl, unique
    k("create", "namespace", ns)
    try:
        wait_for(lambda: k("-n", ns, "get", "configmap", "kube-root-ca.crt", check=False).returncode == 0, 10,
                 "kube-root-ca.crt")
        cm = k.json("-n", ns, "get", "configmap", "kube-root-ca.crt")
        assert cm["data"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
        assert k.json("-n", ns, "get", "serviceaccount", "default")["metadata"]["name"] == "default"
        k("-n", ns, "delete", "configmap", "kube-root-ca.crt")
        wait_for(lambda: k("-n", ns, "get", "configmap", "kube-root-ca.crt", check=False).returncode == 0, 10,
                 "kube-root-ca.crt to come back")
    finally:
        k("delete", "namespace", ns, "--wait=false", check=False)


def test_service_endpoints_and_slices(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80")
    k("-n", ns, "expose", "deployment", "web", "--port=8080", "--target-port=80")
    k("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    ips = sorted(p["status"]["podIP"] for p in running_pods(k, ns, "app=web"))

    def endpoint_ips() -> list[str]:
        ep = k.json("-n", ns, "get", "endpoints", "web")
        return sorted(a["ip"] for s in ep.get("subsets", []) for a in s.get("addresses", []))

    wait_for(lambda: endpoint_ips() == ips, 20, "the Endpoints to list the 3 pods")
    ep = k.json("-n", ns, "get", "endpoints", "web")
    assert ep["subsets"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    slices = k.json("-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    assert len(slices) == 1
    assert sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == ips
    assert all(e["conditions"]["ready"] for e in slices[0]["endpoints"])
    assert slices[0]["ports"][0]["port"] == 80
    k("-n", ns, "scale", "deployment/web", "--replicas=1")
    wait_for(lambda: len(endpoint_ips()) == 1, 20, "the Endpoints to follow the scale-down")


def test_nodes_get_pod_cidrs_and_pods_use_them(kubectl: Kubectl, namespace: str):
    import ipaddress

    k, ns = kubectl, namespace
    nodes = {n["metadata"]["name"]: n["spec"].get("podCIDR") for n in k.json("get", "nodes")["items"]}
    assert all(c and ipaddress.ip_network(c).subnet_of(ipaddress.ip_network("10.244.0.0/16")) for c in
               nodes.values()), nodes
    assert len(set(nodes.values())) == 3
    k("-n", ns, "create", "deployment", "ips", "--image=busybox", "--replicas=3")
    k("-n", ns, "rollout", "status", "deployment/ips", "--timeout=60s")
    for p in running_pods(k, ns, "app=ips"):
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(nodes[p["spec"]["nodeName"]])


def test_failed_scheduling_event(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "5"}}}]}}
    k("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    expected = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
                "3 No preemption victims found for incoming pod.")

    def events() -> list[dict]:
        return k.json("-n", ns, "get", "events", "--field-selector", "involvedObject.name=huge")["items"]

    wait_for(lambda: any(e["reason"] == "FailedScheduling" for e in events()), 20, "a FailedScheduling event")
    event = next(e for e in events() if e["reason"] == "FailedScheduling")
    assert event["type"] == "Warning" and event["message"] == expected
    assert expected in k.out("-n", ns, "describe", "pod", "huge")
    cond = {c["type"]: c for c in k.json("-n", ns, "get", "pod", "huge")["status"]["conditions"]}["PodScheduled"]
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"

    pod["metadata"]["name"] = "fits"
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "100m"
    k("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: k.json("-n", ns, "get", "pod", "fits")["spec"].get("nodeName"), 20, "the pod to be bound")
    node = k.json("-n", ns, "get", "pod", "fits")["spec"]["nodeName"]
    scheduled = [e for e in k.json("-n", ns, "get", "events", "--field-selector", "involvedObject.name=fits")["items"]
                 if e["reason"] == "Scheduled"]
    assert scheduled and scheduled[0]["message"] == f"Successfully assigned {ns}/fits to {node}"


def test_pod_anti_affinity_spreads_and_refuses(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    template = {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": "solo"}},
                "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                         "containers": [{"name": "c", "image": "busybox"}]}}
    for i in range(4):
        template["metadata"]["name"] = f"solo-{i}"
        k("-n", ns, "apply", "-f", "-", input=json.dumps(template))
    wait_for(lambda: len([p for p in k.json("-n", ns, "get", "pods")["items"] if p["spec"].get("nodeName")]) == 3,
             20, "three pods bound")
    pods = k.json("-n", ns, "get", "pods")["items"]
    bound = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
    assert len(set(bound)) == 3
    pending = next(p for p in pods if not p["spec"].get("nodeName"))
    wait_for(lambda: any(e["reason"] == "FailedScheduling" for e in k.json(
        "-n", ns, "get", "events", "--field-selector", f"involvedObject.name={pending['metadata']['name']}")["items"]),
        20, "the fourth pod's FailedScheduling event")
    msg = next(e["message"] for e in k.json("-n", ns, "get", "events", "--field-selector",
                                            f"involvedObject.name={pending['metadata']['name']}")["items"]
               if e["reason"] == "FailedScheduling")
    assert msg.startswith("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."), msg


def test_hollow_containers_exit_and_restart_as_the_policy_says(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace

    def make(name: str, policy: str, exit_spec: str) -> None:
        k("-n", ns, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"kapal.dev/hollow-exit": exit_spec}},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}}))

    make("done", "Never", "0")
    make("broken", "Never", "0:3")
    make("crashy", "Always", "0:1")
    wait_for(lambda: k.json("-n", ns, "get", "pod", "done")["status"].get("phase") == "Succeeded", 20, "Succeeded")
    wait_for(lambda: k.json("-n", ns, "get", "pod", "broken")["status"].get("phase") == "Failed", 20, "Failed")
    broken = k.json("-n", ns, "get", "pod", "broken")["status"]["containerStatuses"][0]
    assert broken["state"]["terminated"]["exitCode"] == 3 and broken["state"]["terminated"]["reason"] == "Error"

    def crash_looping() -> bool:
        status = k.json("-n", ns, "get", "pod", "crashy")["status"]
        c = (status.get("containerStatuses") or [{}])[0]
        return status.get("phase") == "Running" and c.get("restartCount", 0) >= 1 and \
            (c.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"

    wait_for(crash_looping, 20, "CrashLoopBackOff after the first exit")
    assert "CrashLoopBackOff" in k.out("-n", ns, "get", "pod", "crashy")
    k("-n", ns, "delete", "pod", "crashy", "--timeout=20s")


def test_kubelet_client_csr_is_approved_and_signed(kubectl: Kubectl, unique: str):
    """TLS bootstrap's server side: a kubelet client CSR from someone allowed to ask for one is auto-approved
    (csrapproving, through a SubjectAccessReview) and signed with the cluster CA (csrsigning)."""
    import base64

    from kapal.kube import pki

    csr_pem, _key = pki.new_csr(f"system:node:{unique}", organizations=["system:nodes"])
    k = kubectl
    k("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": unique},
        "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName":
                 "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"]}}))
    try:
        wait_for(lambda: k.json("get", "csr", unique).get("status", {}).get("certificate"), 20,
                 "the CSR to be approved and signed")
        csr = k.json("get", "csr", unique)
        approved = {c["type"]: c for c in csr["status"]["conditions"]}["Approved"]
        assert approved["reason"] == "AutoApproved"
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
        assert pki.common_name(cert) == f"system:node:{unique}" and pki.organizations(cert) == ("system:nodes",)
        assert "Approved,Issued" in k.out("get", "csr", unique)
    finally:
        k("delete", "csr", unique, check=False)


def test_legacy_service_account_token_secret(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "serviceaccount", "robot")
    k("-n", ns, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "robot-token", "annotations": {"kubernetes.io/service-account.name": "robot"}}}))
    wait_for(lambda: k.json("-n", ns, "get", "secret", "robot-token").get("data", {}).get("token"), 20,
             "the token controller to fill the secret")
    import base64

    token = base64.b64decode(k.json("-n", ns, "get", "secret", "robot-token")["data"]["token"]).decode()
    who = k("auth", "whoami", "--token", token, "-o", "json", check=False)
    if who.returncode == 0:
        assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:robot"
    denied = k("-n", ns, "get", "pods", "--token", token, check=False)
    assert "Forbidden" in denied.stderr or "forbidden" in denied.stderr, denied.stderr
