"""One control plane per test module (API server, controller manager, scheduler, 3 hollow nodes), stopped by PID."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from controlplane_harness import Kubectl, start_control_plane

# A CronJob clock 30 times faster: `*/1 * * * *` fires every two seconds.
CRONJOB_CLOCK_SPEED = "30"


@pytest.fixture(scope="module")
def plane():
    tmp = Path(tempfile.mkdtemp(prefix="kapal-controlplane-"))
    p = start_control_plane(tmp, kcm_args=("--cronjob-clock-speed", CRONJOB_CLOCK_SPEED, "--allocate-node-cidrs",
                                           "--cluster-cidr", "10.244.0.0/16"), kcm_keys=True)
    try:
        yield p
    finally:
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def kubectl(plane):
    k = Kubectl.admin(plane)
    if not k.available:
        pytest.skip(f"kubectl {k.version} is not installed at {k.binary}")
    return k


@pytest.fixture
def namespace(kubectl, unique):
    kubectl("create", "namespace", unique)
    yield unique
    kubectl("delete", "namespace", unique, "--wait=false", check=False)


@pytest.fixture(scope="module")
def api(plane):
    """The official Python client, configured from the admin kubeconfig."""
    from kubernetes import client, config

    c = client.ApiClient(config.new_client_from_config(str(plane.kubeconfig)).configuration)
    yield c
    c.close()
