"""The proxy's state and its one operation: bring the kernel's rules in line with Services and EndpointSlices.

Informer handlers call `update_service`, `delete_service`, `update_slice`, `delete_slice`; each marks one
Service dirty. `plan()` (on the event loop, pure) renders the dirty Services and decides what to write:

- a *full* sync (the first one, after a failure, when someone removed our chains, and now and then) lists
  the chains we own in the kernel, rewrites every chain we want and deletes every owned chain we do not
  want - so nothing stale survives a restart or a crash;
- a *partial* sync rewrites only the chains whose rules changed (the dirty Services' chains and the shared
  dispatch chains) and deletes the chains those Services no longer need.

`apply(plan)` (blocking: run it in a thread) sends the plan in one `iptables-restore --noflush`, then makes
sure the built-in chains jump into ours. `commit(plan)` records what is now in the kernel; a failed apply
calls `failed()` instead, which forces the next sync to be full.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, field

from kapal.network.iptables import Iptables

from .conntrack import StaleFlow
from .model import Obj, endpoints_by_port, service_ports, slice_service, usable_endpoints
from .rules import FILTER, NAT, ChainNames, RuleConfig, ServiceRules, dispatch_chains, render_port, restore_text

log = logging.getLogger(__name__)

ServiceKey = tuple[str, str]
ChainKey = tuple[str, str]
FlowKey = tuple[str, str | None, int]  # (protocol, destination or None for "any local address", port)


def _key(obj: Obj) -> ServiceKey:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "default", meta["name"])


@dataclass
class SyncPlan:
    full: bool
    write: dict[ChainKey, list[str]]
    delete: set[ChainKey]
    services: int
    changed: int
    oldest_change: float | None = None  # monotonic time of the oldest change this plan carries
    text: str = field(default="", repr=False)
    stale_flows: list[StaleFlow] = field(default_factory=list)  # UDP/SCTP conntrack entries to forget afterwards

    @property
    def empty(self) -> bool:
        return not self.write and not self.delete


class IptablesProxier:
    def __init__(self, cfg: RuleConfig, node_name: str = "", iptables: Iptables | None = None) -> None:
        self.cfg = cfg
        self.node_name = node_name
        self.names = ChainNames(cfg.prefix)
        self.iptables = iptables or Iptables()
        self.services: dict[ServiceKey, Obj] = {}
        self.slices: dict[ServiceKey, dict[str, Obj]] = {}
        self.rendered: dict[ServiceKey, ServiceRules] = {}
        self.flows: dict[ServiceKey, dict[FlowKey, frozenset[str]]] = {}
        self.programmed: dict[ChainKey, list[str]] = {}
        self.dirty: dict[ServiceKey, float] = {}
        self.need_full = True
        self.last_full = 0.0

    # --- informer events ---------------------------------------------------------------------------------------

    def _touch(self, key: ServiceKey) -> None:
        self.dirty.setdefault(key, time.monotonic())

    def update_service(self, svc: Obj) -> None:
        key = _key(svc)
        old = self.services.get(key)
        self.services[key] = svc
        if old is None or old.get("spec") != svc.get("spec"):
            self._touch(key)

    def delete_service(self, svc: Obj) -> None:
        key = _key(svc)
        if self.services.pop(key, None) is not None:
            self._touch(key)

    def update_slice(self, slice_: Obj) -> None:
        key = slice_service(slice_)
        if key is None:
            return
        name = slice_["metadata"]["name"]
        bucket = self.slices.setdefault(key, {})
        old = bucket.get(name)
        bucket[name] = slice_
        if old is None or (old.get("endpoints"), old.get("ports")) != (slice_.get("endpoints"), slice_.get("ports")):
            self._touch(key)

    def delete_slice(self, slice_: Obj) -> None:
        key = slice_service(slice_)
        if key is None:
            return
        bucket = self.slices.get(key, {})
        if bucket.pop(slice_["metadata"]["name"], None) is not None:
            self._touch(key)
        if not bucket:
            self.slices.pop(key, None)

    @property
    def pending(self) -> bool:
        return bool(self.dirty) or self.need_full

    # --- planning ----------------------------------------------------------------------------------------------

    def render_service(self, key: ServiceKey) -> ServiceRules | None:
        """The Service's rules (None: it has none); also records where its UDP/SCTP traffic may go."""
        svc = self.services.get(key)
        ports = service_ports(svc) if svc is not None else []
        flows: dict[FlowKey, frozenset[str]] = {}
        if not ports:
            self.flows.pop(key, None)
            return None
        by_port = endpoints_by_port(self.slices.get(key, {}).values())
        out = ServiceRules()
        for sp in ports:
            cluster, local = usable_endpoints(sp, by_port.get((sp.name.port, sp.protocol), []), self.node_name)
            out.extend(render_port(sp, cluster, local, self.names, self.cfg))
            if sp.protocol != "TCP":
                flows[(sp.protocol, sp.cluster_ip, sp.port)] = frozenset(e.ip for e in cluster)
                external = frozenset(e.ip for e in (local if sp.external_local else cluster))
                if sp.node_port:
                    flows[(sp.protocol, None, sp.node_port)] = external
                for ip in sp.external_ips:
                    flows[(sp.protocol, ip, sp.port)] = external
        self.flows[key] = flows
        return out

    def _stale(self, key: ServiceKey, before: dict[FlowKey, frozenset[str]],
               appeared: bool = False) -> list[StaleFlow]:
        """Flows to forget: endpoints that went, and (`appeared`) un-NATed flows to addresses that now have
        endpoints where they had none."""
        after = self.flows.get(key, {})
        out = [StaleFlow(proto, dst, port, ip) for (proto, dst, port), ips in before.items()
               for ip in sorted(ips - after.get((proto, dst, port), frozenset()))]
        if appeared:
            out += [StaleFlow(proto, dst, port, None) for (proto, dst, port), ips in after.items()
                    if ips and dst is not None and not before.get((proto, dst, port))]
        return out

    def _dispatch(self) -> dict[ChainKey, list[str]]:
        return dispatch_chains(self.names, self.cfg, (self.rendered[k] for k in sorted(self.rendered)))

    def plan(self, full: bool = False, existing: set[ChainKey] | None = None) -> SyncPlan:
        """Render what changed; `existing` (owned chains now in the kernel) is needed for a full plan."""
        full = full or self.need_full
        dirty, self.dirty = self.dirty, {}
        oldest = min(dirty.values()) if dirty else None
        if full:
            before = self.flows
            self.rendered, self.flows = {}, {}
            for key in self.services:
                rules = self.render_service(key)
                if rules is not None:
                    self.rendered[key] = rules
            write = {(NAT, c): lines for r in self.rendered.values() for c, lines in r.chains.items()}
            write.update(self._dispatch())
            delete = (existing or set()) - set(write)
            stale = [f for key, flows in before.items() for f in self._stale(key, flows)]
            return SyncPlan(True, write, delete, len(self.services), len(dirty), oldest,
                            restore_text(write, sorted(delete)), stale)
        write: dict[ChainKey, list[str]] = {}
        delete: set[ChainKey] = set()
        stale: list[StaleFlow] = []
        for key in dirty:
            old = self.rendered.pop(key, None)
            before = self.flows.get(key, {})
            new = self.render_service(key)
            stale += self._stale(key, before, appeared=True)
            if new is not None:
                self.rendered[key] = new
            new_chains = new.chains if new is not None else {}
            for chain, lines in new_chains.items():
                if self.programmed.get((NAT, chain)) != lines:
                    write[(NAT, chain)] = lines
            for chain in (old.chains if old is not None else {}):
                if chain not in new_chains and (NAT, chain) in self.programmed:
                    delete.add((NAT, chain))
        for ck, lines in self._dispatch().items():
            if self.programmed.get(ck) != lines:
                write[ck] = lines
        return SyncPlan(False, write, delete, len(self.services), len(dirty), oldest,
                        restore_text(write, sorted(delete)), stale)

    # --- the kernel --------------------------------------------------------------------------------------------

    def owned_chains(self) -> set[ChainKey]:
        """The chains of our prefix that exist now (one iptables-save per table)."""
        return {(table, c) for table in (NAT, FILTER) for c in self.iptables.chains(table, self.names.prefix)
                if self.names.owns(table, c)}

    def apply(self, plan: SyncPlan) -> None:
        """Blocking: one iptables-restore, the jumps from the built-in chains (full syncs only), then the
        conntrack entries of UDP/SCTP flows whose endpoint went (best effort: the rules are what matters)."""
        if plan.text:
            self.iptables.restore(plan.text)
        if plan.full:
            self.ensure_jumps()
        if plan.stale_flows:
            from .conntrack import clear

            try:
                n = clear(plan.stale_flows)
                log.debug("forgot %d conntrack entries of removed UDP/SCTP endpoints", n)
            except OSError as e:
                log.warning("cannot clear conntrack entries of removed endpoints (%s); their flows time out "
                            "instead", e)

    def ensure_jumps(self) -> None:
        for table, chain, rule in reversed(self.names.jumps(self.cfg)):
            self.iptables.ensure_rule(table, chain, *rule, first=True)

    def jumps_in_place(self) -> bool:
        """The canary: our dispatch chain exists and the built-in chains still jump into ours."""
        if not self.iptables.has_chain(NAT, self.names.services):
            return False
        return all(self.iptables.has_rule(table, chain, *rule) for table, chain, rule in self.names.jumps(self.cfg))

    def commit(self, plan: SyncPlan) -> None:
        if plan.full:
            self.programmed = dict(plan.write)
            self.need_full = False
            self.last_full = time.monotonic()
        else:
            self.programmed.update(plan.write)
        for ck in plan.delete:
            self.programmed.pop(ck, None)

    def failed(self) -> None:
        self.need_full = True

    def sync(self, full: bool = False) -> SyncPlan:
        """plan + apply + commit in the caller's thread (tests, benchmarks, one-shot use)."""
        full = full or self.need_full
        plan = self.plan(full, self.owned_chains() if full else None)
        try:
            self.apply(plan)
        except BaseException:
            self.failed()
            raise
        self.commit(plan)
        return plan

    def rule_counts(self) -> dict[str, int]:
        counts = {NAT: 0, FILTER: 0}
        for (table, _), lines in self.programmed.items():
            counts[table] = counts.get(table, 0) + len(lines)
        return counts

    # --- removal -----------------------------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove every rule and chain this prefix owns (and the jumps into them); 'table/chain' removed."""
        return cleanup(self.names, self.iptables)


def cleanup(names: ChainNames, iptables: Iptables | None = None) -> list[str]:
    """`kapal proxy --cleanup`: delete the owned chains of `names.prefix` in nat and filter, one restore each."""
    ipt = iptables or Iptables()
    removed: list[str] = []
    for table in (NAT, FILTER):
        lines = ipt.save(table).splitlines()
        owned = {ln[1:].split()[0] for ln in lines if ln.startswith(":") and names.owns(table, ln[1:].split()[0])}
        if not owned:
            continue
        deletes = []
        for ln in lines:
            if not ln.startswith("-A "):
                continue
            args = shlex.split(ln)
            target = args[args.index("-j") + 1] if "-j" in args else None
            if target in owned and args[1] not in owned:
                deletes.append(ln.replace("-A ", "-D ", 1))
        text = "\n".join([f"*{table}", *[f":{c} - [0:0]" for c in sorted(owned)], *deletes,
                          *[f"-X {c}" for c in sorted(owned)], "COMMIT"]) + "\n"
        ipt.restore(text)
        removed += [f"{table}/{c}" for c in sorted(owned)]
    return removed
