"""iptables rules for Services, rendered as `iptables-restore` lines (pure: no I/O here).

The layout follows kube-proxy's iptables mode, under our own chain prefix (default `KAPAL-`):

    nat PREROUTING, OUTPUT  -> {p}SERVICES        one rule per cluster IP (and external IP) port
                                                  last: local destinations -> {p}NODEPORTS
    nat {p}NODEPORTS        -> {p}EXT-<hash>      one rule per node port
    nat {p}EXT-<hash>       mark for masquerade (or, externalTrafficPolicy Local: keep the client's address
                            and use {p}SVL-<hash>, this node's endpoints only), then {p}SVC-<hash>
    nat {p}SVC-<hash>       mark off-cluster clients; ClientIP affinity (`recent` module); then one rule per
                            endpoint, `statistic --probability 1/(n-i)` so each gets 1/n of new connections
    nat {p}SEP-<hash>       mark hairpin traffic (an endpoint reaching itself), DNAT to the endpoint
    nat POSTROUTING         -> {p}PROXY-POSTROUTING  MASQUERADE what carries the mark (bit 14, 0x4000)
    filter INPUT/FORWARD/OUTPUT -> {p}SERVICES, {p}EXTERNAL-SERVICES  REJECT ports without endpoints
    filter FORWARD          -> {p}PROXY-FORWARD  accept marked and established service traffic
    filter INPUT, OUTPUT    -> {p}PROXY-FIREWALL drop martian traffic to 127/8 (route_localnet is on)

Hashed names are base32(sha256(service port, protocol[, endpoint]))[:16], so a Service keeps its chains
across restarts and a renamed endpoint gets a new chain. `ServiceRules` holds one Service's share of every
chain, so a sync can rewrite only the Services that changed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import Endpoint, ServicePort

NAT = "nat"
FILTER = "filter"
MAX_CHAIN_NAME = 28  # XT_EXTENSION_MAXNAMELEN - 1
_HASHED_KINDS = ("SVC", "SEP", "EXT", "SVL")


@dataclass(frozen=True)
class RuleConfig:
    prefix: str = "KAPAL-"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    cluster_cidrs: tuple[str, ...] = ()  # IPv4 pod ranges: traffic from elsewhere to a cluster IP is masqueraded
    nodeport_cidrs: tuple[str, ...] = ()  # () = every local address
    localhost_nodeports: bool = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,6}-", self.prefix):
            raise ValueError(f"chain prefix {self.prefix!r} must be 1-7 letters/digits and a '-' (e.g. KAPAL-), "
                             f"so that names stay within iptables' {MAX_CHAIN_NAME} characters")
        if not 0 <= self.masquerade_bit <= 31:
            raise ValueError(f"masquerade bit {self.masquerade_bit} must be within 0..31")

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True)
class ChainNames:
    """Every chain name the proxy owns, for one prefix."""

    prefix: str

    @property
    def services(self) -> str:
        return self.prefix + "SERVICES"

    @property
    def nodeports(self) -> str:
        return self.prefix + "NODEPORTS"

    @property
    def mark_masq(self) -> str:
        return self.prefix + "MARK-MASQ"

    @property
    def postrouting(self) -> str:
        return self.prefix + "PROXY-POSTROUTING"

    @property
    def external_services(self) -> str:
        return self.prefix + "EXTERNAL-SERVICES"

    @property
    def forward(self) -> str:
        return self.prefix + "PROXY-FORWARD"

    @property
    def firewall(self) -> str:
        return self.prefix + "PROXY-FIREWALL"

    def static(self) -> dict[str, tuple[str, ...]]:
        return {NAT: (self.services, self.nodeports, self.mark_masq, self.postrouting),
                FILTER: (self.services, self.external_services, self.forward, self.firewall)}

    def hashed(self, kind: str, *parts: str) -> str:
        digest = hashlib.sha256("/".join(parts).encode()).digest()
        return f"{self.prefix}{kind}-{base64.b32encode(digest).decode()[:16]}"

    def svc(self, sp: ServicePort) -> str:
        return self.hashed("SVC", str(sp.name), sp.protocol)

    def ext(self, sp: ServicePort) -> str:
        return self.hashed("EXT", str(sp.name), sp.protocol)

    def svl(self, sp: ServicePort) -> str:
        return self.hashed("SVL", str(sp.name), sp.protocol)

    def sep(self, sp: ServicePort, ep: Endpoint) -> str:
        return self.hashed("SEP", str(sp.name), sp.protocol, str(ep))

    def owns(self, table: str, chain: str) -> bool:
        if chain in self.static().get(table, ()):
            return True
        if table != NAT or not chain.startswith(self.prefix):
            return False
        kind, _, digest = chain[len(self.prefix):].partition("-")
        return kind in _HASHED_KINDS and bool(re.fullmatch(r"[A-Z2-7]{16}", digest))

    def jumps(self, cfg: RuleConfig) -> list[tuple[str, str, tuple[str, ...]]]:
        """(table, built-in chain, rule) for each jump into our chains, in the order they should appear."""
        new = ("-m", "conntrack", "--ctstate", "NEW")
        out = [
            (NAT, "PREROUTING", ("-m", "comment", "--comment", "kapal service portals", "-j", self.services)),
            (NAT, "OUTPUT", ("-m", "comment", "--comment", "kapal service portals", "-j", self.services)),
            (NAT, "POSTROUTING", ("-m", "comment", "--comment", "kapal postrouting rules", "-j", self.postrouting)),
            (FILTER, "INPUT", (*new, "-m", "comment", "--comment", "kapal externally-visible service portals",
                               "-j", self.external_services)),
            (FILTER, "FORWARD", ("-m", "comment", "--comment", "kapal forwarding rules", "-j", self.forward)),
            (FILTER, "FORWARD", (*new, "-m", "comment", "--comment", "kapal service portals", "-j", self.services)),
            (FILTER, "FORWARD", (*new, "-m", "comment", "--comment", "kapal externally-visible service portals",
                                 "-j", self.external_services)),
            (FILTER, "OUTPUT", (*new, "-m", "comment", "--comment", "kapal service portals", "-j", self.services)),
        ]
        if cfg.localhost_nodeports:
            out += [(FILTER, "INPUT", ("-j", self.firewall)), (FILTER, "OUTPUT", ("-j", self.firewall))]
        return out


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def comment(text: str) -> str:
    return f"-m comment --comment {quote(text)}"


@dataclass
class ServiceRules:
    """One Service's rules: the chains it owns outright (nat) and its lines in the shared dispatch chains."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)

    def extend(self, other: ServiceRules) -> None:
        self.chains.update(other.chains)
        self.services += other.services
        self.nodeports += other.nodeports
        self.filter_services += other.filter_services
        self.filter_external += other.filter_external


def _match(sp: ServicePort, port: int) -> str:
    proto = sp.protocol.lower()
    return f"-p {proto} -m {proto} --dport {port}"


def render_port(sp: ServicePort, cluster: list[Endpoint], local: list[Endpoint], names: ChainNames,
                cfg: RuleConfig) -> ServiceRules:
    """The rules of one service port, given the endpoints `usable_endpoints` chose."""
    out = ServiceRules()
    label = str(sp.name)
    proto = sp.protocol.lower()
    nat_s, filt_s, filt_x = names.services, names.services, names.external_services
    has_external = bool(sp.node_port or sp.external_ips)
    external_eps = local if sp.external_local else cluster
    if not cluster:
        reason = f"{label} has no endpoints"
        out.filter_services.append(f"-A {filt_s} -d {sp.cluster_ip}/32 {_match(sp, sp.port)} {comment(reason)} "
                                   "-j REJECT --reject-with icmp-port-unreachable")
        for ip in sp.external_ips:
            out.filter_services.append(f"-A {filt_s} -d {ip}/32 {_match(sp, sp.port)} {comment(reason)} "
                                       "-j REJECT --reject-with icmp-port-unreachable")
    if has_external and not external_eps:
        # upstream: no endpoints at all -> REJECT; Local policy with no local endpoints -> DROP
        target = "DROP" if cluster else "REJECT --reject-with icmp-port-unreachable"
        reason = f"{label} has no local endpoints" if cluster else f"{label} has no endpoints"
        if sp.node_port:
            out.filter_external.append(f"-A {filt_x} -m addrtype --dst-type LOCAL {_match(sp, sp.node_port)} "
                                       f"{comment(reason)} -j {target}")
        for ip in sp.external_ips:
            out.filter_external.append(f"-A {filt_x} -d {ip}/32 {_match(sp, sp.port)} {comment(reason)} -j {target}")
    if not cluster and not external_eps:
        return out

    svc = names.svc(sp)
    seps: dict[Endpoint, str] = {}
    for ep in {*cluster, *external_eps}:
        seps[ep] = sep = names.sep(sp, ep)
        recent = f" -m recent --set --name {sep} --mask 255.255.255.255 --rsource" if sp.affinity_seconds else ""
        out.chains[sep] = [
            f"-A {sep} -s {ep.ip}/32 {comment(label)} -j {names.mark_masq}",
            f"-A {sep} -p {proto} {comment(label)}{recent} -m {proto} -j DNAT --to-destination {ep.ip}:{ep.port}",
        ]

    def balance(chain: str, eps: list[Endpoint]) -> list[str]:
        lines = []
        if sp.affinity_seconds:
            lines += [f"-A {chain} {comment(f'{label} -> {ep}')} -m recent --rcheck --seconds {sp.affinity_seconds}"
                      f" --reap --name {seps[ep]} --mask 255.255.255.255 --rsource -j {seps[ep]}" for ep in eps]
        n = len(eps)
        for i, ep in enumerate(eps):
            chance = f" -m statistic --mode random --probability {1.0 / (n - i):.10f}" if i < n - 1 else ""
            lines.append(f"-A {chain} {comment(f'{label} -> {ep}')}{chance} -j {seps[ep]}")
        return lines

    if cluster:
        dest = f"-d {sp.cluster_ip}/32 {_match(sp, sp.port)}"
        out.services.append(f"-A {nat_s} {dest} {comment(f'{label} cluster IP')} -j {svc}")
        rules = []
        if cfg.masquerade_all:
            rules.append(f"-A {svc} {dest} {comment(f'{label} cluster IP')} -j {names.mark_masq}")
        elif cfg.cluster_cidrs:
            rules += [f"-A {svc} ! -s {cidr} {dest} {comment(f'{label} cluster IP')} -j {names.mark_masq}"
                      for cidr in cfg.cluster_cidrs]
        out.chains[svc] = rules + balance(svc, cluster)

    if has_external and external_eps:
        ext = names.ext(sp)
        if sp.node_port:
            out.nodeports.append(f"-A {names.nodeports} {_match(sp, sp.node_port)} {comment(label)} -j {ext}")
        for ip in sp.external_ips:
            out.services.append(f"-A {nat_s} -d {ip}/32 {_match(sp, sp.port)} {comment(f'{label} external IP')} "
                                f"-j {ext}")
        if sp.external_local:
            svl = names.svl(sp)
            rules = [f"-A {ext} -s {cidr} {comment('pod traffic for ' + label + ' external destinations')} -j {svc}"
                     for cidr in cfg.cluster_cidrs if cluster]
            if cluster:
                rules += [f"-A {ext} -m addrtype --src-type LOCAL {comment('masquerade LOCAL traffic for ' + label)}"
                          f" -j {names.mark_masq}",
                          f"-A {ext} -m addrtype --src-type LOCAL {comment('route LOCAL traffic for ' + label)}"
                          f" -j {svc}"]
            rules.append(f"-A {ext} -j {svl}")
            out.chains[ext] = rules
            out.chains[svl] = balance(svl, local)
        else:
            out.chains[ext] = [f"-A {ext} {comment('masquerade traffic for ' + label + ' external destinations')} "
                               f"-j {names.mark_masq}", f"-A {ext} -j {svc}"]
    return out


def dispatch_chains(names: ChainNames, cfg: RuleConfig, parts: Iterable[ServiceRules]) -> dict[tuple[str, str],
                                                                                               list[str]]:
    """The shared chains, (table, chain) -> lines: the Services' dispatch rules plus the fixed rules."""
    nat_services: list[str] = []
    nodeports: list[str] = []
    filter_services: list[str] = []
    filter_external: list[str] = []
    for p in parts:
        nat_services += p.services
        nodeports += p.nodeports
        filter_services += p.filter_services
        filter_external += p.filter_external
    local = "-m addrtype --dst-type LOCAL"
    text = comment("kapal service nodeports; NOTE: this must be the last rule in this chain")
    if cfg.nodeport_cidrs:
        nat_services += [f"-A {names.services} -d {cidr} {text} {local} -j {names.nodeports}"
                         for cidr in cfg.nodeport_cidrs]
    elif cfg.localhost_nodeports:
        nat_services.append(f"-A {names.services} {text} {local} -j {names.nodeports}")
    else:
        nat_services.append(f"-A {names.services} ! -d 127.0.0.0/8 {text} {local} -j {names.nodeports}")
    mark = cfg.mark
    out = {
        (NAT, names.services): nat_services,
        (NAT, names.nodeports): nodeports,
        (NAT, names.mark_masq): [f"-A {names.mark_masq} -j MARK --or-mark {mark}"],
        (NAT, names.postrouting): [
            f"-A {names.postrouting} -m mark ! --mark {mark}/{mark} -j RETURN",
            f"-A {names.postrouting} -j MARK --xor-mark {mark}",
            f"-A {names.postrouting} {comment('kapal service traffic requiring SNAT')} -j MASQUERADE --random-fully",
        ],
        (FILTER, names.services): filter_services,
        (FILTER, names.external_services): filter_external,
        (FILTER, names.forward): [
            f"-A {names.forward} {comment('kapal forwarding rules')} -m mark --mark {mark}/{mark} -j ACCEPT",
            f"-A {names.forward} {comment('kapal forwarding conntrack rule')} -m conntrack --ctstate "
            "RELATED,ESTABLISHED -j ACCEPT",
        ],
        (FILTER, names.firewall): [
            f"-A {names.firewall} ! -s 127.0.0.0/8 -d 127.0.0.0/8 "
            f"{comment('block incoming localnet connections')} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
            "-j DROP"] if cfg.localhost_nodeports else [],
    }
    return out


def restore_text(write: dict[tuple[str, str], list[str]], delete: Iterable[tuple[str, str]]) -> str:
    """One `iptables-restore --noflush` input: chains in `write` are declared (so emptied) and refilled,
    chains in `delete` are declared and removed (after every rewrite, so no rule still jumps to them)."""
    tables: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for (table, chain), lines in write.items():
        decl, body, _ = tables.setdefault(table, ([], [], []))
        decl.append(f":{chain} - [0:0]")
        body.extend(lines)
    for table, chain in delete:
        decl, _, tail = tables.setdefault(table, ([], [], []))
        decl.append(f":{chain} - [0:0]")
        tail.append(f"-X {chain}")
    out: list[str] = []
    for table in sorted(tables, key=lambda t: (t != FILTER, t)):
        decl, body, tail = tables[table]
        # iptables-nft restores 2-3x faster when chains are declared in name order (measured: 1,000 Services)
        out += [f"*{table}", *sorted(decl), *body, *tail, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""
