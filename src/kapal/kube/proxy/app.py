"""`kapal proxy` as a library: settings, informers, the sync loop, and the health and metrics endpoints.

    await run_proxy(ProxyConfig(kubeconfig=path, hostname_override="node-1"), stop_event)

Rules are first written once the Service and EndpointSlice caches are complete, so a restarted proxy
leaves the previous rules in place (traffic keeps flowing) until it has the whole picture, and then
replaces them in one restore with a full sync that also deletes whatever is stale.

Hairpin traffic (a pod reaching a ClusterIP that lands on a pod of its own bridge) works through
br_netfilter: `bridge-nf-call-iptables=1` makes the bridged reply pass conntrack, which undoes the DNAT.
An endpoint reaching itself is masqueraded (its SEP chain marks traffic from its own address). When
br_netfilter cannot be enabled the proxy says so; `--masquerade-all` then keeps same-bridge traffic working.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.informer import EventHandler, InformerFactory
from kapal.kube.client.kinds import ENDPOINTSLICES, SERVICES
from kapal.kube.meta import prometheus

from .proxier import IptablesProxier
from .rules import RuleConfig
from .runner import BoundedFrequencyRunner

log = logging.getLogger(__name__)

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"


@dataclass
class ProxyConfig:
    """One field per kube-proxy flag kapal supports (defaults as upstream's)."""

    kubeconfig: Path | None = None
    hostname_override: str = ""
    cluster_cidr: str = ""  # comma-separated; IPv4 entries are used
    masquerade_all: bool = False
    nodeport_addresses: tuple[str, ...] = ()  # CIDRs; () = every local address
    sync_period: float = 30.0
    min_sync_period: float = 1.0
    masquerade_bit: int = 14
    localhost_nodeports: bool = True
    healthz_bind_address: str = "0.0.0.0:10256"  # "" disables
    metrics_bind_address: str = "127.0.0.1:10249"  # "" disables
    chain_prefix: str = "KAPAL-"
    full_sync_period: float = 3600.0
    kube_api_qps: float = 0.0
    kube_api_burst: int = 0

    @property
    def node_name(self) -> str:
        return (self.hostname_override or socket.gethostname()).strip().lower()

    def rule_config(self) -> RuleConfig:
        cidrs = []
        for text in filter(None, (c.strip() for c in self.cluster_cidr.split(","))):
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError as e:
                raise errors.Invalid(f"--cluster-cidr {text!r} is not a CIDR: {e}") from e
            if net.version == 4:
                cidrs.append(str(net))
        nodeports = []
        for text in self.nodeport_addresses:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError as e:
                raise errors.Invalid(f"--nodeport-addresses {text!r} is not a CIDR: {e}") from e
            if net.version == 4:
                nodeports.append(str(net))
        localhost = self.localhost_nodeports and (not nodeports or any(
            ipaddress.ip_network(n).overlaps(ipaddress.ip_network("127.0.0.0/8")) for n in nodeports))
        try:
            return RuleConfig(prefix=self.chain_prefix, masquerade_bit=self.masquerade_bit,
                              masquerade_all=self.masquerade_all, cluster_cidrs=tuple(cidrs),
                              nodeport_cidrs=tuple(nodeports), localhost_nodeports=localhost)
        except ValueError as e:
            raise errors.Invalid(str(e)) from e


def host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, "0"
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError as e:
        raise errors.Invalid(f"{what} {text!r} must be IP:PORT") from e


def prepare_host(cfg: RuleConfig, masquerade_all: bool) -> list[str]:
    """Kernel settings Services need; returns warnings for what could not be set."""
    from kapal.network import sysctl

    warnings = []
    sysctl.enable_ip_forward()
    try:
        sysctl.enable_bridge_netfilter()
    except errors.FailedPrecondition as e:
        if not masquerade_all:
            warnings.append(f"{e}; pods reaching a Service backed by a pod on their own bridge will fail "
                            "unless --masquerade-all is set")
    if cfg.localhost_nodeports:
        try:
            sysctl.ensure("net.ipv4.conf.all.route_localnet", "1")
        except errors.FailedPrecondition as e:
            warnings.append(f"{e}; NodePorts will not answer on 127.0.0.1")
    return warnings


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = r = prometheus.Registry()
        self.sync_duration = r.histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                         "SyncProxyRules latency in seconds")
        self.full_duration = r.histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                                         "SyncProxyRules latency in seconds for full resyncs")
        self.partial_duration = r.histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                            "SyncProxyRules latency in seconds for partial resyncs")
        self.programming = r.histogram("kubeproxy_network_programming_duration_seconds",
                                       "In-cluster network programming latency in seconds")
        self.last_sync = r.gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                 "The last time proxy rules were successfully synced")
        self.rules = r.gauge("kubeproxy_sync_proxy_rules_iptables_total",
                             "Total number of iptables rules owned by kube-proxy", ("table",))
        self.failures = r.counter("kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
                                  "Cumulative proxy iptables restore failures")
        self.services = r.gauge("kubeproxy_sync_proxy_rules_services", "Services known to the proxy")


class ProxyServer:
    """The proxier driven by informers, a bounded-frequency sync loop, health and metrics."""

    def __init__(self, config: ProxyConfig, client: ApiClient, informers: InformerFactory) -> None:
        self.config = config
        self.client = client
        self.informers = informers
        self.proxier = IptablesProxier(config.rule_config(), config.node_name)
        self.metrics = ProxyMetrics()
        self.runner = BoundedFrequencyRunner("kapal-proxy sync", self.sync, config.min_sync_period,
                                             config.sync_period)
        self.last_synced = 0.0  # wall clock of the last successful sync
        self.synced_once = asyncio.Event()
        self._runners: list[Any] = []

    # --- events ------------------------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.proxier.pending:
            self.runner.request()

    def _service(self, svc: dict[str, Any]) -> None:
        if (svc.get("metadata", {}).get("labels") or {}).get(PROXY_NAME_LABEL):
            self.proxier.delete_service(svc)  # another proxy implementation serves it
        else:
            self.proxier.update_service(svc)
        self._changed()

    def _service_deleted(self, svc: dict[str, Any]) -> None:
        self.proxier.delete_service(svc)
        self._changed()

    def _slice(self, s: dict[str, Any]) -> None:
        self.proxier.update_slice(s)
        self._changed()

    def _slice_deleted(self, s: dict[str, Any]) -> None:
        self.proxier.delete_slice(s)
        self._changed()

    # --- the sync ----------------------------------------------------------------------------------------------

    async def sync(self) -> None:
        p = self.proxier
        full = p.need_full or time.monotonic() - p.last_full > self.config.full_sync_period
        if not full and not p.dirty:
            if await asyncio.to_thread(p.jumps_in_place):
                self.last_synced = time.time()
                return
            log.warning("kapal proxy: our iptables chains or jumps were removed; resyncing everything")
            full = True
        started = time.monotonic()
        existing = await asyncio.to_thread(p.owned_chains) if full else None
        plan = p.plan(full, existing)
        try:
            await asyncio.to_thread(p.apply, plan)
        except Exception:
            p.failed()
            self.metrics.failures.inc()
            raise
        p.commit(plan)
        done = time.monotonic()
        took = done - started
        self.metrics.sync_duration.observe(took)
        (self.metrics.full_duration if plan.full else self.metrics.partial_duration).observe(took)
        if plan.oldest_change is not None:
            self.metrics.programming.observe(done - plan.oldest_change)
        self.metrics.last_sync.set(time.time())
        for table, n in p.rule_counts().items():
            self.metrics.rules.set(n, table)
        self.metrics.services.set(plan.services)
        self.last_synced = time.time()
        self.synced_once.set()
        log.info("kapal proxy: %s sync of %d services (%d changed): %d chains written, %d deleted in %.3fs",
                 "full" if plan.full else "partial", plan.services, plan.changed, len(plan.write),
                 len(plan.delete), took)

    # --- health ------------------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        if not self.synced_once.is_set():
            return False
        return not self.proxier.pending or time.time() - self.last_synced < 2 * self.config.sync_period

    def health_document(self) -> dict[str, Any]:
        def stamp(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f %z UTC")

        ok = self.healthy()
        return {"lastUpdated": stamp(self.last_synced) if self.last_synced else "", "currentTime": stamp(time.time()),
                "nodeName": self.config.node_name, "nodeHealthy": ok, "nodeEligible": True}

    async def _serve_http(self, address: str, what: str) -> None:
        from aiohttp import web

        host, port = host_port(address, what)
        app = web.Application()

        async def health(_: web.Request) -> web.Response:
            return web.json_response(self.health_document(), status=200 if self.healthy() else 503)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=self.metrics.registry.render(), headers={
                "Content-Type": prometheus.CONTENT_TYPE})

        async def proxy_mode(_: web.Request) -> web.Response:
            return web.Response(text="iptables")

        app.router.add_get("/healthz", health)
        app.router.add_get("/livez", health)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/proxyMode", proxy_mode)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as e:
            await runner.cleanup()
            raise errors.FailedPrecondition(f"{what} {address}: cannot listen: {e.strerror}; pick another "
                                            f"address or port, or pass an empty value to disable it") from None
        self._runners.append(runner)
        log.info("kapal proxy: %s on http://%s:%d", what, host, port)

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        for w in await asyncio.to_thread(prepare_host, self.proxier.cfg, self.config.masquerade_all):
            log.warning("kapal proxy: %s", w)
        services = self.informers.informer(SERVICES)
        slices = self.informers.informer(ENDPOINTSLICES)
        services.add_handler(EventHandler(on_add=self._service, on_update=lambda _, new: self._service(new),
                                          on_delete=self._service_deleted))
        slices.add_handler(EventHandler(on_add=self._slice, on_update=lambda _, new: self._slice(new),
                                        on_delete=self._slice_deleted))
        try:
            if self.config.healthz_bind_address:
                await self._serve_http(self.config.healthz_bind_address, "--healthz-bind-address")
            if self.config.metrics_bind_address and \
                    self.config.metrics_bind_address != self.config.healthz_bind_address:
                await self._serve_http(self.config.metrics_bind_address, "--metrics-bind-address")
            self.informers.start()
            waiting = asyncio.ensure_future(self.informers.wait_for_sync(services, slices))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                waiting.cancel()
                return
            self.runner.request()
            await self.runner.run(stop)
        finally:
            for r in self._runners:
                await r.cleanup()
            self._runners = []


async def run_proxy(config: ProxyConfig, stop: asyncio.Event, *, client: ApiClient | None = None,
                    informers: InformerFactory | None = None) -> None:
    """Program Services into iptables until `stop` is set. Pass `client`/`informers` to share them in-process.
    The rules stay in place after `stop` (as kube-proxy leaves them); `cleanup_rules(prefix)` removes them."""
    own_client = client is None
    if client is None:
        if config.kubeconfig is None:
            raise ValueError("run_proxy needs a kubeconfig or a client")
        from kapal.kube.pki import load_kubeconfig

        client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(config.kubeconfig),
                                                        user_agent="kube-proxy/kapal", qps=config.kube_api_qps,
                                                        burst=config.kube_api_burst))
    factory = informers or InformerFactory(client)
    server = ProxyServer(config, client, factory)
    try:
        await server.run(stop)
    finally:
        if informers is None:
            await factory.stop()
        if own_client:
            await client.close()


def cleanup_rules(prefix: str = "KAPAL-") -> list[str]:
    """Remove every chain and jump the proxy with this prefix made (kube-proxy --cleanup)."""
    from .proxier import cleanup
    from .rules import ChainNames

    return cleanup(ChainNames(prefix))

