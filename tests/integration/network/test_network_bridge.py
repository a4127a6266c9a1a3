"""Containers-as-namespaces on a real bridge through the real CNI plugins: traffic, NAT, ports, cleanup."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kapal.errors import AlreadyExists, KapalError, NotFound
from kapal.network import netns, sysctl
from kapal.network.bridge import BridgeNetwork, PortMapping, free_host_port

pytestmark = pytest.mark.root


def in_netns(path: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True, check=check)


def bridge_ports(bridge: str) -> list[str]:
    brif = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in brif.iterdir()) if brif.exists() else []


def leases(net: BridgeNetwork) -> dict[str, str]:
    """host-local's lease files: IP -> container id."""
    d = net.ipam_dir / net.name
    if not d.exists():
        return {}
    return {p.name: p.read_text().split()[0] for p in d.iterdir() if p.name[0].isdigit()}


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll for an asynchronous kernel event (namespace teardown runs in a workqueue)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def iptables_save() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


class Server:
    """A TCP server listening inside a namespace; answers every connection with a fixed greeting."""

    def __init__(self, ns: str, port: int, greeting: bytes) -> None:
        def listen() -> socket.socket:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(16)
            return s

        self.sock = netns.call_in(ns, listen)
        self.greeting = greeting
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.greeting)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def fetch(host: str, port: int, ns: str | None = None) -> bytes:
    def connect() -> bytes:
        with socket.create_connection((host, port), timeout=5) as c:
            return c.recv(64)

    return netns.call_in(ns, connect) if ns else connect()


def test_two_containers_reach_each_other_and_the_gateway(network, make_netns):
    a, b = make_netns("a"), make_netns("b")
    att_a = network.attach("ctr-a", a)
    att_b = network.attach("ctr-b", b)
    assert att_a.ip in network.subnet and att_b.ip in network.subnet and att_a.ip != att_b.ip
    assert att_a.gateway == network.gateway and att_a.prefix_length == network.subnet.prefixlen
    assert att_a.host_interface in bridge_ports(network.bridge)

    addrs = json.loads(in_netns(a, "ip", "-j", "addr", "show").stdout)
    by_name = {i["ifname"]: i for i in addrs}
    assert by_name["eth0"]["address"] == att_a.mac
    assigned = [f"{x['local']}/{x['prefixlen']}" for x in by_name["eth0"]["addr_info"]]
    assert f"{att_a.ip}/{att_a.prefix_length}" in assigned
    assert "UP" in by_name["lo"]["flags"]  # the loopback plugin ran
    routes = json.loads(in_netns(a, "ip", "-j", "route").stdout)
    assert {"dst": "default", "gateway": str(network.gateway)}.items() <= routes[0].items()

    for src, dst in ((a, att_b.ip), (b, att_a.ip), (a, network.gateway)):
        in_netns(src, "busybox", "ping", "-c", "1", "-W", "2", str(dst))
    server = Server(b, 8080, b"from-b")
    try:
        assert fetch(str(att_b.ip), 8080, ns=a) == b"from-b"
        assert fetch(str(att_b.ip), 8080) == b"from-b"  # the host routes to the bridge
    finally:
        server.close()


def test_outbound_nat_and_forwarding_rules(network, make_netns):
    network.attach("ctr-a", make_netns("a"))
    nat = subprocess.run(["iptables", "-t", "nat", "-S", "KAPAL-POSTROUTING"], capture_output=True, text=True,
                         check=True).stdout
    assert (f'-A KAPAL-POSTROUTING -s {network.subnet} ! -o {network.bridge} -m comment --comment '
            f'"kapal network {network.name}" -j MASQUERADE') in nat
    forward = subprocess.run(["iptables", "-S", "KAPAL-FORWARD"], capture_output=True, text=True, check=True).stdout
    assert f"-A KAPAL-FORWARD -i {network.bridge} " in forward
    assert "-A POSTROUTING -j KAPAL-POSTROUTING" in iptables_save()
    assert sysctl.read("net.ipv4.ip_forward") == "1"


def make_netns_attached(network: BridgeNetwork, make_netns) -> str:
    ns = make_netns("client")
    network.attach("client", ns)
    return ns


def test_port_mappings_reach_the_container_from_the_host(network, make_netns):
    ns = make_netns("web")
    local_port, any_port = free_host_port("127.0.0.1"), free_host_port()
    att = network.attach("web", ns, port_mappings=[f"127.0.0.1:{local_port}:80", PortMapping(any_port, 80)])
    assert sysctl.read(sysctl.path("net", "ipv4", "conf", network.bridge, "route_localnet")) == "1"
    server = Server(ns, 80, b"web")
    try:
        assert fetch("127.0.0.1", local_port) == b"web"
        assert fetch("127.0.0.1", any_port) == b"web"
        assert fetch(str(network.gateway), any_port) == b"web"
        with pytest.raises(OSError):  # published on 127.0.0.1 only
            fetch(str(network.gateway), local_port)
        assert fetch(str(network.gateway), any_port, ns=ns) == b"web"  # hairpin: the container reaches itself
        assert fetch(str(network.gateway), any_port, ns=make_netns_attached(network, make_netns)) == b"web"
    finally:
        server.close()
    assert {str(m) for m in att.port_mappings} == {f"127.0.0.1:{local_port}:80/tcp", f"{any_port}:80/tcp"}


def test_port_zero_picks_a_free_port_and_taken_ports_are_refused(network, make_netns):
    first = network.attach("p1", make_netns("p1"), port_mappings=["127.0.0.1::80"])
    port = first.port_mappings[0].host_port
    assert port > 0
    second_ns = make_netns("p2")
    with pytest.raises(AlreadyExists, match=f"0.0.0.0:{port} failed: port is already allocated"):
        network.attach("p2", second_ns, port_mappings=[f"{port}:80"])
    with socket.create_server(("127.0.0.1", 0)) as busy:
        with pytest.raises(AlreadyExists, match="already allocated"):
            network.attach("p2", second_ns, port_mappings=[f"127.0.0.1:{busy.getsockname()[1]}:80"])
    assert "p2" not in leases(network).values()
    assert len(bridge_ports(network.bridge)) == 1


def test_detach_leaves_no_veth_lease_or_rule(network, make_netns):
    ns = make_netns("gone")
    att = network.attach("ctr-gone", ns, port_mappings=[f"{free_host_port()}:80"])
    assert leases(network) == {str(att.ip): "ctr-gone"}
    assert "ctr-gone" in iptables_save()
    network.detach("ctr-gone", ns)
    assert bridge_ports(network.bridge) == []
    assert not Path(f"/sys/class/net/{att.host_interface}").exists()
    assert leases(network) == {}
    saved = iptables_save()
    assert "ctr-gone" not in saved and str(att.ip) not in saved
    assert "eth0" not in in_netns(ns, "ip", "-o", "link").stdout
    assert network.attachment("ctr-gone") is None
    network.detach("ctr-gone", ns)  # idempotent


def test_cleanup_after_the_namespace_is_gone(network, make_netns):
    ns = make_netns("lost")
    att = network.attach("ctr-lost", ns, port_mappings=[f"{free_host_port()}:80"])
    netns.remove(ns)  # the container died and its namespace with it: the kernel removes the veth (soon)
    assert wait_until(lambda: not Path(f"/sys/class/net/{att.host_interface}").exists())
    assert leases(network) == {str(att.ip): "ctr-lost"}
    network.cleanup("ctr-lost")
    assert leases(network) == {}
    assert "ctr-lost" not in iptables_save()
    network.cleanup("ctr-lost")  # idempotent


def test_failed_add_leaves_nothing_behind(make_network, make_netns):
    net = make_network(prefix=30)  # room for the gateway and one container
    first = net.attach("only", make_netns("only"))
    late = make_netns("late")
    with pytest.raises(KapalError, match=r"CNI plugin bridge failed to ADD container late on network .*no IP"):
        net.attach("late", late, port_mappings=[f"{free_host_port()}:80"])
    assert leases(net) == {str(first.ip): "only"}
    assert bridge_ports(net.bridge) == [first.host_interface]
    assert "eth0" not in in_netns(late, "ip", "-o", "link").stdout
    assert "late" not in iptables_save()
    assert net.attachment("late") is None


def test_check_notices_a_broken_attachment(network, make_netns):
    ns = make_netns("chk")
    network.attach("ctr-chk", ns)
    network.check("ctr-chk", ns)
    in_netns(ns, "ip", "link", "del", "eth0")
    with pytest.raises(KapalError, match="CNI plugin bridge failed to CHECK"):
        network.check("ctr-chk", ns)
    with pytest.raises(NotFound):
        network.check("never-attached", ns)


def test_attachments_are_remembered_across_restarts(network, make_netns):
    port = free_host_port()
    att = network.attach("ctr-keep", make_netns("keep"), port_mappings=[f"{port}:80"])
    again = BridgeNetwork(network.name, network.bridge, str(network.subnet), network.data_dir)
    [found] = again.attachments()
    assert (found.container_id, found.ip, found.mac, found.port_mappings) == (
        "ctr-keep", att.ip, att.mac, (PortMapping(port, 80),))


def test_attach_needs_an_existing_namespace(network, tmp_path):
    with pytest.raises(NotFound, match="network namespace"):
        network.attach("ctr-x", str(tmp_path / "missing"))
