"""Docker's network modes for the engine's containers, on kapal.network.

- `bridge` (the default; Docker's `default` means it): a network namespace on the engine's bridge
  (kapal0, 10.89.0.0/16, outbound NAT). Attaching runs the CNI plugins (tens of ms), so a few
  *sandboxes* — pinned namespace files already attached — are kept ready and a container takes one
  when it starts. A container with published ports gets its own attach: portmap needs the ports at ADD.
- `host`: the host's namespace. `none`: a namespace with only `lo`, up.
- `container:<id>` (handled by the container manager) and `ns:<path>` join an existing namespace;
  `ns:` is how the kubelet's pod sandboxes are joined.

The sandboxes live as `<data-root>/netns/<id>`; their CNI id is the sandbox id, so a container's
address is `attachment(sandbox_id)`. A sandbox no container record names is swept at start.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kapal.errors import Invalid, KapalError, NotFound, Unsupported
from kapal.network import netns
from kapal.network.bridge import (
    ENGINE_BRIDGE,
    ENGINE_NETWORK,
    ENGINE_SUBNET,
    Attachment,
    BridgeNetwork,
    PortMapping,
    remove_unused_portmap_chains,
)

log = logging.getLogger(__name__)

NETWORK_STATE_DIR = Path("/run/kapal/network")
BRIDGE_MARKER = "bridge.json"  # in the data root: the bridge this engine attached containers to
MODES = ("bridge", "host", "none")


def network_id(name: str, salt: str = "") -> str:
    return hashlib.sha256(f"kapal-network:{name}:{salt}".encode()).hexdigest()


@dataclass
class Sandbox:
    """A network namespace a container joins: its file, and its bridge attachment if any."""

    id: str
    netns: str
    network: str  # "bridge" | "none"
    ports: tuple[PortMapping, ...] = ()
    attachment: Attachment | None = None

    def to_record(self) -> dict:
        return {"id": self.id, "netns": self.netns, "network": self.network, "ports": [str(p) for p in self.ports]}


def parse_port_bindings(bindings: dict | None) -> tuple[PortMapping, ...]:
    """HostConfig.PortBindings ({"80/tcp": [{"HostIp", "HostPort"}]}) → port mappings, Docker's checks."""
    out: list[PortMapping] = []
    for key, entries in (bindings or {}).items():
        port, _, proto = str(key).partition("/")
        proto = (proto or "tcp").lower()
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise Invalid(f'invalid port specification: "{key}"')
        for entry in entries or [{}]:
            host_port = str((entry or {}).get("HostPort") or "")
            host_ip = str((entry or {}).get("HostIp") or "")
            if "-" in host_port:
                raise Unsupported(f"host port ranges ({host_port!r}) are not supported: one -p per port")
            if host_port and (not host_port.isdigit() or not 0 <= int(host_port) < 65536):
                raise Invalid(f'invalid port specification: "{host_port}"')
            try:
                out.append(PortMapping(int(host_port or 0), int(port), proto, host_ip))
            except Invalid as e:
                raise Invalid(f"invalid port mapping for {key}: {e}") from None
    return tuple(out)


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


class EngineNetworks:
    """The bridge network, its pool of ready sandboxes, and `none` namespaces."""

    def __init__(
        self,
        data_root: Path,
        bridge: str = ENGINE_BRIDGE,
        subnet: str = ENGINE_SUBNET,
        pool_size: int = 2,
        state_dir: Path = NETWORK_STATE_DIR,
        gateway: str | None = None,
    ) -> None:
        self.netns_dir = Path(data_root) / "netns"
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        name = ENGINE_NETWORK if (bridge, subnet) == (ENGINE_BRIDGE, ENGINE_SUBNET) else f"kapal-{bridge}"
        # the bridge is host-wide, so is its address management: engines sharing a bridge share the leases
        self.bridge = BridgeNetwork(name, bridge, subnet, state_dir / bridge, gateway=gateway)
        self.pool_size = max(0, pool_size)
        self._pool: list[Sandbox] = []
        self._lock = threading.Lock()
        self._refilling = False
        self._closed = False
        self._used = False
        self._marked = False
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="net")
        self._pending: set[Future] = set()

    # ---------------------------------------------------------------- sandboxes

    def _mark_bridge_used(self) -> None:
        """Record in the data root that this engine put the bridge (and its rules) on the host: `--cleanup` removes
        a bridge only then."""
        if self._marked:
            return
        marker = self.netns_dir.parent / BRIDGE_MARKER
        record = {"bridge": self.bridge.bridge, "subnet": str(self.bridge.subnet)}
        try:
            if json.loads(marker.read_text()) == record:
                self._marked = True
                return
        except (OSError, ValueError):
            pass
        marker.write_text(json.dumps(record))
        self._marked = True

    def _new_sandbox(self, network: str, ports: tuple[PortMapping, ...] = ()) -> Sandbox:
        sid = secrets.token_hex(8)
        path = str(self.netns_dir / sid)
        if network == "bridge":
            self._mark_bridge_used()
        netns.create(path)
        try:
            if network == "bridge":
                attachment = self.bridge.attach(sid, path, port_mappings=ports)
                return Sandbox(sid, path, network, attachment.port_mappings, attachment)
            netns.call_in(path, _loopback_up)
            return Sandbox(sid, path, network)
        except BaseException:
            with contextlib.suppress(Exception):
                self.bridge.cleanup(sid)
            netns.remove(path)
            raise

    def sandbox(self, network: str, ports: tuple[PortMapping, ...] = ()) -> Sandbox:
        """A sandbox for a starting container (bridge from the pool when no ports are published)."""
        if network == "none":
            return self._new_sandbox("none")
        if network != "bridge":
            raise Unsupported(f"network mode {network!r}: bridge, host, none, container:<id> and ns:<path> are")
        self._used = True
        if not ports:
            with self._lock:
                taken = self._pool.pop(0) if self._pool else None
            self._refill()
            if taken is not None:
                return taken
        try:
            return self._new_sandbox("bridge", ports)
        except KapalError as e:
            if "already allocated" in str(e):
                raise
            raise KapalError(f"failed to set up the container's network on {self.bridge.bridge}: {e}") from e

    def _refill(self) -> None:
        with self._lock:
            if self._refilling or self._closed or len(self._pool) >= self.pool_size:
                return
            self._refilling = True

        def work() -> None:
            try:
                while True:
                    with self._lock:
                        if self._closed or len(self._pool) >= self.pool_size:
                            return
                    sandbox = self._new_sandbox("bridge")
                    with self._lock:
                        if not self._closed:
                            self._pool.append(sandbox)
                            continue
                    self._release_now(sandbox)
                    return
            except Exception:
                log.exception("preparing a network sandbox on %s", self.bridge.bridge)
            finally:
                with self._lock:
                    self._refilling = False

        self._track(self._background.submit(work))

    def _track(self, future: Future) -> None:
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(lambda f: self._pending.discard(f))

    def release(self, record: dict | None, wait: bool = True) -> Future | None:
        """Take a container's sandbox down (detach, unpin); in the background unless `wait`."""
        if not record:
            return None
        sandbox = Sandbox(record["id"], record["netns"], record["network"])
        if wait:
            self._release_now(sandbox)
            return None
        future = self._background.submit(self._release_now, sandbox)
        self._track(future)
        return future

    def _release_now(self, sandbox: Sandbox) -> None:
        try:
            if sandbox.network == "bridge":
                self.bridge.detach(sandbox.id, sandbox.netns if netns.is_netns(sandbox.netns) else None)
        except KapalError as e:
            log.warning("detaching sandbox %s from %s: %s", sandbox.id, self.bridge.bridge, e)
        finally:
            netns.remove(sandbox.netns)

    def attachment(self, record: dict | None) -> Attachment | None:
        if not record or record.get("network") != "bridge":
            return None
        return self.bridge.attachment(record["id"])

    def sweep(self, in_use: set[str]) -> None:
        """At start: sandboxes that no container record names (a pool left by a crash) are taken down."""
        for path in sorted(self.netns_dir.iterdir()):
            if path.name in in_use or path.name.startswith("."):
                continue
            self._release_now(Sandbox(path.name, str(path), "bridge"))

    def close(self) -> None:
        """Engine stop: the pool goes; releases under way finish."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for sandbox in pool:
            self._release_now(sandbox)
        for future in list(self._pending):
            with contextlib.suppress(Exception):
                future.result(timeout=60)
        self._background.shutdown(wait=True)
        if self._used:
            with contextlib.suppress(KapalError):
                remove_unused_portmap_chains()

    # ---------------------------------------------------------------- the Docker view

    def docker_networks(self, containers: list[tuple[str, str, dict | None]] = ()) -> list[dict]:
        """`GET /networks`: bridge, host and none, with the containers attached to each."""
        subnet = self.bridge.subnet
        members: dict[str, dict] = {"bridge": {}, "host": {}, "none": {}}
        for cid, name, record in containers:
            mode = (record or {}).get("mode", "")
            if mode not in members:
                continue
            entry = {"Name": name, "EndpointID": "", "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
            att = self.attachment((record or {}).get("sandbox"))
            if att is not None:
                entry.update(
                    EndpointID=network_id(att.container_id, "endpoint"),
                    MacAddress=att.mac,
                    IPv4Address=f"{att.ip}/{att.prefix_length}",
                )
            members[mode][cid] = entry
        base = {
            "Created": "0001-01-01T00:00:00Z",
            "Scope": "local",
            "EnableIPv6": False,
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Labels": {},
        }
        return [
            {
                **base,
                "Name": "bridge",
                "Id": network_id("bridge", self.bridge.bridge),
                "Driver": "bridge",
                "IPAM": {
                    "Driver": "default",
                    "Options": None,
                    "Config": [{"Subnet": str(subnet), "Gateway": str(self.bridge.gateway)}],
                },
                "Containers": members["bridge"],
                "Options": {
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.name": self.bridge.bridge,
                },
            },
            {
                **base,
                "Name": "host",
                "Id": network_id("host"),
                "Driver": "host",
                "IPAM": {"Driver": "default", "Options": None, "Config": []},
                "Containers": members["host"],
                "Options": {},
            },
            {
                **base,
                "Name": "none",
                "Id": network_id("none"),
                "Driver": "null",
                "IPAM": {"Driver": "default", "Options": None, "Config": []},
                "Containers": members["none"],
                "Options": {},
            },
        ]

    def find(self, ref: str, containers: list[tuple[str, str, dict | None]] = ()) -> dict:
        for doc in self.docker_networks(containers):
            if ref in (doc["Name"], doc["Id"]) or (len(ref) >= 3 and doc["Id"].startswith(ref)):
                return doc
        raise NotFound(f"network {ref} not found")

    def settings(self, record: dict | None, ports: dict) -> dict:
        """A container's NetworkSettings (inspect) from its network record."""
        mode = (record or {}).get("mode", "")
        sandbox = (record or {}).get("sandbox") or {}
        att = self.attachment(sandbox)
        endpoint = {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": None,
            "MacAddress": "",
            "NetworkID": network_id(mode, self.bridge.bridge if mode == "bridge" else "") if mode in MODES else "",
            "EndpointID": "",
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DriverOpts": None,
            "DNSNames": None,
        }
        if att is not None:
            endpoint.update(
                MacAddress=att.mac,
                EndpointID=network_id(att.container_id, "endpoint"),
                Gateway=str(att.gateway or ""),
                IPAddress=str(att.ip),
                IPPrefixLen=att.prefix_length,
            )
        top = {k: endpoint[k] for k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")}
        return {
            "Bridge": "",
            "SandboxID": sandbox.get("id", "") if sandbox else "",
            "SandboxKey": sandbox.get("netns", "") if sandbox else "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "",
            **top,
            "Networks": {mode: endpoint} if mode in MODES else {},
        }


def hosts_file(hostname: str, address: str | None) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    if address:
        lines.append(f"{ipaddress.ip_address(address)}\t{hostname}")
    return "\n".join(lines) + "\n"
