"""Two controller managers: only the leader acts (it holds the kube-system/kube-controller-manager Lease);
killed with SIGKILL (no release), the other takes the Lease over within the lease time and carries on."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from controlplane_harness import Kubectl, start_control_plane, wait_for

LEASE = ("--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
         "--leader-elect-retry-period", "1s")


@pytest.fixture(scope="module")
def plane_without_kcm():
    tmp = Path(tempfile.mkdtemp(prefix="kapal-leader-"))
    p = start_control_plane(tmp, kcm=False)
    try:
        yield p
    finally:
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def holder(k: Kubectl) -> str:
    p = k("-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "json", check=False)
    if p.returncode != 0:
        return ""
    import json

    return json.loads(p.stdout)["spec"].get("holderIdentity") or ""


def test_only_the_leader_acts_and_the_other_takes_over(plane_without_kcm, unique):
    plane = plane_without_kcm
    k = Kubectl.admin(plane)
    first = plane.start_controller_manager("kcm-a", *LEASE)
    wait_for(lambda: holder(k), 30, "the first controller manager to take the Lease")
    leader = holder(k)
    second = plane.start_controller_manager("kcm-b", *LEASE)
    k("create", "namespace", unique)
    k("-n", unique, "create", "deployment", "one", "--image=busybox", "--replicas=2")
    k("-n", unique, "rollout", "status", "deployment/one", "--timeout=60s")
    assert holder(k) == leader
    wait_for(lambda: "started" in first.log.read_text(), 10, "the leader's controllers to start")
    assert "became leader" not in second.log.read_text() and "started" not in second.log.read_text(), \
        "the second controller manager must not run controllers while the first leads"

    first.kill(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: holder(k) not in ("", leader), 30, "the second controller manager to take over")
    took = time.monotonic() - killed
    # 4 s lease, plus at most two 1 s retry periods (jittered 20 %) for the observer to notice
    assert took <= 4 + 2 * 1.2 + 1.0, f"took the Lease over after {took:.1f}s"
    lease = k.json("-n", "kube-system", "get", "lease", "kube-controller-manager")
    assert lease["spec"]["leaseTransitions"] >= 1
    k("-n", unique, "create", "deployment", "two", "--image=busybox", "--replicas=2")
    k("-n", unique, "rollout", "status", "deployment/two", "--timeout=60s")
    assert second.alive()
    k("delete", "namespace", unique, "--wait=false")
