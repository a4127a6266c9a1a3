"""Hollow nodes: simulated kubelets with no processes, for tests and scale benchmarks (see nodes.py).

Entry point for `kapal hollow-nodes` and in-process use: `await run_hollow_nodes(kubeconfig, HollowConfig(count=3),
stop_event)`.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kapal.kube.client.client import ApiClient
    from kapal.kube.client.informer import InformerFactory
    from kapal.kube.hollow.nodes import HollowConfig


async def run_hollow_nodes(kubeconfig: str | os.PathLike[str] | None, config: HollowConfig, stop: asyncio.Event, *,
                           client: ApiClient | None = None, informers: InformerFactory | None = None) -> None:
    """Register config.count hollow nodes and act as their kubelet until `stop` is set."""
    from kapal.kube.client.client import ApiClient
    from kapal.kube.client.config import ClientConfig
    from kapal.kube.hollow.nodes import HollowNodes
    from kapal.kube.pki import load_kubeconfig

    own = client is None
    if client is None:
        if kubeconfig is None:
            raise ValueError("run_hollow_nodes needs a kubeconfig or a client")
        client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig), user_agent="kapal-hollow-node"))
    try:
        await HollowNodes(client, config, informers).run(stop)
    finally:
        if own:
            await client.close()
