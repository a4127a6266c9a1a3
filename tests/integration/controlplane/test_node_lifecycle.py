"""Node lifecycle: when the hollow kubelets stop renewing their Leases, their nodes go NotReady (conditions
Unknown, "Kubelet stopped posting node status.") and get the unreachable taints; new pods are not scheduled
there."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from pathlib import Path

from controlplane_harness import Kubectl, start_control_plane, wait_for


def test_silent_nodes_become_unreachable():
    tmp = Path(tempfile.mkdtemp(prefix="kapal-lifecycle-"))
    plane = start_control_plane(tmp, nodes=2, kcm_args=("--node-monitor-grace-period", "3s"))
    try:
        k = Kubectl.admin(plane)
        hollow = next(c for c in plane.components if c.name == "hollow")
        wait_for(lambda: all(c["status"] == "True" for n in k.json("get", "nodes")["items"]
                             for c in n["status"]["conditions"] if c["type"] == "Ready"), 20, "Ready nodes")
        hollow.kill(signal.SIGKILL)

        def unreachable() -> bool:
            nodes = k.json("get", "nodes")["items"]
            return len(nodes) == 2 and all(
                {(t["key"], t["effect"]) for t in n["spec"].get("taints", [])} >= {
                    ("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")}
                for n in nodes)

        wait_for(unreachable, 30, "the unreachable taints")
        ready = {c["type"]: c for c in k.json("get", "nodes")["items"][0]["status"]["conditions"]}["Ready"]
        assert ready["status"] == "Unknown" and ready["message"] == "Kubelet stopped posting node status."
        assert "NotReady" in k.out("get", "nodes")
        k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"},
                                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        wait_for(lambda: any(e["reason"] == "FailedScheduling" for e in k.json(
            "get", "events", "--field-selector", "involvedObject.name=late")["items"]), 20, "FailedScheduling")
        msg = next(e["message"] for e in k.json("get", "events", "--field-selector", "involvedObject.name=late")[
            "items"] if e["reason"] == "FailedScheduling")
        assert msg.startswith("0/2 nodes are available: 2 node(s) had untolerated taint "
                              "{node.kubernetes.io/unreachable: }."), msg
    finally:
        plane.stop()
        shutil.rmtree(tmp, ignore_errors=True)
