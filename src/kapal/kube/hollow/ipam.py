"""Pod IPs for hollow nodes: from the node's spec.podCIDR when node IPAM gave it one, else from a private /24
per node carved out of 100.64.0.0/10 (shared address space, never routed), lowest free address first."""

from __future__ import annotations

import ipaddress

FALLBACK_RANGE = ipaddress.ip_network("100.64.0.0/10")


class PodAddresses:
    def __init__(self, index: int) -> None:
        self.index = index
        base = int(FALLBACK_RANGE.network_address) + (index % 16384) * 256
        self.cidr: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network((base, 24))
        self.used: set[str] = set()
        self.by_owner: dict[str, str] = {}

    def set_cidr(self, cidr: str | None) -> None:
        if cidr:
            net = ipaddress.ip_network(cidr, strict=False)
            if net != self.cidr:
                self.cidr = net

    def allocate(self, owner: str) -> str:
        if owner in self.by_owner:
            return self.by_owner[owner]
        hosts = self.cidr.hosts()
        next(hosts, None)  # .1 is the node's own bridge address, as with the bridge CNI plugin
        for ip in hosts:
            text = str(ip)
            if text not in self.used:
                self.used.add(text)
                self.by_owner[owner] = text
                return text
        raise RuntimeError(f"pod CIDR {self.cidr} is exhausted")

    def release(self, owner: str) -> None:
        ip = self.by_owner.pop(owner, None)
        if ip is not None:
            self.used.discard(ip)
