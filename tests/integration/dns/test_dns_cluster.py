"""`kapal dns` behind the kube-dns ClusterIP, asked from a pod's network namespace over UDP and TCP."""

from __future__ import annotations

import urllib.request

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from services_harness import endpoint_slice, service, wait_until

pytestmark = pytest.mark.root

HTTP = [("http", 80, "TCP")]


def ask(pod, server, name, qtype="A", tcp=False):
    """One query from inside the pod; the parsed reply."""
    def send():
        q = DNSRecord.question(name, qtype)
        return DNSRecord.parse(q.send(server, 53, tcp=tcp, timeout=3))
    return pod.call(send)


def addresses(reply, qtype="A"):
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype))


@pytest.fixture(scope="module")
def objects(cluster, pods, dns, dns_ip):
    p = {pod.name: pod for pod in pods.pods}
    cluster.apply([
        service("web", HTTP), endpoint_slice("web", [{"ip": p["web-a"].ip}], [("http", 8080, "TCP")]),
        service("db", [("pg", 5432, "TCP")], headless=True),
        endpoint_slice("db", [{"ip": p["db-0"].ip, "hostname": "db-0"}, {"ip": p["db-1"].ip, "hostname": "db-1"}],
                       [("pg", 5432, "TCP")]),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "upstream.example"}},
    ])
    client = p["client"]
    wait_until(lambda: addresses(ask(client, dns_ip, "db.default.svc.cluster.local")) ==
               sorted([p["db-0"].ip, p["db-1"].ip]), timeout=30, what="DNS through the kube-dns ClusterIP")
    return p


def test_kube_dns_service_points_at_the_server(cluster, dns, dns_ip, pods, objects):
    svc = cluster.get("service", "kube-dns", "-n", "kube-system")
    assert svc["spec"]["clusterIP"] == dns_ip
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}
    ep = cluster.kubectl("get", "endpoints", "kube-dns", "-n", "kube-system")
    assert f"{pods.gateway}:{dns.port}" in ep


def test_service_names_resolve_from_a_pod(cluster, objects, dns_ip):
    client = objects["client"]
    web_ip = cluster.get("service", "web")["spec"]["clusterIP"]
    reply = ask(client, dns_ip, "web.default.svc.cluster.local")
    assert reply.header.aa == 1 and addresses(reply) == [web_ip]
    assert addresses(ask(client, dns_ip, "web.default.svc.cluster.local", tcp=True)) == [web_ip]
    srv = ask(client, dns_ip, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(80, "web.default.svc.cluster.local.")]
    ptr = ask(client, dns_ip, ".".join(reversed(web_ip.split("."))) + ".in-addr.arpa", "PTR")
    assert [str(rr.rdata) for rr in ptr.rr] == ["web.default.svc.cluster.local."]


def test_headless_service_and_its_pods(objects, dns_ip):
    client = objects["client"]
    assert addresses(ask(client, dns_ip, "db-1.db.default.svc.cluster.local")) == [objects["db-1"].ip]
    srv = ask(client, dns_ip, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(str(rr.rdata.target) for rr in srv.rr) == ["db-0.db.default.svc.cluster.local.",
                                                             "db-1.db.default.svc.cluster.local."]
    dashed = objects["web-a"].ip.replace(".", "-")
    assert addresses(ask(client, dns_ip, f"{dashed}.default.pod.cluster.local")) == [objects["web-a"].ip]


def test_nxdomain_and_nodata(objects, dns_ip):
    client = objects["client"]
    nx = ask(client, dns_ip, "nothing.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and nx.auth and nx.auth[0].rtype == QTYPE.SOA
    nodata = ask(client, dns_ip, "web.default.svc.cluster.local", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr and nodata.auth[0].rtype == QTYPE.SOA


def test_other_names_go_to_the_hosts_resolver_and_are_cached(objects, dns_ip, upstream):
    client = objects["client"]
    before = upstream.asked.count("upstream.example.")
    assert addresses(ask(client, dns_ip, "upstream.example")) == ["192.0.2.77"]
    assert addresses(ask(client, dns_ip, "upstream.example")) == ["192.0.2.77"]
    assert upstream.asked.count("upstream.example.") == before + 1  # the second came from the cache
    assert ask(client, dns_ip, "missing.example").header.rcode == RCODE.NXDOMAIN
    ext = ask(client, dns_ip, "ext.default.svc.cluster.local")
    assert [rr.rtype for rr in ext.rr] == [QTYPE.CNAME, QTYPE.A] and addresses(ext) == ["192.0.2.77"]


def test_busybox_nslookup_from_a_pod(cluster, objects, dns_ip):
    web_ip = cluster.get("service", "web")["spec"]["clusterIP"]
    out = objects["client"].run("busybox", "nslookup", "web.default.svc.cluster.local", dns_ip).stdout
    assert web_ip in out, out


def test_health_ready_and_metrics(dns):
    for what, path in (("health", "/health"), ("ready", "/ready")):
        with urllib.request.urlopen(f"http://127.0.0.1:{dns.ports[what]}{path}", timeout=2) as r:
            assert r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{dns.ports['metrics']}/metrics", timeout=2) as r:
        text = r.read().decode()
    assert "coredns_dns_requests_total{" in text and 'rcode="NXDOMAIN"' in text
