"""`kapal scheduler` as a library: settings, the identity it talks with, leader election, health endpoints.

    await run_scheduler(SchedulerConfig(kubeconfig=path), stop_event)

Each leadership term builds a fresh Scheduler from the (shared) informer caches; losing the Lease stops
scheduling until it is won again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.healthz import HealthServer
from kapal.kube.client.informer import InformerFactory
from kapal.kube.client.leaderelection import LeaderElectionFlags, lead_until_stopped
from kapal.kube.scheduler.scheduler import Scheduler, SchedulerSettings

log = logging.getLogger(__name__)


@dataclass
class SchedulerConfig:
    kubeconfig: Path | None = None
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    leader_election: LeaderElectionFlags = field(default_factory=lambda: LeaderElectionFlags(
        resource_name="kube-scheduler"))
    kube_api_qps: float = 0.0
    kube_api_burst: int = 0
    bind_address: str = "0.0.0.0"
    secure_port: int = 0  # 0: no health endpoint (upstream serves 10259)
    health_ssl: Any = None  # an ssl.SSLContext for the health endpoint; None serves plain HTTP


def make_client(kubeconfig: str | os.PathLike[str], user_agent: str, qps: float = 0.0, burst: int = 0) -> ApiClient:
    from kapal.kube.pki import load_kubeconfig

    return ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig), user_agent=user_agent, qps=qps,
                                                  burst=burst))


async def run_scheduler(config: SchedulerConfig, stop: asyncio.Event, *, client: ApiClient | None = None,
                        informers: InformerFactory | None = None) -> None:
    """Schedule pods until `stop` is set. Pass `informers` to share one cache with other components."""
    own_client = client is None
    if client is None:
        if config.kubeconfig is None:
            raise ValueError("run_scheduler needs a kubeconfig or a client")
        client = make_client(config.kubeconfig, "kube-scheduler/kapal", config.kube_api_qps, config.kube_api_burst)
    own_informers = informers is None
    factory = informers or InformerFactory(client)
    elector = config.leader_election.elector(client, "kube-scheduler")
    health = None
    if config.secure_port:
        health = HealthServer(config.bind_address, config.secure_port, config.health_ssl)
        await health.start()

    async def term() -> None:
        await Scheduler(client, factory, config.settings).run()

    try:
        await lead_until_stopped(elector, term, stop, "kube-scheduler")
    finally:
        if health is not None:
            await health.stop()
        if own_informers:
            await factory.stop()
        if own_client:
            await client.close()
