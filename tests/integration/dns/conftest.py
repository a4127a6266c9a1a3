"""An API server, a pod bridge, `kapal proxy`, `kapal dns` publishing kube-dns, and a fake upstream resolver."""

from __future__ import annotations

import ipaddress
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from services_harness import KapalProcess, api_server, chains_with_prefix, free_port, pod_network, proxy_process

from kapal.kube.proxy.app import cleanup_rules


class FakeUpstream(BaseResolver):
    """The "host's resolver": upstream.example. A 192.0.2.77, everything else NXDOMAIN; counts questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower()
        self.asked.append(name)
        if name == "upstream.example." and request.q.qtype == QTYPE.A:
            reply.add_answer(RR("upstream.example.", QTYPE.A, rdata=A("192.0.2.77"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def upstream():
    resolver = FakeUpstream()
    port = free_port()
    servers = [DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=DNSLogger("-", True))
               for tcp in (False, True)]
    for s in servers:
        s.start_thread()
    resolver.address = f"127.0.0.1:{port}"
    try:
        yield resolver
    finally:
        for s in servers:
            s.stop()
            s.server.server_close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with api_server(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def pods(tmp_path_factory, run_id):
    with pod_network(tmp_path_factory.mktemp("pods"), "kd" + run_id, ("web-a", "db-0", "db-1")) as net:
        yield net


@pytest.fixture(scope="module")
def proxy(cluster, pods, run_id, tmp_path_factory):
    prefix = f"D{run_id}-"
    p = proxy_process(cluster, prefix, tmp_path_factory.mktemp("proxy"), "--cluster-cidr", str(pods.net.subnet))
    p.start()
    try:
        yield p
    finally:
        p.stop()
        cleanup_rules(prefix)
        assert chains_with_prefix(prefix) == []


@pytest.fixture(scope="module")
def dns_ip(cluster) -> str:
    return str(ipaddress.ip_network(cluster.service_cidr)[10])


@pytest.fixture(scope="module")
def dns(cluster, pods, proxy, upstream, dns_ip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns")
    port = free_port()
    ports = {what: free_port() for what in ("metrics", "health", "ready")}
    proc = KapalProcess("dns", ["--kubeconfig", str(cluster.kubeconfig), "--dns-address", pods.gateway,
                                "--dns-port", str(port), "--publish-service", "--service-ip", dns_ip,
                                "--upstream", upstream.address, "--hostname-override", "node-1",
                                "--metrics-address", f"127.0.0.1:{ports['metrics']}",
                                "--health-address", f"127.0.0.1:{ports['health']}",
                                "--ready-address", f"127.0.0.1:{ports['ready']}", "-v", "2"], tmp / "dns.log")
    proc.start()
    proc.port = port
    proc.ports = ports
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()
        left = cluster.kubectl("get", "endpointslices", "-n", "kube-system", "-o", "name")
        assert "kube-dns-node-1" not in left, "a stopped DNS server should withdraw its EndpointSlice"
