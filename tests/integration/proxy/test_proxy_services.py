"""`kapal proxy` against real Services and EndpointSlices (created with kubectl), with "pods" that are network
namespaces on a test bridge: traffic to ClusterIPs and NodePorts, readiness, headless Services, affinity."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections import Counter

import pytest
from services_harness import (
    chain_rules,
    endpoint_slice,
    rules_mentioning,
    service,
    wait_until,
)

from kapal.kube.pki import primary_ipv4

pytestmark = pytest.mark.root

HTTP = [("http", 80, "TCP")]
TARGET = [("http", 8080, "TCP")]


def by_name(pods):
    return {p.name: p for p in pods.pods}


def cluster_ip(cluster, name):
    return cluster.get("service", name)["spec"]["clusterIP"]


def delete(cluster, name):
    cluster.kubectl("delete", "service", name, "--wait=false", check=False)
    cluster.kubectl("delete", "endpointslice", f"{name}-test", "--wait=false", check=False)


def test_cluster_ip_spreads_over_endpoints(cluster, pods, proxy):
    p = by_name(pods)
    cluster.apply([service("spread", HTTP),
                   endpoint_slice("spread", [{"ip": p[n].ip} for n in ("web-a", "web-b", "web-c")], TARGET)])
    try:
        ip = cluster_ip(cluster, "spread")
        client = p["client"]
        wait_until(lambda: client.http_get(ip, 80), what="the ClusterIP to answer")
        seen = Counter(client.http_get(ip, 80) for _ in range(60))
        assert set(seen) == {"web-a", "web-b", "web-c"}, seen
        assert client.wget(f"http://{ip}/").strip() in {"web-a", "web-b", "web-c"}
    finally:
        delete(cluster, "spread")


def test_pod_reaches_itself_and_its_bridge_neighbours_through_the_cluster_ip(cluster, pods, proxy):
    p = by_name(pods)
    cluster.apply([service("hairpin", HTTP), endpoint_slice("hairpin", [{"ip": p["web-a"].ip}], TARGET)])
    try:
        ip = cluster_ip(cluster, "hairpin")
        wait_until(lambda: p["web-b"].http_get(ip, 80) == "web-a", what="web-b -> ClusterIP -> web-a")
        assert p["web-a"].http_get(ip, 80) == "web-a"  # hairpin: the endpoint is the client
        assert p["web-a"].wget(f"http://{ip}/").strip() == "web-a"
    finally:
        delete(cluster, "hairpin")


def test_endpoint_that_turns_unready_stops_receiving_traffic(cluster, pods, proxy):
    p = by_name(pods)
    both = [{"ip": p["web-a"].ip}, {"ip": p["web-b"].ip}]
    cluster.apply([service("ready", HTTP), endpoint_slice("ready", both, TARGET)])
    try:
        ip = cluster_ip(cluster, "ready")
        client = p["client"]
        wait_until(lambda: {client.http_get(ip, 80) for _ in range(20)} == {"web-a", "web-b"}, what="both endpoints")
        cluster.apply(endpoint_slice("ready", [both[0], {**both[1], "ready": False}], TARGET))
        wait_until(lambda: not [r for r in rules_mentioning(f"-> {p['web-b'].ip}:8080")], what="web-b's rule to go")
        assert {client.http_get(ip, 80) for _ in range(20)} == {"web-a"}
    finally:
        delete(cluster, "ready")


def test_node_port_answers_on_the_node_address_and_localhost(cluster, pods, proxy):
    p = by_name(pods)
    cluster.apply([service("np", HTTP, node_port=True), endpoint_slice("np", [{"ip": p["web-c"].ip}], TARGET)])
    try:
        node_port = cluster.get("service", "np")["spec"]["ports"][0]["nodePort"]
        node_ip = str(primary_ipv4())

        def host_get(ip):
            try:
                with urllib.request.urlopen(f"http://{ip}:{node_port}/", timeout=2) as r:
                    return r.read().decode().strip()
            except OSError:
                return ""
        wait_until(lambda: host_get(node_ip) == "web-c", what=f"NodePort {node_port} on {node_ip}")
        assert host_get("127.0.0.1") == "web-c"
        assert p["client"].http_get(node_ip, node_port) == "web-c"  # from a pod, to the node's address
    finally:
        delete(cluster, "np")


def test_headless_service_gets_no_rules(cluster, pods, proxy, prefix):
    p = by_name(pods)
    cluster.apply([service("headless", HTTP, headless=True), endpoint_slice("headless", [{"ip": p["web-a"].ip}],
                                                                             TARGET),
                   service("marker", HTTP), endpoint_slice("marker", [{"ip": p["web-a"].ip}], TARGET)])
    try:
        wait_until(lambda: rules_mentioning('"default/marker:http cluster IP"'), what="the marker Service's rules")
        assert rules_mentioning("default/headless", "nat") == []
        assert rules_mentioning("default/headless", "filter") == []
    finally:
        delete(cluster, "headless")
        delete(cluster, "marker")


def test_deleting_a_service_removes_its_chains(cluster, pods, proxy, prefix):
    p = by_name(pods)
    cluster.apply([service("gone", HTTP), endpoint_slice("gone", [{"ip": p["web-a"].ip}, {"ip": p["web-b"].ip}],
                                                          TARGET)])
    wait_until(lambda: len(rules_mentioning('"default/gone:http"')) == 4, what="two SEP chains of 2 rules")
    chains = {ln.split()[1] for ln in rules_mentioning("default/gone") if ln.startswith("-A ")}
    chains |= {ln.split()[-1] for ln in rules_mentioning("default/gone") if ln.startswith(f"-A {prefix}SERVICES")}
    chains = {c for c in chains if "-SVC-" in c or "-SEP-" in c}
    assert len([c for c in chains if "-SVC-" in c]) == 1 and len([c for c in chains if "-SEP-" in c]) == 2
    delete(cluster, "gone")
    wait_until(lambda: not rules_mentioning("default/gone"), what="the Service's rules to go")
    assert all(chain_rules(c) == [] for c in chains), "a chain of the deleted Service survived"


def test_service_without_endpoints_refuses_connections(cluster, pods, proxy):
    cluster.apply(service("empty", HTTP))
    try:
        ip = cluster_ip(cluster, "empty")
        wait_until(lambda: rules_mentioning("default/empty:http has no endpoints", "filter"), what="the REJECT rule")

        def connect():
            with socket.socket() as s:
                s.settimeout(5)
                try:
                    s.connect((ip, 80))
                except ConnectionRefusedError:
                    return "refused"
                except OSError as e:
                    return repr(e)
            return "connected"
        assert by_name(pods)["client"].call(connect) == "refused"
    finally:
        delete(cluster, "empty")


def test_client_ip_affinity_sticks_to_one_endpoint(cluster, pods, proxy):
    p = by_name(pods)
    cluster.apply([service("sticky", HTTP, sessionAffinity="ClientIP"),
                   endpoint_slice("sticky", [{"ip": p[n].ip} for n in ("web-a", "web-b", "web-c")], TARGET)])
    try:
        ip = cluster_ip(cluster, "sticky")
        client = p["client"]
        first = wait_until(lambda: client.http_get(ip, 80), what="the sticky Service")
        assert {client.http_get(ip, 80) for _ in range(30)} == {first}
    finally:
        delete(cluster, "sticky")


def test_health_and_metrics_endpoints(proxy):
    args = proxy.args
    health = args[args.index("--healthz-bind-address") + 1]
    metrics = args[args.index("--metrics-bind-address") + 1]

    def healthy():
        with urllib.request.urlopen(f"http://{health}/healthz", timeout=2) as r:
            return json.loads(r.read())
    doc = wait_until(healthy, what="/healthz")
    assert doc["nodeHealthy"] is True and doc["nodeName"] == "node-1"
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2) as r:
        text = r.read().decode()
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds " in text
    assert 'kubeproxy_sync_proxy_rules_iptables_total{table="nat"}' in text


def test_udp_flow_moves_when_its_endpoint_goes(cluster, pods, proxy):
    """A UDP flow (same source port) keeps its conntrack entry; the proxy deletes it when the endpoint goes,
    so the next datagram reaches the new endpoint instead of the old one for the next 120 s."""
    p = by_name(pods)
    for name in ("web-a", "web-b"):
        if not getattr(p[name], "udp", False):
            p[name].serve_udp(5353)
            p[name].udp = True
    udp = [("dns", 53, "UDP")]
    cluster.apply([service("udp", udp), endpoint_slice("udp", [{"ip": p["web-a"].ip}], [("dns", 5353, "UDP")])])
    try:
        ip = cluster_ip(cluster, "udp")
        client = p["client"]
        # asked before the rules exist too: the un-NATed entries that leaves are forgotten once they do
        wait_until(lambda: client.udp_ask(ip, 53, source_port=40053) == "web-a", timeout=10,
                   what="UDP through the ClusterIP")
        cluster.apply(endpoint_slice("udp", [{"ip": p["web-a"].ip, "ready": False}, {"ip": p["web-b"].ip}],
                                     [("dns", 5353, "UDP")]))
        wait_until(lambda: rules_mentioning(f"-> {p['web-b'].ip}:5353") and
                   not rules_mentioning(f"-> {p['web-a'].ip}:5353"), what="the switch to web-b")
        # each question refreshes the flow's conntrack entry: only its removal lets the flow move
        wait_until(lambda: client.udp_ask(ip, 53, source_port=40053) == "web-b", timeout=10,
                   what="the UDP flow to move to web-b")
    finally:
        delete(cluster, "udp")
