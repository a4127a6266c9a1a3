"""What the proxy programs, read from API objects: service ports and the endpoints behind them.

Pure functions over the JSON dicts the informers hold. A Service becomes one `ServicePort` per
`spec.ports[]` entry (none for headless and ExternalName Services); its EndpointSlices (label
`kubernetes.io/service-name`) become `Endpoint`s per port name, deduplicated across slices.
`usable_endpoints` picks the endpoints traffic may go to, as upstream's proxies pick them: ready ones,
else serving-and-terminating ones (so a rolling update never drops a Service's last backend), restricted
to this node for the `Local` traffic policies.

Only IPv4 is programmed: IPv6 cluster IPs and IPv6 slices are skipped (the proxy logs them once).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True, order=True)
class ServicePortName:
    """`namespace/name:port` as upstream prints it (no `:port` for an unnamed port)."""

    namespace: str
    name: str
    port: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class ServicePort:
    name: ServicePortName
    protocol: str
    port: int
    cluster_ip: str
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    affinity_seconds: int = 0  # > 0: sessionAffinity ClientIP with this timeout
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    hostname: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def _ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def service_ports(svc: Obj) -> list[ServicePort]:
    """The ports the proxy programs for this Service; [] for headless, ExternalName and IPv6-only Services."""
    spec = svc.get("spec") or {}
    meta = svc.get("metadata") or {}
    if spec.get("type") == "ExternalName":
        return []
    cluster_ip = next((ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""] if _ipv4(ip)), "")
    if not cluster_ip:
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
    external_ips = tuple(ip for ip in spec.get("externalIPs") or () if _ipv4(ip))
    out = []
    for p in spec.get("ports") or ():
        protocol = p.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            continue
        out.append(ServicePort(
            name=ServicePortName(meta.get("namespace") or "default", meta["name"], p.get("name") or ""),
            protocol=protocol, port=int(p["port"]), cluster_ip=cluster_ip,
            node_port=int(p.get("nodePort") or 0) if node_ports else 0, external_ips=external_ips,
            affinity_seconds=affinity,
            external_local=spec.get("externalTrafficPolicy") == "Local" and (node_ports or bool(external_ips)),
            internal_local=spec.get("internalTrafficPolicy") == "Local"))
    return out


def slice_service(slice_: Obj) -> tuple[str, str] | None:
    """(namespace, service name) an EndpointSlice belongs to, from its label."""
    meta = slice_.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (meta.get("namespace") or "default", name) if name else None


def endpoints_by_port(slices: Iterable[Obj]) -> dict[tuple[str, str], list[Endpoint]]:
    """(port name, protocol) -> endpoints, merged over the Service's IPv4 slices, sorted, one per ip:port."""
    out: dict[tuple[str, str], dict[tuple[str, int], Endpoint]] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        for port in s.get("ports") or ():
            if port.get("port") is None:
                continue
            key = (port.get("name") or "", port.get("protocol") or "TCP")
            bucket = out.setdefault(key, {})
            for ep in s.get("endpoints") or ():
                cond = ep.get("conditions") or {}
                ready = cond.get("ready") is not False
                serving = cond["serving"] if cond.get("serving") is not None else ready
                terminating = bool(cond.get("terminating"))
                for ip in ep.get("addresses") or ():
                    if not _ipv4(ip):
                        continue
                    e = Endpoint(ip, int(port["port"]), ready, bool(serving), terminating,
                                 ep.get("nodeName") or "", ep.get("hostname") or "")
                    old = bucket.get((ip, e.port))
                    if old is None or (e.ready and not old.ready):
                        bucket[(ip, e.port)] = e
    return {k: sorted(v.values()) for k, v in out.items()}


def _pick(eps: list[Endpoint]) -> list[Endpoint]:
    ready = [e for e in eps if e.ready]
    return ready or [e for e in eps if e.serving and e.terminating]


def usable_endpoints(sp: ServicePort, eps: list[Endpoint], node_name: str) -> tuple[list[Endpoint], list[Endpoint]]:
    """(endpoints for cluster traffic, endpoints on this node for Local external traffic)."""
    local = _pick([e for e in eps if e.node_name == node_name])
    cluster = local if sp.internal_local else _pick(eps)
    return cluster, local if sp.external_local else []
