"""`kapal dns` as a library: the cluster DNS server, fed by informers, and (optionally) its own Service.

    await run_dns(DnsConfig(kubeconfig=path, listen_address=node_ip, publish=True), stop_event)

Where it runs: on the host, as a node daemon (`kapal up`), listening on the node's address. With
`publish`, it keeps the `kube-system/kube-dns` Service (ClusterIP 10.96.0.10 by default; ports 53/UDP,
53/TCP, 9153/TCP; no selector) and an EndpointSlice `kube-dns-<node>` plus the Endpoints object pointing
at its own address, so the proxy DNATs the cluster DNS address to it. Pods reach it through the ClusterIP
like any Service; the host reaches it there too. Without `publish` (a Deployment behind a selector Service,
kubeadm-style), the endpoint controllers do that job.

Health as CoreDNS serves it: `:8080/health` ("OK" while running) and `:8181/ready` (200 once the caches
are synced); `:9153/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.informer import EventHandler, InformerFactory
from kapal.kube.client.kinds import ENDPOINTS, ENDPOINTSLICES, SERVICES
from kapal.kube.meta import prometheus

from .forward import AnswerCache, Forwarder, Upstream, upstreams_from_resolv_conf
from .records import ClusterRecords
from .server import DnsServer

log = logging.getLogger(__name__)

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
MANAGED_BY = "kapal-dns"
SERVICE_LABELS = {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}


@dataclass
class DnsConfig:
    kubeconfig: Path | None = None
    cluster_domain: str = "cluster.local"
    listen_address: str = ""  # "" = this node's primary IPv4 address
    port: int = 53
    resolv_conf: str = "/etc/resolv.conf"
    upstreams: tuple[str, ...] = ()  # IP[:PORT]; overrides resolv_conf
    publish: bool = False
    service_ip: str = "10.96.0.10"
    node_name: str = ""
    ttl: int = 5
    cache_size: int = 10000
    max_cache_ttl: float = 30.0
    negative_ttl: float = 5.0
    metrics_bind_address: str = ":9153"  # "" disables
    health_bind_address: str = ":8080"  # "" disables
    ready_bind_address: str = ":8181"  # "" disables
    kube_api_qps: float = 0.0
    kube_api_burst: int = 0
    state: dict[str, Any] = field(default_factory=dict, repr=False)  # the running server, for callers in-process

    def address(self) -> str:
        if self.listen_address:
            return self.listen_address
        from kapal.kube.pki import primary_ipv4

        ip = primary_ipv4()
        if ip is None:
            raise errors.FailedPrecondition("no IPv4 address to serve DNS on; pass --dns-address")
        return str(ip)

    @property
    def node(self) -> str:
        return (self.node_name or socket.gethostname()).strip().lower()


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        return (host.strip("[]") or "0.0.0.0"), int(port)
    except ValueError as e:
        raise errors.Invalid(f"{what} {text!r} must be [IP]:PORT") from e


def dns_service(ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": dict(SERVICE_LABELS),
                         "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                               {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}


def dns_endpoint_slice(node: str, ip: str, port: int, metrics_port: int) -> dict[str, Any]:
    ports = [{"name": "dns", "port": port, "protocol": "UDP"}, {"name": "dns-tcp", "port": port, "protocol": "TCP"}]
    if metrics_port:
        ports.append({"name": "metrics", "port": metrics_port, "protocol": "TCP"})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{DNS_SERVICE}-{node}", "namespace": DNS_NAMESPACE,
                         "labels": {"kubernetes.io/service-name": DNS_SERVICE,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY, **SERVICE_LABELS}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": node}]}


class Publisher:
    """Keeps kube-system/kube-dns, its EndpointSlice for this server, and the Endpoints object in place."""

    def __init__(self, client: ApiClient, config: DnsConfig, ip: str, port: int, metrics_port: int) -> None:
        self.client = client
        self.config = config
        self.ip, self.port, self.metrics_port = ip, port, metrics_port

    async def ensure(self) -> None:
        try:
            svc = await self.client.get(SERVICES, DNS_SERVICE, DNS_NAMESPACE)
        except errors.NotFound:
            svc = await self.client.create(SERVICES, dns_service(self.config.service_ip), DNS_NAMESPACE,
                                           field_manager=MANAGED_BY)
        if (svc.get("spec") or {}).get("clusterIP") != self.config.service_ip:
            log.warning("kube-system/kube-dns has ClusterIP %s, not %s; pods' resolv.conf must name that address",
                        svc["spec"].get("clusterIP"), self.config.service_ip)
        if (svc.get("spec") or {}).get("selector"):
            log.warning("kube-system/kube-dns selects pods; this DNS server adds itself next to them")
        body = dns_endpoint_slice(self.config.node, self.ip, self.port, self.metrics_port)
        name = body["metadata"]["name"]
        try:
            live = await self.client.get(ENDPOINTSLICES, name, DNS_NAMESPACE)
            if (live.get("endpoints"), live.get("ports")) != (body["endpoints"], body["ports"]):
                body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                await self.client.replace(ENDPOINTSLICES, body, field_manager=MANAGED_BY)
        except errors.NotFound:
            await self.client.create(ENDPOINTSLICES, body, DNS_NAMESPACE, field_manager=MANAGED_BY)
        await self._endpoints(add=True)

    async def _endpoints(self, add: bool) -> None:
        """The legacy Endpoints object (kubectl get ep / describe): our address in or out of its one subset."""
        for _ in range(5):
            try:
                live = await self.client.get(ENDPOINTS, DNS_SERVICE, DNS_NAMESPACE)
            except errors.NotFound:
                live = None
            subsets = (live or {}).get("subsets") or []
            addresses = [a for s in subsets for a in s.get("addresses") or [] if a.get("ip") != self.ip]
            if add:
                addresses.append({"ip": self.ip, "nodeName": self.config.node})
            ports = [{"name": "dns", "port": self.port, "protocol": "UDP"},
                     {"name": "dns-tcp", "port": self.port, "protocol": "TCP"}]
            if self.metrics_port:
                ports.append({"name": "metrics", "port": self.metrics_port, "protocol": "TCP"})
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE,
                                 "labels": {**SERVICE_LABELS, "endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": [{"addresses": addresses, "ports": ports}] if addresses else []}
            try:
                if live is None:
                    if add:
                        await self.client.create(ENDPOINTS, body, DNS_NAMESPACE, field_manager=MANAGED_BY)
                    return
                if live.get("subsets") == body["subsets"]:
                    return
                body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                await self.client.replace(ENDPOINTS, body, field_manager=MANAGED_BY)
                return
            except (errors.Conflict, errors.AlreadyExists):
                continue

    async def withdraw(self) -> None:
        """On a clean stop: this server's slice and address go, so the proxy stops sending queries here."""
        try:
            await self.client.delete(ENDPOINTSLICES, f"{DNS_SERVICE}-{self.config.node}", DNS_NAMESPACE)
        except errors.NotFound:
            pass
        await self._endpoints(add=False)


async def _http(address: str, what: str, routes: dict[str, Any]) -> Any:
    from aiohttp import web

    host, port = _host_port(address, what)
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as e:
        await runner.cleanup()
        raise errors.FailedPrecondition(f"{what} {address}: cannot listen: {e.strerror}") from None
    return runner


async def run_dns(config: DnsConfig, stop: asyncio.Event, *, client: ApiClient | None = None,
                  informers: InformerFactory | None = None) -> None:
    """Serve cluster DNS until `stop` is set. `config.state["server"]` is the DnsServer once it listens."""
    from aiohttp import web

    own_client = client is None
    if client is None:
        if config.kubeconfig is None:
            raise ValueError("run_dns needs a kubeconfig or a client")
        from kapal.kube.pki import load_kubeconfig

        client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(config.kubeconfig), user_agent="kapal-dns",
                                                        qps=config.kube_api_qps, burst=config.kube_api_burst))
    factory = informers or InformerFactory(client)
    records = ClusterRecords(config.cluster_domain, config.ttl)
    host = config.address()
    if config.upstreams:
        upstreams = [Upstream.parse(u) for u in config.upstreams]
    else:
        upstreams = upstreams_from_resolv_conf(config.resolv_conf, [(host, config.port)])
        if not upstreams:
            log.warning("kapal dns: no usable nameserver in %s; names outside %s will fail (SERVFAIL)",
                        config.resolv_conf, config.cluster_domain)
    forwarder = Forwarder(upstreams, AnswerCache(config.cache_size, config.max_cache_ttl, config.negative_ttl))
    server = DnsServer(records, forwarder, f"dns://{host}:{config.port}")
    services = factory.informer(SERVICES)
    slices = factory.informer(ENDPOINTSLICES)
    services.add_handler(EventHandler(on_add=records.update_service,
                                      on_update=lambda _, new: records.update_service(new),
                                      on_delete=records.delete_service))
    slices.add_handler(EventHandler(on_add=records.update_slice, on_update=lambda _, new: records.update_slice(new),
                                    on_delete=records.delete_slice))
    runners = []
    publisher: Publisher | None = None
    try:
        address = await server.start(host, config.port)
        config.state["server"] = server
        log.info("kapal dns: serving %s on %s:%d (UDP, TCP); forwarding to %s", config.cluster_domain, *address,
                 ", ".join(map(str, upstreams)) or "nobody")

        async def health(_: web.Request) -> web.Response:
            return web.Response(text="OK")

        async def ready(_: web.Request) -> web.Response:
            ok = services.has_synced() and slices.has_synced()
            return web.Response(status=200 if ok else 503, text="OK" if ok else "kubernetes")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=server.metrics.registry.render(), headers={"Content-Type":
                                                                                prometheus.CONTENT_TYPE})

        metrics_port = 0
        for addr, what, routes in ((config.health_bind_address, "--health-address", {"/health": health}),
                                   (config.ready_bind_address, "--ready-address", {"/ready": ready}),
                                   (config.metrics_bind_address, "--metrics-address", {"/metrics": metrics})):
            if addr:
                runners.append(await _http(addr, what, routes))
                if what == "--metrics-address":
                    metrics_port = _host_port(addr, what)[1]
        factory.start()
        waiting = asyncio.ensure_future(factory.wait_for_sync(services, slices))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            waiting.cancel()
            return
        if config.publish:
            publisher = Publisher(client, config, address[0], address[1], metrics_port)
            await publisher.ensure()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 30.0)
            except TimeoutError:
                if publisher is not None:
                    try:
                        await publisher.ensure()
                    except errors.KapalError as e:
                        log.warning("kapal dns: keeping kube-dns published: %s", e)
    finally:
        if publisher is not None:
            try:
                await asyncio.wait_for(publisher.withdraw(), 5)
            except (errors.KapalError, TimeoutError) as e:
                log.warning("kapal dns: withdrawing from kube-dns: %s", e)
        await server.stop()
        for r in runners:
            await r.cleanup()
        if informers is None:
            await factory.stop()
        if own_client:
            await client.close()
