"""Service ClusterIP and NodePort allocation, rebuilt from the stored Services on start (the "repair").

Allocation marks an address or port used at admission time; the watch
cache listener keeps the sets in step with what is stored (a Service that
is deleted releases its IP and ports; a failed create releases them at once).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from kapal.errors import Invalid


class Exhausted(Invalid):
    pass


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        try:
            self.network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise Invalid(f"--service-cluster-ip-range {cidr!r} is not a CIDR") from None
        if self.network.num_addresses < 8:
            raise Invalid(f"--service-cluster-ip-range {cidr} is too small")
        self.used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._first = int(self.network.network_address) + 1
        self._last = int(self.network.broadcast_address) - 1 if self.network.version == 4 else \
            int(self.network.network_address) + min(self.network.num_addresses - 1, 2**20)

    @property
    def first(self) -> str:
        """The address of the `kubernetes` Service (the range's first usable address)."""
        return str(ipaddress.ip_address(self._first))

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def allocate(self, ip: str | None = None) -> str:
        if ip:
            addr = ipaddress.ip_address(ip)
            if addr not in self.network or int(addr) < self._first or int(addr) > self._last:
                raise Invalid(f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                              f"The range of valid IPs is {self.network}")
            if addr in self.used:
                raise Invalid(f"failed to allocate IP {ip}: provided IP is already allocated")
            self.used.add(addr)
            return ip
        size = self._last - self._first + 1
        if len(self.used) >= size:
            raise Exhausted("range is full")
        # Upstream keeps the lowest part of the range for static choices; allocate above it first.
        static = min(max(16, size // 16), 256)
        lo = self._first + static if size > static * 2 else self._first
        for _ in range(64):
            addr = ipaddress.ip_address(random.randint(lo, self._last))
            if addr not in self.used:
                self.used.add(addr)
                return str(addr)
        for n in range(self._first, self._last + 1):
            addr = ipaddress.ip_address(n)
            if addr not in self.used:
                self.used.add(addr)
                return str(addr)
        raise Exhausted("range is full")

    def mark(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr in self.network:
            self.used.add(addr)

    def release(self, ip: str) -> None:
        try:
            self.used.discard(ipaddress.ip_address(ip))
        except ValueError:
            pass


class PortAllocator:
    def __init__(self, spec: str) -> None:
        try:
            lo, _, hi = spec.partition("-")
            self.lo, self.hi = int(lo), int(hi or lo)
        except ValueError:
            raise Invalid(f"--service-node-port-range {spec!r} is not a range like 30000-32767") from None
        if not 0 < self.lo <= self.hi < 65536:
            raise Invalid(f"--service-node-port-range {spec!r} is not a valid port range")
        self.used: set[int] = set()

    def allocate(self, port: int | None = None) -> int:
        if port:
            if not self.lo <= port <= self.hi:
                raise Invalid(f"provided port is not in the valid range. The range of valid ports is "
                              f"{self.lo}-{self.hi}")
            if port in self.used:
                raise Invalid("provided port is already allocated")
            self.used.add(port)
            return port
        free = self.hi - self.lo + 1 - len(self.used)
        if free <= 0:
            raise Exhausted("range is full")
        for _ in range(64):
            p = random.randint(self.lo, self.hi)
            if p not in self.used:
                self.used.add(p)
                return p
        for p in range(self.lo, self.hi + 1):
            if p not in self.used:
                self.used.add(p)
                return p
        raise Exhausted("range is full")

    def mark(self, port: int) -> None:
        if self.lo <= port <= self.hi:
            self.used.add(port)

    def release(self, port: int) -> None:
        self.used.discard(port)


def service_ips(svc: dict[str, Any]) -> list[str]:
    spec = svc.get("spec") or {}
    ips = list(spec.get("clusterIPs") or [])
    if spec.get("clusterIP") and spec["clusterIP"] not in ips:
        ips.append(spec["clusterIP"])
    return [ip for ip in ips if ip and ip != "None"]


def service_node_ports(svc: dict[str, Any]) -> list[int]:
    spec = svc.get("spec") or {}
    out = [int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        out.append(int(spec["healthCheckNodePort"]))
    return out
