"""The cluster's names, kept from Services and EndpointSlices, answered as CoreDNS's kubernetes plugin answers.

Names under the cluster domain (default `cluster.local`):

    <svc>.<ns>.svc                     A/AAAA: the cluster IPs; headless: the ready endpoints' addresses;
                                       ExternalName: a CNAME; SRV: one record per port (headless: per endpoint)
    _<port>._<proto>.<svc>.<ns>.svc    SRV for one named port
    <host>.<svc>.<ns>.svc              A/AAAA of one endpoint, by its hostname (pod spec.hostname with
                                       spec.subdomain = the headless Service) or its dashed address
    <a-b-c-d>.<ns>.pod                 A: the address spelled in the name ("pods insecure", as kubeadm's CoreDNS)

and PTR records for cluster IPs and headless endpoints under in-addr.arpa / ip6.arpa. A name that exists
with no record of the asked type is NODATA (NOERROR, no answers); a name that does not exist is NXDOMAIN;
both carry the zone's SOA so resolvers cache the negative answer for its (small) minimum TTL.

Pure: no sockets, no dnslib; `lookup` returns `Record` tuples the server encodes.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NOERROR = "NOERROR"
NXDOMAIN = "NXDOMAIN"
_DASHED_V4 = re.compile(r"^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$")


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, without the trailing dot
    rtype: str  # A AAAA CNAME SRV PTR SOA
    data: Any  # A/AAAA: address; CNAME/PTR: name; SRV: (priority, weight, port, target); SOA: (mname, rname)


@dataclass
class Lookup:
    rcode: str
    answers: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    chase: str | None = None  # a CNAME target outside the cluster the server should resolve and append


@dataclass(frozen=True)
class Endpoint:
    ip: str
    ready: bool
    hostname: str = ""

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.ip).version

    @property
    def label(self) -> str:
        """The endpoint's own label: its hostname, or its address with dashes (as CoreDNS names endpoints)."""
        return self.hostname or self.ip.replace(".", "-").replace(":", "-")


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int  # the Service's port; for headless Services the endpoint's port from the slice


@dataclass
class ServiceEntry:
    namespace: str
    name: str
    kind: str  # ClusterIP (incl. NodePort/LoadBalancer), Headless, ExternalName
    cluster_ips: tuple[str, ...] = ()
    external_name: str = ""
    ports: tuple[Port, ...] = ()
    publish_not_ready: bool = False


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def _ip_from_reverse(name: str) -> str | None:
    try:
        if name.endswith(".in-addr.arpa"):
            parts = name[: -len(".in-addr.arpa")].split(".")
            if len(parts) == 4:
                return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        elif name.endswith(".ip6.arpa"):
            nibbles = name[: -len(".ip6.arpa")].split(".")
            if len(nibbles) == 32:
                return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
    except ValueError:
        return None
    return None


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def service_entry(svc: Obj) -> ServiceEntry:
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    ns, name = meta.get("namespace") or "default", meta["name"]
    ports = tuple(Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                  for p in spec.get("ports") or ())
    if spec.get("type") == "ExternalName":
        return ServiceEntry(ns, name, "ExternalName", external_name=(spec.get("externalName") or "").rstrip("."))
    if spec.get("clusterIP") == "None":
        return ServiceEntry(ns, name, "Headless", ports=ports,
                            publish_not_ready=bool(spec.get("publishNotReadyAddresses")))
    ips = tuple(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""] if _valid_ip(ip))
    return ServiceEntry(ns, name, "ClusterIP", cluster_ips=ips, ports=ports)


class ClusterRecords:
    """The index the DNS server answers from; informer handlers keep it current."""

    def __init__(self, domain: str = "cluster.local", ttl: int = 5) -> None:
        self.domain = domain.strip(".").lower()
        self.ttl = ttl
        self.services: dict[tuple[str, str], ServiceEntry] = {}
        self.slices: dict[tuple[str, str], dict[str, Obj]] = {}
        self._endpoints: dict[tuple[str, str], tuple[list[Endpoint], list[Port]]] = {}
        self._namespaces: Counter[str] = Counter()
        self._ptr: dict[str, set[str]] = {}
        self._ptr_by_service: dict[tuple[str, str], dict[str, str]] = {}
        self.serial = 1

    # --- events ------------------------------------------------------------------------------------------------

    def update_service(self, svc: Obj) -> None:
        entry = service_entry(svc)
        key = (entry.namespace, entry.name)
        if key not in self.services:
            self._namespaces[entry.namespace] += 1
        self.services[key] = entry
        self._reindex(key)

    def delete_service(self, svc: Obj) -> None:
        meta = svc.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta["name"])
        if self.services.pop(key, None) is not None:
            self._namespaces[key[0]] -= 1
            if self._namespaces[key[0]] <= 0:
                del self._namespaces[key[0]]
        self._reindex(key)

    def update_slice(self, s: Obj) -> None:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            return
        key = (meta.get("namespace") or "default", svc)
        self.slices.setdefault(key, {})[meta["name"]] = s
        self._reindex(key)

    def delete_slice(self, s: Obj) -> None:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            return
        key = (meta.get("namespace") or "default", svc)
        bucket = self.slices.get(key, {})
        bucket.pop(meta["name"], None)
        if not bucket:
            self.slices.pop(key, None)
        self._reindex(key)

    def _reindex(self, key: tuple[str, str]) -> None:
        self.serial += 1
        eps: dict[str, Endpoint] = {}
        ports: dict[tuple[str, str], Port] = {}
        for s in (self.slices.get(key) or {}).values():
            for p in s.get("ports") or ():
                if p.get("port") is not None:
                    ports.setdefault((p.get("name") or "", p.get("protocol") or "TCP"),
                                     Port(p.get("name") or "", p.get("protocol") or "TCP", int(p["port"])))
            for e in s.get("endpoints") or ():
                ready = (e.get("conditions") or {}).get("ready") is not False
                for ip in e.get("addresses") or ():
                    if _valid_ip(ip) and (ip not in eps or ready):
                        eps[ip] = Endpoint(ip, ready, (e.get("hostname") or "").lower())
        self._endpoints[key] = (sorted(eps.values(), key=lambda e: (e.version, ipaddress.ip_address(e.ip))),
                                list(ports.values()))
        if key not in self.services and key not in self.slices:
            self._endpoints.pop(key, None)
        for ip, name in self._ptr_by_service.pop(key, {}).items():
            names = self._ptr.get(ip)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._ptr[ip]
        entry = self.services.get(key)
        if entry is None:
            return
        fqdn = self.service_name(entry)
        mine: dict[str, str] = {}
        if entry.kind == "ClusterIP":
            mine = {ip: fqdn for ip in entry.cluster_ips}
        elif entry.kind == "Headless":
            mine = {e.ip: f"{e.label}.{fqdn}" for e in self.endpoints(entry)}
        for ip, name in mine.items():
            self._ptr.setdefault(ip, set()).add(name)
        self._ptr_by_service[key] = mine

    # --- queries -----------------------------------------------------------------------------------------------

    def service_name(self, entry: ServiceEntry) -> str:
        return f"{entry.name}.{entry.namespace}.svc.{self.domain}"

    def endpoints(self, entry: ServiceEntry) -> list[Endpoint]:
        eps = self._endpoints.get((entry.namespace, entry.name), ([], []))[0]
        return list(eps) if entry.publish_not_ready else [e for e in eps if e.ready]

    def _ports(self, entry: ServiceEntry) -> list[Port]:
        if entry.kind == "Headless":
            return self._endpoints.get((entry.namespace, entry.name), ([], []))[1]
        return list(entry.ports)

    def soa(self) -> Record:
        return Record(self.domain, "SOA", (f"ns.dns.{self.domain}", f"hostmaster.{self.domain}"))

    def in_zone(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        return name == self.domain or name.endswith("." + self.domain)

    def lookup(self, qname: str, qtype: str) -> Lookup | None:
        """The answer for a name we are authoritative for; None for names to forward."""
        name = qname.rstrip(".").lower()
        if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            return self._reverse(name, qtype)
        if not self.in_zone(name):
            return None
        rest = name[: -len(self.domain)].rstrip(".")
        labels = rest.split(".") if rest else []
        if not labels:
            return Lookup(NOERROR, [self.soa()] if qtype in ("SOA", "ANY") else [])
        if labels[-1] == "svc":
            return self._svc(labels[:-1], name, qtype)
        if labels[-1] == "pod":
            return self._pod(labels[:-1], name, qtype)
        return Lookup(NXDOMAIN)

    def _reverse(self, name: str, qtype: str) -> Lookup | None:
        ip = _ip_from_reverse(name)
        targets = self._ptr.get(ip or "")
        if not targets:
            return None  # not ours: fall through to the host's resolvers
        if qtype not in ("PTR", "ANY"):
            return Lookup(NOERROR)
        return Lookup(NOERROR, [Record(name, "PTR", t) for t in sorted(targets)])

    def _pod(self, labels: list[str], name: str, qtype: str) -> Lookup:
        if len(labels) <= 1:
            return Lookup(NOERROR) if not labels or labels[0] in self._namespaces else Lookup(NXDOMAIN)
        if len(labels) != 2:
            return Lookup(NXDOMAIN)
        m = _DASHED_V4.match(labels[0])
        if m is None or any(int(g) > 255 for g in m.groups()):
            return Lookup(NXDOMAIN)
        if qtype not in ("A", "ANY"):
            return Lookup(NOERROR)
        return Lookup(NOERROR, [Record(name, "A", ".".join(str(int(g)) for g in m.groups()))])

    def _svc(self, labels: list[str], name: str, qtype: str) -> Lookup:
        if not labels:
            return Lookup(NOERROR)
        if len(labels) == 1:
            return Lookup(NOERROR) if labels[0] in self._namespaces else Lookup(NXDOMAIN)
        ns, svc = labels[-1], labels[-2]
        entry = self.services.get((ns, svc))
        if entry is None:
            return Lookup(NXDOMAIN)
        if len(labels) == 2:
            return self._service(entry, name, qtype)
        if len(labels) == 3:
            return self._endpoint(entry, labels[0], name, qtype)
        if len(labels) == 4 and labels[0].startswith("_") and labels[1].startswith("_"):
            return self._srv(entry, name, qtype, labels[0][1:], labels[1][1:])
        return Lookup(NXDOMAIN)

    def _addresses(self, name: str, qtype: str, ips: Iterable[str]) -> list[Record]:
        want = {"A": 4, "AAAA": 6}.get(qtype)
        return [Record(name, "A" if ipaddress.ip_address(ip).version == 4 else "AAAA", ip) for ip in ips
                if want is None and qtype == "ANY" or ipaddress.ip_address(ip).version == want]

    def _service(self, entry: ServiceEntry, name: str, qtype: str) -> Lookup:
        if entry.kind == "ExternalName":
            if not entry.external_name:
                return Lookup(NOERROR)
            target = entry.external_name.lower()
            return Lookup(NOERROR, [Record(name, "CNAME", target)], chase=target if qtype != "CNAME" else None)
        if qtype == "SRV":
            return self._srv(entry, name, qtype, None, None)
        if entry.kind == "Headless":
            return Lookup(NOERROR, self._addresses(name, qtype, [e.ip for e in self.endpoints(entry)]))
        return Lookup(NOERROR, self._addresses(name, qtype, entry.cluster_ips))

    def _endpoint(self, entry: ServiceEntry, label: str, name: str, qtype: str) -> Lookup:
        matches = [e for e in self.endpoints(entry) if e.label == label]
        if not matches:
            return Lookup(NXDOMAIN)
        return Lookup(NOERROR, self._addresses(name, qtype, [e.ip for e in matches]))

    def _srv(self, entry: ServiceEntry, name: str, qtype: str, port_name: str | None,
             proto: str | None) -> Lookup:
        ports = [p for p in self._ports(entry)
                 if port_name is None or (p.name == port_name and p.protocol.lower() == proto)]
        if entry.kind == "ExternalName" or not ports:
            return Lookup(NOERROR if port_name is None else NXDOMAIN)
        if qtype != "SRV":
            return Lookup(NOERROR)
        fqdn = self.service_name(entry)
        if entry.kind == "Headless":
            targets = [(p.port, f"{e.label}.{fqdn}", e.ip) for p in ports for e in self.endpoints(entry)]
        else:
            targets = [(p.port, fqdn, ip) for p in ports for ip in entry.cluster_ips]
        if not targets:
            return Lookup(NOERROR)
        weight = 100 // len(targets) or 1
        answers = [Record(name, "SRV", (0, weight, port, target)) for port, target, _ in targets]
        extra = {Record(target, "A" if ipaddress.ip_address(ip).version == 4 else "AAAA", ip)
                 for _, target, ip in targets}
        return Lookup(NOERROR, answers, sorted(extra, key=lambda r: (r.name, r.rtype, r.data)))
