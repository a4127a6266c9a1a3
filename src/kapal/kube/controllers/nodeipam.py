"""Node IPAM (range allocator): every node gets spec.podCIDR/podCIDRs, a /--node-cidr-mask-size (default /24)
slice of --cluster-cidr, lowest free first; slices overlapping the Service range are never handed out."""

from __future__ import annotations

import ipaddress
from typing import Any

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import NODES
from kapal.kube.controllers.base import Controller, ControllerContext

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CidrSet:
    """The /mask subnets of one cluster CIDR, as indexes into it."""

    def __init__(self, cluster_cidr: str, mask: int) -> None:
        self.net: Network = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask < self.net.prefixlen:
            raise errors.Invalid(f"--node-cidr-mask-size {mask} is larger than --cluster-cidr {cluster_cidr}")
        if mask - self.net.prefixlen > 24:
            raise errors.Invalid(f"--cluster-cidr {cluster_cidr} split into /{mask} gives too many node CIDRs")
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()
        self.next = 0

    def subnet(self, index: int) -> Network:
        step = 1 << (self.net.max_prefixlen - self.mask)
        return ipaddress.ip_network((int(self.net.network_address) + index * step, self.mask))

    def index_of(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.net.version or net.prefixlen != self.mask or not net.subnet_of(self.net):  # type: ignore[arg-type]
            return None
        step = 1 << (self.net.max_prefixlen - self.mask)
        return (int(net.network_address) - int(self.net.network_address)) // step

    def occupy(self, cidr: str) -> None:
        i = self.index_of(cidr)
        if i is not None:
            self.used.add(i)

    def reserve_overlapping(self, other: str) -> None:
        """Keep every subnet that overlaps `other` (the Service range) out of use."""
        try:
            o = ipaddress.ip_network(other, strict=False)
        except ValueError:
            return
        if o.version != self.net.version or not o.overlaps(self.net):  # type: ignore[arg-type]
            return
        for i in range(self.size):
            if self.subnet(i).overlaps(o):  # type: ignore[arg-type]
                self.used.add(i)

    def release(self, cidr: str) -> None:
        i = self.index_of(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self) -> str:
        for k in range(self.size):
            i = (self.next + k) % self.size
            if i not in self.used:
                self.used.add(i)
                self.next = (i + 1) % self.size
                return str(self.subnet(i))
        raise errors.FailedPrecondition(f"no free /{self.mask} left in {self.net}")


class NodeIpamController(Controller):
    name = "node-ipam-controller"
    workers = 1

    def __init__(self, ctx: ControllerContext, cluster_cidr: str, mask: int, service_cidr: str = "") -> None:
        super().__init__(ctx)
        self.cidrs = CidrSet(cluster_cidr.split(",")[0].strip(), mask)
        if service_cidr:
            self.cidrs.reserve_overlapping(service_cidr.split(",")[0].strip())
        self.assigned: dict[str, str] = {}
        self.nodes = self.informer(NODES)
        self.watch(self.nodes, EventHandler(on_add=self._node, on_update=lambda _o, n: self._node(n),
                                            on_delete=self._node_deleted))

    def _node(self, node: dict[str, Any]) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        name = node["metadata"]["name"]
        if cidr:
            self.cidrs.occupy(cidr)
            self.assigned[name] = cidr
        else:
            self.queue.add(name)

    def _node_deleted(self, node: dict[str, Any]) -> None:
        cidr = self.assigned.pop(node["metadata"]["name"], None)
        if cidr:
            self.cidrs.release(cidr)

    async def started(self) -> None:
        for node in self.nodes.indexer.list():
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                self.cidrs.occupy(cidr)

    async def sync(self, key: str) -> None:
        node = self.nodes.indexer.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR") or key in self.assigned:
            return  # in self.assigned: patched already, the cache has not seen it yet (a second CIDR would be wrong)
        try:
            cidr = self.cidrs.allocate()
        except errors.FailedPrecondition as e:
            self.recorder.record(node, "Normal", "CIDRNotAvailable",
                                 f"Node {key} status is now: CIDRNotAvailable ({e})")
            raise
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except errors.KapalError:
            self.cidrs.release(cidr)
            raise
        self.assigned[key] = cidr
