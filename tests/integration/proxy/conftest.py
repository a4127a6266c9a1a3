"""One API server, one pod bridge with three web pods and a client, and one `kapal proxy` per test module."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from services_harness import api_server, chains_with_prefix, pod_network, proxy_process

from kapal.kube.proxy.app import cleanup_rules


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with api_server(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def pods(tmp_path_factory, run_id):
    with pod_network(tmp_path_factory.mktemp("pods"), "kp" + run_id, ("web-a", "web-b", "web-c")) as net:
        yield net


@pytest.fixture(scope="module")
def prefix(run_id) -> str:
    return f"K{run_id}-"


@pytest.fixture(scope="module")
def proxy(cluster, pods, prefix, tmp_path_factory):
    p = proxy_process(cluster, prefix, tmp_path_factory.mktemp("proxy"), "--cluster-cidr", str(pods.net.subnet))
    p.start()
    try:
        yield p
    finally:
        p.stop()
        cleanup_rules(prefix)
        assert chains_with_prefix(prefix) == [], "the proxy's chains outlived the test"
