"""A bridge network: containers on one Linux bridge, addressed from one subnet, NATed outwards.

Built from Debian's CNI plugins: `bridge` (veth pair, bridge, gateway address,
hairpin) with `host-local` IPAM (leases under the caller's data directory),
`portmap` for published ports and `loopback` for the container's `lo`.
Outbound NAT and forwarding are kapal's own, one rule set per network (as
Docker does) rather than the bridge plugin's per-container chains, so no
rule can outlive its container:

    nat    POSTROUTING -> KAPAL-POSTROUTING: -s SUBNET ! -o BRIDGE -j MASQUERADE
    filter FORWARD     -> KAPAL-FORWARD:     -i BRIDGE -j ACCEPT; -o BRIDGE, conntrack
                                             RELATED,ESTABLISHED or DNAT -j ACCEPT

Published ports are DNAT rules of portmap, also for traffic from the host
itself; 127.0.0.1 works because `route_localnet` is set on the bridge.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal.errors import AlreadyExists, Invalid, KapalError, NotFound, Unsupported

from . import netns, sysctl
from .cni import CNI_VERSION, DEFAULT_PLUGIN_DIRS, CniRunner, RuntimeConf, portmap_lock
from .iptables import Iptables

log = logging.getLogger(__name__)

ENGINE_NETWORK = "kapal"
ENGINE_BRIDGE = "kapal0"
ENGINE_SUBNET = "10.89.0.0/16"

NAT_CHAIN = "KAPAL-POSTROUTING"
FORWARD_CHAIN = "KAPAL-FORWARD"
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")


@dataclass(frozen=True)
class PortMapping:
    """One published port: host_ip:host_port -> container_port/protocol ('' host_ip = every address)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp", "sctp"):
            raise Invalid(f"port protocol must be tcp, udp or sctp, not {self.protocol!r}")
        for what, port in (("host", self.host_port), ("container", self.container_port)):
            if not 0 <= port <= 65535 or (what == "container" and port == 0):
                raise Invalid(f"invalid {what} port {port}: must be 1-65535")
        if self.host_ip:
            try:
                ip = ipaddress.ip_address(self.host_ip)
            except ValueError as e:
                raise Invalid(f"invalid host IP {self.host_ip!r} in port mapping") from e
            object.__setattr__(self, "host_ip", "" if ip.is_unspecified else str(ip))

    @classmethod
    def parse(cls, spec: str) -> PortMapping:
        """Docker's `-p [ip:][host_port:]container_port[/proto]`; no host port means 0 (pick a free one)."""
        text, _, proto = spec.partition("/")
        proto = proto or "tcp"
        host_ip = ""
        if text.startswith("["):  # [::1]:8080:80
            host_ip, sep, text = text[1:].partition("]")
            if not sep or not text.startswith(":"):
                raise Invalid(f"invalid port mapping {spec!r}: expected [ip]:host:container")
            text = text[1:]
        parts = text.split(":")
        if len(parts) == 3 and not host_ip:
            host_ip, parts = parts[0], parts[1:]
        if len(parts) > 2 or not parts[-1]:
            raise Invalid(f"invalid port mapping {spec!r}: expected [ip:][host_port:]container_port[/protocol]")
        if any("-" in p for p in parts):
            raise Unsupported(f"port ranges are not supported in {spec!r}; publish each port with its own -p")
        try:
            container = int(parts[-1])
            host = int(parts[0]) if len(parts) == 2 and parts[0] else 0
        except ValueError as e:
            raise Invalid(f"invalid port mapping {spec!r}: ports must be numbers") from e
        return cls(host, container, proto.lower(), host_ip)

    def to_cni(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                               "protocol": self.protocol}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @classmethod
    def from_cni(cls, data: dict[str, Any]) -> PortMapping:
        return cls(int(data["hostPort"]), int(data["containerPort"]), data.get("protocol", "tcp"),
                   data.get("hostIP", ""))

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host + ':' if host else ''}{self.host_port}:{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class Attachment:
    """A container's place on a network, as the CNI result says."""

    network: str
    container_id: str
    ifname: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    mac: str
    host_interface: str | None
    port_mappings: tuple[PortMapping, ...] = ()
    netns: str = ""
    result: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.address.ip

    @property
    def prefix_length(self) -> int:
        return self.address.network.prefixlen

    @classmethod
    def from_result(cls, network: str, container_id: str, ifname: str, result: dict[str, Any],
                    port_mappings: Iterable[PortMapping] = (), netns_path: str = "") -> Attachment:
        interfaces = result.get("interfaces") or []
        ips = result.get("ips") or []
        if not ips:
            raise KapalError(f"CNI network {network} gave container {container_id[:12]} no IP address")
        mine = [i for i, itf in enumerate(interfaces) if itf.get("sandbox") and itf.get("name") == ifname]
        chosen = next((ip for ip in ips if ip.get("interface") in mine), ips[0])
        idx = chosen.get("interface")
        mac = interfaces[idx].get("mac", "") if isinstance(idx, int) and idx < len(interfaces) else ""
        host_side = [itf["name"] for itf in interfaces
                     if not itf.get("sandbox") and itf.get("name") and itf.get("name") != network]
        gateway = chosen.get("gateway")
        return cls(
            network=network,
            container_id=container_id,
            ifname=ifname,
            address=ipaddress.ip_interface(chosen["address"]),
            gateway=ipaddress.ip_address(gateway) if gateway else None,
            mac=mac,
            host_interface=host_side[-1] if host_side else None,
            port_mappings=tuple(port_mappings),
            netns=netns_path,
            result=result,
        )


def _check_container(container_id: str, ifname: str) -> None:
    if not _CONTAINER_ID.match(container_id or ""):
        raise Invalid(f"container id {container_id!r} must be letters, digits, '_', '.' or '-'")
    if not _IFNAME.match(ifname or ""):
        raise Invalid(f"interface name {ifname!r} must be 1-15 characters without '/', ':' or spaces")


class BridgeNetwork:
    """One bridge network; the engine's default is `BridgeNetwork.engine_default(data_dir)`."""

    _setup_done: set[tuple[str, str, str]] = set()
    _setup_lock = threading.Lock()

    def __init__(
        self,
        name: str,
        bridge: str,
        subnet: str,
        data_dir: str | os.PathLike[str],
        *,
        gateway: str | None = None,
        ip_masq: bool = True,
        nat_exclude: Sequence[str] = (),
        hairpin: bool = True,
        mtu: int | None = None,
        plugin_dirs: tuple[str, ...] = DEFAULT_PLUGIN_DIRS,
    ) -> None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", name or ""):
            raise Invalid(f"network name {name!r} must be letters, digits, '_', '.' or '-'")
        if not _IFNAME.match(bridge or ""):
            raise Invalid(f"bridge name {bridge!r} must be 1-15 characters without '/', ':' or spaces")
        try:
            self.subnet = ipaddress.ip_network(subnet, strict=True)
        except ValueError as e:
            raise Invalid(f"subnet {subnet!r} of network {name} is not a network address in CIDR form: {e}") from e
        if self.subnet.version != 4:
            raise Unsupported(f"network {name}: only IPv4 subnets are supported, not {subnet}")
        if self.subnet.num_addresses < 4:
            raise Invalid(f"subnet {subnet} of network {name} is too small: it needs a gateway and a container")
        try:
            self.gateway = ipaddress.ip_address(gateway) if gateway else self.subnet[1]
        except ValueError as e:
            raise Invalid(f"gateway {gateway!r} of network {name} is not an IP address") from e
        if self.gateway not in self.subnet or self.gateway in (self.subnet.network_address,
                                                               self.subnet.broadcast_address):
            raise Invalid(f"gateway {self.gateway} is not a host address of subnet {self.subnet}")
        self.nat_exclude = tuple(str(ipaddress.ip_network(n, strict=False)) for n in nat_exclude)
        self.name = name
        self.bridge = bridge
        self.data_dir = Path(data_dir)
        self.ip_masq = ip_masq
        self.hairpin = hairpin
        self.mtu = mtu
        self.runner = CniRunner(self.data_dir / "results", plugin_dirs)
        self._port_lock = threading.Lock()

    @classmethod
    def engine_default(cls, data_dir: str | os.PathLike[str]) -> BridgeNetwork:
        return cls(ENGINE_NETWORK, ENGINE_BRIDGE, ENGINE_SUBNET, data_dir)

    def __repr__(self) -> str:
        return f"BridgeNetwork({self.name!r}, bridge={self.bridge!r}, subnet={str(self.subnet)!r})"

    # ---- configuration ------------------------------------------------------------------------------

    @property
    def ipam_dir(self) -> Path:
        return self.data_dir / "ipam"

    def conflist(self, with_portmap: bool = True) -> dict[str, Any]:
        bridge: dict[str, Any] = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": False,  # kapal's per-network rule instead, see the module docstring
            "hairpinMode": self.hairpin,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(self.subnet), "gateway": str(self.gateway)}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.ipam_dir),
            },
        }
        if self.mtu:
            bridge["mtu"] = self.mtu
        plugins = [bridge]
        if with_portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
        return {"cniVersion": CNI_VERSION, "name": self.name, "plugins": plugins}

    def _comment(self) -> list[str]:
        return ["-m", "comment", "--comment", f"kapal network {self.name}"]

    def _nat_rules(self) -> list[list[str]]:
        src = ["-s", str(self.subnet)]
        rules = [[*src, "-d", ex, *self._comment(), "-j", "RETURN"] for ex in self.nat_exclude]
        if self.ip_masq:
            rules.append([*src, "!", "-o", self.bridge, *self._comment(), "-j", "MASQUERADE"])
        return rules

    def _forward_rules(self) -> list[list[str]]:
        return [
            ["-i", self.bridge, *self._comment(), "-j", "ACCEPT"],
            ["-o", self.bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *self._comment(),
             "-j", "ACCEPT"],
            ["-o", self.bridge, "-m", "conntrack", "--ctstate", "DNAT", *self._comment(), "-j", "ACCEPT"],
        ]

    def setup(self, force: bool = False) -> None:
        """Host state the network needs: IP forwarding and its NAT/forward rules. Idempotent; done once per
        process unless `force` (e.g. after someone flushed the host's rules)."""
        key = (self.name, self.bridge, str(self.subnet))
        with self._setup_lock:
            if key in self._setup_done and not force:
                return
            sysctl.enable_ip_forward()
            ipt = Iptables()
            ipt.ensure_jump("nat", "POSTROUTING", NAT_CHAIN)
            ipt.ensure_jump("filter", "FORWARD", FORWARD_CHAIN)
            for rule in self._nat_rules():
                ipt.ensure_rule("nat", NAT_CHAIN, *rule)
            for rule in self._forward_rules():
                ipt.ensure_rule("filter", FORWARD_CHAIN, *rule)
            self._setup_done.add(key)

    # ---- attachments --------------------------------------------------------------------------------

    def attach(self, container_id: str, netns_path: str, ifname: str = "eth0",
               port_mappings: Iterable[PortMapping | str] = (), *, loopback: bool = True,
               cni_args: tuple[tuple[str, str], ...] = ()) -> Attachment:
        """Give the container in `netns_path` an interface on this network (and `lo` up when `loopback`)."""
        _check_container(container_id, ifname)
        if not netns.is_netns(netns_path):
            raise NotFound(f"network namespace {netns_path} does not exist")
        mappings = tuple(p if isinstance(p, PortMapping) else PortMapping.parse(p) for p in port_mappings)
        self.setup()
        if loopback:
            self.runner.exec_plugin("loopback", "ADD", {"cniVersion": CNI_VERSION, "name": "cni-loopback",
                                                        "type": "loopback"},
                                    RuntimeConf(container_id, netns_path, "lo"), "cni-loopback")
        with self._port_lock if mappings else contextlib.nullcontext():
            mappings = self._claim_ports(container_id, mappings)
            caps = {"portMappings": [m.to_cni() for m in mappings]} if mappings else {}
            rt = RuntimeConf(container_id, netns_path, ifname, cni_args, caps)
            result = self.runner.add(self.conflist(with_portmap=bool(mappings)), rt)
        if mappings:
            sysctl.enable_route_localnet(self.bridge)
        return Attachment.from_result(self.name, container_id, ifname, result, mappings, netns_path)

    def _claim_ports(self, container_id: str, mappings: tuple[PortMapping, ...]) -> tuple[PortMapping, ...]:
        """Pick free host ports for host_port 0 and refuse ports already published or bound on the host."""
        taken = {(m.protocol, m.host_port, m.host_ip) for a in self.attachments() if a.container_id != container_id
                 for m in a.port_mappings}
        out = []
        for m in mappings:
            if m.host_port == 0:
                m = PortMapping(free_host_port(m.host_ip, m.protocol), m.container_port, m.protocol, m.host_ip)
            clash = any(proto == m.protocol and port == m.host_port and (ip == m.host_ip or "" in (ip, m.host_ip))
                        for proto, port, ip in taken)
            if clash or host_port_in_use(m.host_ip, m.host_port, m.protocol):
                where = m.host_ip or "0.0.0.0"
                raise AlreadyExists(f"Bind for {where}:{m.host_port} failed: port is already allocated")
            taken.add((m.protocol, m.host_port, m.host_ip))
            out.append(m)
        return tuple(out)

    def detach(self, container_id: str, netns_path: str | None = None, ifname: str = "eth0") -> None:
        """Remove the container's interface, lease and port rules; idempotent, and fine when the
        namespace is already gone (then the kernel has removed the veth with it)."""
        _check_container(container_id, ifname)
        cached = self.runner.read_cache(self.name, container_id, ifname)
        path = netns_path if netns_path is not None else (cached or {}).get("netns", "")
        if path and not netns.is_netns(path):
            path = ""
        rt = RuntimeConf(container_id, path, ifname)
        self.runner.delete(None if cached else self.conflist(with_portmap=True), rt, self.name)

    def cleanup(self, container_id: str, ifname: str = "eth0") -> None:
        """detach() for a container whose network namespace no longer exists."""
        _check_container(container_id, ifname)
        rt = RuntimeConf(container_id, "", ifname)
        cached = self.runner.read_cache(self.name, container_id, ifname)
        self.runner.delete(None if cached else self.conflist(with_portmap=True), rt, self.name)

    def check(self, container_id: str, netns_path: str, ifname: str = "eth0") -> None:
        """CNI CHECK: raises when the container's interface, address or routes are not as ADD left them."""
        _check_container(container_id, ifname)
        self.runner.check(None, RuntimeConf(container_id, netns_path, ifname), self.name)

    def attachment(self, container_id: str, ifname: str = "eth0") -> Attachment | None:
        record = self.runner.read_cache(self.name, container_id, ifname)
        return _from_record(self.name, record) if record else None

    def attachments(self) -> list[Attachment]:
        """Every attachment this network remembers (for adopting containers after a restart)."""
        return [_from_record(self.name, r) for r in self.runner.cached(self.name)]

    # ---- removal ------------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove the network from the host: its attachments' leases and port rules, its NAT and forward
        rules (and our chains once empty), the bridge device and its data directory."""
        for a in self.attachments():
            try:
                self.detach(a.container_id, a.netns, a.ifname)
            except KapalError as e:
                log.warning("detaching %s from %s: %s", a.container_id, self.name, e)
        ipt = Iptables()
        for table, chain, rules, parent in (("nat", NAT_CHAIN, self._nat_rules(), "POSTROUTING"),
                                            ("filter", FORWARD_CHAIN, self._forward_rules(), "FORWARD")):
            if not ipt.has_chain(table, chain):
                continue
            for rule in rules:
                ipt.delete_rule(table, chain, *rule)
            if not ipt.rules(table, chain):
                ipt.delete_rule(table, parent, "-j", chain)
                ipt.delete_chain(table, chain)
        _delete_link(self.bridge)
        shutil.rmtree(self.ipam_dir / self.name, ignore_errors=True)
        shutil.rmtree(self.runner.cache_dir, ignore_errors=True)
        for d in (self.ipam_dir, self.data_dir):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: other networks may share the directory
        with self._setup_lock:
            self._setup_done.discard((self.name, self.bridge, str(self.subnet)))


def _from_record(network: str, record: dict[str, Any]) -> Attachment:
    mappings = [PortMapping.from_cni(m) for m in (record.get("capabilities") or {}).get("portMappings", [])]
    return Attachment.from_result(network, record["containerId"], record["ifName"], record["result"], mappings,
                                  record.get("netns", ""))


def _delete_link(name: str) -> None:
    if not os.path.exists(f"/sys/class/net/{name}"):
        return
    proc = subprocess.run(["ip", "link", "delete", name], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and os.path.exists(f"/sys/class/net/{name}"):
        raise KapalError(f"cannot delete network device {name}: {proc.stderr.strip()}")


def host_port_in_use(host_ip: str, port: int, protocol: str = "tcp") -> bool:
    """True when a host socket already holds `port` (a listener for tcp, a bound socket for udp)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError:
            return True
    return False


def free_host_port(host_ip: str = "", protocol: str = "tcp") -> int:
    """A port the kernel considers free right now (as Docker picks one for `-p CONTAINER_PORT`)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        return s.getsockname()[1]


def remove_unused_portmap_chains() -> list[str]:
    """Delete portmap's shared chains when no container uses them any more (CNI-HOSTPORT-DNAT is empty)."""
    ipt = Iptables()
    with portmap_lock():
        if not ipt.has_chain("nat", "CNI-HOSTPORT-DNAT") or ipt.rules("nat", "CNI-HOSTPORT-DNAT"):
            return []
        deleted: list[str] = []
        for chain in PORTMAP_CHAINS:
            deleted += ipt.delete_chains(chain, tables=("nat",), exact=True)
        return deleted
