"""The pure parts of the smaller controllers: node CIDR allocation, Endpoints subsets and EndpointSlices,
DaemonSet node eligibility, bootstrap-token signatures, TTL expiry, --controllers resolution."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest

from kapal import errors
from kapal.kube.controllers import bootstrap, daemonset, endpoints, endpointslice, manager, nodeipam
from kapal.kube.controllers.ttlafterfinished import expires_in

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


# --- node IPAM ----------------------------------------------------------------------------------------------------

def test_cidrs_are_handed_out_lowest_first_and_reused():
    cidrs = nodeipam.CidrSet("10.244.0.0/16", 24)
    assert [cidrs.allocate() for _ in range(3)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    cidrs.release("10.244.1.0/24")
    cidrs.occupy("10.244.3.0/24")
    assert cidrs.allocate() == "10.244.4.0/24"
    assert cidrs.allocate() == "10.244.5.0/24"
    cidrs.next = 0
    assert cidrs.allocate() == "10.244.1.0/24"


def test_cidrs_avoid_the_service_range_and_run_out_loudly():
    cidrs = nodeipam.CidrSet("10.96.0.0/23", 24)
    cidrs.reserve_overlapping("10.96.0.0/24")
    assert cidrs.allocate() == "10.96.1.0/24"
    with pytest.raises(errors.FailedPrecondition, match="no free /24"):
        cidrs.allocate()


# --- endpoints ----------------------------------------------------------------------------------------------------

def pod(name, ip, ready=True, labels=None, ports=None, deleting=False, phase="Running"):
    meta = {"name": name, "namespace": "ns", "uid": f"u-{name}", "labels": labels or {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


SVC = {"metadata": {"name": "web", "namespace": "ns"},
       "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                                      "protocol": "TCP"}]}}


def test_endpoints_subsets_by_readiness_and_resolved_ports():
    http = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    pods = [pod("a", "10.0.0.2", ports=http), pod("b", "10.0.0.1", ports=http), pod("c", "10.0.0.3", False, ports=http),
            pod("d", "10.0.0.4", ports=[]), pod("e", "10.0.0.5", ports=http, deleting=True),
            pod("f", "10.0.0.6", ports=http, phase="Succeeded")]
    subsets = endpoints.subsets_for(SVC, pods)
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.1", "10.0.0.2"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["10.0.0.3"]
    assert subsets[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subsets[0]["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "u-b"}


def test_endpoints_truncate_at_1000():
    many = [{"addresses": [{"ip": f"10.0.{i // 250}.{i % 250}", "targetRef": {"uid": str(i)}}
                           for i in range(1200)]}]
    cut, truncated = endpoints.truncate(many)
    assert truncated and len(cut[0]["addresses"]) == 1000


def test_slices_hold_100_endpoints_each_with_conditions():
    svc = {"metadata": {"name": "web", "namespace": "ns"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}
    pods = [pod(f"p{i}", f"10.1.{i // 200}.{i % 200}") for i in range(150)] + [pod("t", "10.9.9.9", deleting=True)]
    slices = endpointslice.desired_slices(svc, pods)
    assert [len(eps) for _, eps in slices] == [100, 51]
    assert slices[0][0] == [{"name": "", "port": 80, "protocol": "TCP"}]
    terminating = next(e for _, eps in slices for e in eps if e["targetRef"]["name"] == "t")
    assert terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}


# --- DaemonSets ---------------------------------------------------------------------------------------------------

def ds(**pod_spec):
    return {"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}], **pod_spec}}}}


def node(name, labels=None, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def test_daemon_pods_go_where_selector_affinity_and_taints_allow():
    assert daemonset.should_run(ds(), node("a"))
    assert not daemonset.should_run(ds(nodeSelector={"disk": "ssd"}), node("a"))
    assert daemonset.should_run(ds(nodeSelector={"disk": "ssd"}), node("a", {"disk": "ssd"}))
    tainted = node("a", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert not daemonset.should_run(ds(), tainted)
    assert daemonset.should_run(ds(tolerations=[{"key": "dedicated", "operator": "Exists"}]), tainted)
    # the tolerations every daemon gets
    assert daemonset.should_run(ds(), node("a", taints=[{"key": "node.kubernetes.io/unschedulable",
                                                          "effect": "NoSchedule"}]))
    assert daemonset.should_run(ds(), node("a", taints=[{"key": "x", "effect": "PreferNoSchedule"}]))
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}
    assert not daemonset.should_run(ds(affinity=aff), node("a"))
    assert daemonset.should_run(ds(affinity=aff), node("b"))


def test_daemon_pod_is_pinned_by_node_affinity():
    spec: dict = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}
    daemonset.with_node_affinity(spec, "n7")
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]
    assert term["matchExpressions"][0]["key"] == "disk"


# --- bootstrap tokens ---------------------------------------------------------------------------------------------

def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def token_secret(token_id, secret, expiration=None, signing="true"):
    data = {"token-id": b64(token_id), "token-secret": b64(secret), "usage-bootstrap-signing": b64(signing)}
    if expiration:
        data["expiration"] = b64(expiration)
    return {"metadata": {"name": f"bootstrap-token-{token_id}"}, "type": bootstrap.TOKEN_TYPE, "data": data}


def test_detached_jws_verifies_with_the_token_secret():
    jws = bootstrap.detached_jws("kubeconfig text", "abcdef", "0123456789abcdef")
    header, payload, signature = jws.split(".")
    assert payload == ""
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "kid": "abcdef"}
    content = base64.urlsafe_b64encode(b"kubeconfig text").rstrip(b"=").decode()
    mac = hmac.new(b"0123456789abcdef", f"{header}.{content}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_only_live_signing_tokens_sign():
    secrets = [token_secret("aaaaaa", "x" * 16), token_secret("bbbbbb", "y" * 16, "2025-01-01T00:00:00Z"),
               token_secret("cccccc", "z" * 16, signing="false")]
    assert bootstrap.signing_tokens(secrets, NOW) == {"aaaaaa": "x" * 16}
    assert bootstrap.expired(secrets[1], NOW)


# --- TTL after finished -------------------------------------------------------------------------------------------

def test_ttl_counts_from_completion():
    job = {"metadata": {}, "spec": {"ttlSecondsAfterFinished": 30},
           "status": {"completionTime": "2026-01-01T00:00:00Z",
                      "conditions": [{"type": "Complete", "status": "True",
                                      "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
    assert expires_in(job, NOW + dt.timedelta(seconds=10)) == 20
    assert expires_in(job, NOW + dt.timedelta(seconds=40)) == -10
    assert expires_in({**job, "status": {}}, NOW) is None


# --- --controllers ------------------------------------------------------------------------------------------------

def names(specs):
    return {s.name for s in specs}


def test_controllers_flag():
    registry = manager.known_controllers()
    everything = names(manager.enabled_controllers(["*"], registry))
    assert "deployment-controller" in everything and "bootstrap-signer-controller" not in everything
    kubeadm = names(manager.enabled_controllers(["*,bootstrapsigner,tokencleaner"], registry))
    assert {"bootstrap-signer-controller", "token-cleaner-controller"} <= kubeadm
    assert "job-controller" not in names(manager.enabled_controllers(["*", "-job"], registry))
    assert names(manager.enabled_controllers(["deployment-controller,replicaset"], registry)) == {
        "deployment-controller", "replicaset-controller"}
    assert "statefulset-controller" not in names(manager.enabled_controllers(["*,-statefulset"], registry))
    with pytest.raises(errors.Invalid, match="not in the list of known controllers"):
        manager.enabled_controllers(["*,bogus"], registry)
    with pytest.raises(errors.Unsupported, match="statefulset"):
        manager.enabled_controllers(["statefulset"], registry)


def test_controllers_without_their_keys_are_skipped():
    config = manager.ControllerManagerConfig()
    reasons = {s.name: s.requires(config) for s in manager.known_controllers()}
    assert reasons["serviceaccount-token-controller"] == "--service-account-private-key-file not set"
    assert "--cluster-signing-cert-file" in reasons["certificatesigningrequest-signing-controller"]
    assert reasons["node-ipam-controller"] == "--allocate-node-cidrs and --cluster-cidr not set"
    assert reasons["deployment-controller"] is None


# --- node lifecycle -----------------------------------------------------------------------------------------------

def test_node_heartbeat_and_taints():
    from kapal.kube.controllers.nodelifecycle import NOT_READY, UNREACHABLE, heartbeat, wanted_taints

    n = {"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:01:00Z"}]}}
    lease = {"spec": {"renewTime": "2026-01-01T00:05:00.000000Z"}}
    assert heartbeat(n, lease) == dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC)
    assert heartbeat(n, None) == dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.UTC)
    assert wanted_taints(n) == []
    n["status"]["conditions"][0]["status"] = "Unknown"
    assert {t["key"] for t in wanted_taints(n)} == {UNREACHABLE}
    n["status"]["conditions"][0]["status"] = "False"
    assert [(t["key"], t["effect"]) for t in wanted_taints(n)] == [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
