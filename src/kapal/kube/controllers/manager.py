"""The controller manager: which controllers run, with which identity, under one leader election.

    await run_controller_manager(ControllerManagerConfig(kubeconfig=path), stop_event)

--controllers takes upstream's names (`deployment-controller`, or the older `deployment`), `*` for every
controller on by default, `-name` to turn one off. A controller that needs a key or flag the manager was not
given is skipped with a warning, as upstream does (e.g. serviceaccount-token-controller without
--service-account-private-key-file). Each leadership term starts the controllers afresh on the shared caches.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import clock_for
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.events import EventRecorder
from kapal.kube.client.healthz import HealthServer
from kapal.kube.client.informer import InformerFactory
from kapal.kube.client.leaderelection import LeaderElectionFlags, lead_until_stopped
from kapal.kube.controllers.base import Controller, ControllerContext
from kapal.kube.controllers.credentials import ServiceAccountCredentials

log = logging.getLogger(__name__)


@dataclass
class ControllerManagerConfig:
    kubeconfig: Path | None = None
    controllers: list[str] = field(default_factory=lambda: ["*"])
    leader_election: LeaderElectionFlags = field(default_factory=lambda: LeaderElectionFlags(
        resource_name="kube-controller-manager"))
    use_service_account_credentials: bool = False
    cluster_cidr: str = ""
    allocate_node_cidrs: bool = False
    node_cidr_mask_size: int = 24
    service_cluster_ip_range: str = ""
    service_account_private_key_file: Path | None = None
    root_ca_file: Path | None = None
    cluster_signing_cert_file: Path | None = None
    cluster_signing_key_file: Path | None = None
    cluster_signing_duration: float = 365 * 24 * 3600.0
    kubeconfig_ca: bytes | None = None  # filled in from the kubeconfig: the default root CA bundle
    concurrency: dict[str, int] = field(default_factory=dict)  # controller name -> workers (--concurrent-*-syncs)
    kube_api_qps: float = 0.0
    kube_api_burst: int = 0
    bind_address: str = "0.0.0.0"
    secure_port: int = 0  # 0: no health endpoint (upstream serves 10257)
    health_ssl: Any = None
    node_monitor_grace_period: float = 40.0
    terminated_pod_gc_threshold: int = 12500
    cronjob_clock_speed: float = 1.0  # tests: a CronJob clock running N times faster


@dataclass(frozen=True)
class ControllerSpec:
    name: str
    aliases: tuple[str, ...]
    service_account: str | None
    factory: Callable[[ControllerContext, ControllerManagerConfig], Controller]
    default: bool = True
    requires: Callable[[ControllerManagerConfig], str | None] = lambda _c: None


def _registry() -> list[ControllerSpec]:
    from kapal.kube.controllers.bootstrap import BootstrapSigner, TokenCleaner
    from kapal.kube.controllers.certificates import CSRApprovingController, CSRSigningController
    from kapal.kube.controllers.cronjob import CronJobController
    from kapal.kube.controllers.daemonset import DaemonSetController
    from kapal.kube.controllers.deployment import DeploymentController
    from kapal.kube.controllers.endpoints import EndpointsController
    from kapal.kube.controllers.endpointslice import EndpointSliceController
    from kapal.kube.controllers.garbagecollector import GarbageCollector
    from kapal.kube.controllers.job import JobController
    from kapal.kube.controllers.namespace import NamespaceController
    from kapal.kube.controllers.nodeipam import NodeIpamController
    from kapal.kube.controllers.nodelifecycle import NodeLifecycleController
    from kapal.kube.controllers.podgc import PodGCController
    from kapal.kube.controllers.replicaset import ReplicaSetController, ReplicationControllerController
    from kapal.kube.controllers.rootca import RootCACertPublisher
    from kapal.kube.controllers.serviceaccount import LegacyTokenSigner, ServiceAccountController, TokenController
    from kapal.kube.controllers.ttlafterfinished import TTLAfterFinishedController

    def spec(name: str, alias: str, sa: str | None, cls: Any, **kw: Any) -> ControllerSpec:
        return ControllerSpec(name, (alias,), sa, lambda ctx, _c: cls(ctx), **kw)

    def needs(*flags: str) -> Callable[[ControllerManagerConfig], str | None]:
        def check(c: ControllerManagerConfig) -> str | None:
            missing = [f for f in flags if not getattr(c, f.lstrip("-").replace("-", "_"))]
            return f"{' and '.join(missing)} not set" if missing else None
        return check

    return [
        spec("deployment-controller", "deployment", "deployment-controller", DeploymentController),
        spec("replicaset-controller", "replicaset", "replicaset-controller", ReplicaSetController),
        spec("replicationcontroller-controller", "replicationcontroller", "replication-controller",
             ReplicationControllerController),
        spec("job-controller", "job", "job-controller", JobController),
        spec("cronjob-controller", "cronjob", "cronjob-controller", CronJobController),
        spec("ttl-after-finished-controller", "ttl-after-finished", "ttl-after-finished-controller",
             TTLAfterFinishedController),
        spec("daemonset-controller", "daemonset", "daemon-set-controller", DaemonSetController),
        spec("garbage-collector-controller", "garbagecollector", "generic-garbage-collector", GarbageCollector),
        spec("namespace-controller", "namespace", "namespace-controller", NamespaceController),
        spec("serviceaccount-controller", "serviceaccount", "service-account-controller", ServiceAccountController),
        ControllerSpec("serviceaccount-token-controller", ("serviceaccount-token",), None,
                       lambda ctx, c: TokenController(ctx, LegacyTokenSigner(c.service_account_private_key_file),
                                                      ctx.options.get("root_ca")),
                       requires=needs("--service-account-private-key-file")),
        ControllerSpec("root-ca-certificate-publisher-controller", ("root-ca-cert-publisher",),
                       "root-ca-cert-publisher", lambda ctx, _c: RootCACertPublisher(ctx, ctx.options["root_ca"]),
                       requires=lambda c: None if c.root_ca_file or c.kubeconfig_ca else
                       "no --root-ca-file and the kubeconfig names no CA"),
        spec("endpoints-controller", "endpoint", "endpoint-controller", EndpointsController),
        spec("endpointslice-controller", "endpointslice", "endpointslice-controller", EndpointSliceController),
        ControllerSpec("node-ipam-controller", ("nodeipam",), "node-controller",
                       lambda ctx, c: NodeIpamController(ctx, c.cluster_cidr, c.node_cidr_mask_size,
                                                         c.service_cluster_ip_range),
                       requires=needs("--allocate-node-cidrs", "--cluster-cidr")),
        ControllerSpec("node-lifecycle-controller", ("nodelifecycle",), "node-controller",
                       lambda ctx, c: NodeLifecycleController(ctx, c.node_monitor_grace_period)),
        ControllerSpec("pod-garbage-collector-controller", ("podgc",), "pod-garbage-collector",
                       lambda ctx, c: PodGCController(ctx, c.terminated_pod_gc_threshold)),
        spec("certificatesigningrequest-approving-controller", "csrapproving", "certificate-controller",
             CSRApprovingController),
        ControllerSpec("certificatesigningrequest-signing-controller", ("csrsigning",), "certificate-controller",
                       lambda ctx, c: CSRSigningController(ctx, c.cluster_signing_cert_file,
                                                           c.cluster_signing_key_file, c.cluster_signing_duration),
                       requires=needs("--cluster-signing-cert-file", "--cluster-signing-key-file")),
        spec("bootstrap-signer-controller", "bootstrapsigner", "bootstrap-signer", BootstrapSigner, default=False),
        spec("token-cleaner-controller", "tokencleaner", "token-cleaner", TokenCleaner, default=False),
    ]


# Upstream controllers kapal does not have: turning them off is fine, asking for them is an error.
NOT_IMPLEMENTED = frozenset({
    "statefulset-controller", "statefulset", "horizontal-pod-autoscaler-controller", "horizontalpodautoscaling",
    "disruption-controller", "disruption", "resourcequota-controller", "resourcequota",
    "persistentvolume-binder-controller", "persistentvolume-binder", "persistentvolume-attach-detach-controller",
    "attachdetach", "persistentvolume-expander-controller", "persistentvolume-expander",
    "persistentvolumeclaim-protection-controller", "pvc-protection", "persistentvolume-protection-controller",
    "pv-protection", "ephemeral-volume-controller", "ephemeral-volume", "endpointslice-mirroring-controller",
    "endpointslicemirroring", "clusterrole-aggregation-controller", "clusterrole-aggregation",
    "certificatesigningrequest-cleaner-controller", "csrcleaner", "ttl-controller", "ttl",
    "legacy-serviceaccount-token-cleaner-controller", "legacy-service-account-token-cleaner",
    "validatingadmissionpolicy-status-controller", "service-lb-controller", "service", "node-route-controller",
    "route", "cloud-node-lifecycle-controller", "cloud-node-lifecycle", "storageversion-garbage-collector-controller",
    "resourceclaim-controller", "taint-eviction-controller", "service-cidr-controller",
    "storage-version-migrator-controller", "selinux-warning-controller",
    "kube-apiserver-serving-clustertrustbundle-publisher-controller",
})


def known_controllers() -> list[ControllerSpec]:
    return _registry()


def enabled_controllers(names: list[str], registry: list[ControllerSpec]) -> list[ControllerSpec]:
    """Resolve --controllers: `*` (every default one), `name`, `-name`; unknown names are an error."""
    by_name: dict[str, ControllerSpec] = {}
    for spec in registry:
        by_name[spec.name] = spec
        for alias in spec.aliases:
            by_name[alias] = spec
    on: set[str] = set()
    off: set[str] = set()
    star = False
    for raw in names:
        for item in (s.strip() for s in raw.split(",")):
            if not item:
                continue
            if item == "*":
                star = True
                continue
            name = item[1:] if item.startswith("-") else item
            spec = by_name.get(name)
            if spec is None and name in NOT_IMPLEMENTED:
                if item.startswith("-"):
                    continue
                raise errors.Unsupported(f'controller "{name}" is not implemented by kapal; run without it')
            if spec is None:
                raise errors.Invalid(f'"{name}" is not in the list of known controllers')
            (off if item.startswith("-") else on).add(spec.name)
    return [s for s in registry if s.name not in off and (s.name in on or (star and s.default))]


async def run_controller_manager(config: ControllerManagerConfig, stop: asyncio.Event, *,
                                 client: ApiClient | None = None, informers: InformerFactory | None = None) -> None:
    """Run the enabled controllers (while leader, with leader election) until `stop` is set."""
    own_client = client is None
    if client is None:
        if config.kubeconfig is None:
            raise ValueError("run_controller_manager needs a kubeconfig or a client")
        from kapal.kube.pki import load_kubeconfig

        client = ApiClient(ClientConfig.from_kubeconfig(
            load_kubeconfig(config.kubeconfig), user_agent="kube-controller-manager/kapal", qps=config.kube_api_qps,
            burst=config.kube_api_burst))
    own_informers = informers is None
    factory = informers or InformerFactory(client)
    if config.kubeconfig_ca is None:
        config.kubeconfig_ca = client.config.ca_pem
    root_ca = config.root_ca_file.read_bytes() if config.root_ca_file else config.kubeconfig_ca
    registry = _registry()
    specs = enabled_controllers(config.controllers, registry)
    runnable = []
    for spec in specs:
        reason = spec.requires(config)
        if reason:
            log.warning("skipping %s: %s", spec.name, reason)
        else:
            runnable.append(spec)
    elector = config.leader_election.elector(client, "kube-controller-manager")
    health = None
    if config.secure_port:
        health = HealthServer(config.bind_address, config.secure_port, config.health_ssl)
        await health.start()
    credentials = ServiceAccountCredentials(client) if config.use_service_account_credentials else None
    host = socket.gethostname()

    async def start(spec: ControllerSpec, recorders: list[EventRecorder]) -> asyncio.Task[None]:
        ctl_client = client
        if credentials is not None and spec.service_account:
            ctl_client = await credentials.client_for(spec.service_account)
        recorder = EventRecorder(ctl_client, spec.service_account or "kube-controller-manager", host)
        recorders.append(recorder)
        clock = clock_for(config.cronjob_clock_speed if spec.name == "cronjob-controller" else 1.0)
        ctx = ControllerContext(ctl_client, factory, recorder, clock, {"config": config, "root_ca": root_ca})
        controller = spec.factory(ctx, config)
        return asyncio.create_task(controller.run(config.concurrency.get(spec.name)), name=spec.name)

    async def term() -> None:
        # Each controller starts as soon as its identity is ready: on a fresh cluster every service account and
        # token is made first, and asking for them one after another kept node-ipam (and so node Ready) waiting.
        tasks: list[asyncio.Task[None]] = []
        recorders: list[EventRecorder] = []
        try:
            starting = [asyncio.create_task(start(spec, recorders), name=f"start-{spec.name}") for spec in runnable]
            try:
                await asyncio.gather(*starting)
            finally:  # when one failed to start, those that did are stopped below with the rest
                for t in starting:
                    if t.done() and not t.cancelled() and t.exception() is None:
                        tasks.append(t.result())
                    else:
                        t.cancel()
            log.info("started %d controllers: %s", len(tasks), ", ".join(s.name for s in runnable))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for r in recorders:
                await r.close(0.5)

    try:
        await lead_until_stopped(elector, term, stop, "kube-controller-manager")
    finally:
        if health is not None:
            await health.stop()
        if credentials is not None:
            await credentials.close()
        if own_informers:
            await factory.stop()
        if own_client:
            await client.close()

