"""A kubelet killed with SIGKILL leaves its pods running; the next one adopts them without restarting them.
Also the kubelet's flags as a user meets them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kubelet_harness import KAPAL, ROOT, NodeProcesses

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcesses(tmp_path_factory.mktemp("kubelet-adoption"))
    try:
        n.start()
        n.cluster.import_busybox()
        why = n.cluster.engine_supports_pods()
        if why:
            pytest.skip(why)
        yield n
    finally:
        n.stop()


POD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: bar/busybox:1
    command: ["sh", "-c", "echo started; sleep 3600"]
    readinessProbe: {{exec: {{command: ["true"]}}, periodSeconds: 1}}
"""


def test_kill9_then_adoption_without_restart(node):
    c = node.cluster
    c.kubectl("apply", "-f", "-", input=POD.format(name="keep", node=node.node))
    c.wait_for("pod keep ready", lambda: (c.container_state("keep") or {}).get("ready"))
    before = c.container_state("keep")
    node.kill9("kubelet")
    ps = c.kapal("ps", "--no-trunc", "-q")
    assert before["containerID"].removeprefix("kapal://").encode() in ps.stdout  # still running without a kubelet
    node.start_kubelet()
    c.kubectl("apply", "-f", "-", input=POD.format(name="after", node=node.node))
    c.wait_for("the new kubelet at work", lambda: (c.container_state("after") or {}).get("ready"))
    after = c.container_state("keep")
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0 and after["ready"] and after["state"]["running"] == before["state"]["running"]
    assert c.kubectl("logs", "keep").stdout == "started\n"
    events = json.loads(c.kubectl("get", "events", "--field-selector", "involvedObject.name=keep", "-o",
                                  "json").stdout)["items"]
    assert sum(1 for e in events if e["reason"] == "Started") == 1
    c.kubectl("delete", "pod", "keep", "after", "--wait=true")
    assert c.kapal("ps", "-a", "-q").stdout.strip() == b""


def test_static_pods_run_before_the_api_server_answers(node):
    """kubeadm's order: the kubelet starts first and runs the API server as a static pod."""
    c = node.cluster
    node.manifests = node.workdir / "manifests"
    node.manifests.mkdir(exist_ok=True)
    (node.manifests / "early.yaml").write_text("""apiVersion: v1
kind: Pod
metadata: {name: early, namespace: kube-system}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  priority: 2000001000
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: bar/busybox:1, imagePullPolicy: IfNotPresent, command: ["sh", "-c", "echo early; sleep 3600"]}
""")
    node.terminate("kubelet")
    node.terminate("apiserver")
    node.start_kubelet()
    c.wait_for("the static pod running without an API server",
               lambda: b"k8s_c_early-" in c.kapal("ps", "--format", "{{.Names}}").stdout)
    node.start_apiserver()
    mirror = f"early-{node.node}"
    c.wait_for("the mirror pod running", lambda: (c.get("pod", mirror, "kube-system")["status"].get("phase") ==
                                                  "Running"))
    assert c.kubectl("-n", "kube-system", "logs", mirror).stdout == "early\n"
    (node.manifests / "early.yaml").unlink()
    c.wait_for("the static pod gone", lambda: b"early" not in c.kapal("ps", "-a", "--format", "{{.Names}}").stdout)


def test_node_object(node):
    c = node.cluster
    n = c.get("node", node.node)
    addresses = {a["type"]: a["address"] for a in n["status"]["addresses"]}
    assert addresses["InternalIP"] != "127.0.0.1" and addresses["Hostname"]
    info = n["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.33.") and info["containerRuntimeVersion"].startswith("kapal://")
    assert {cond["type"]: cond["status"] for cond in n["status"]["conditions"]} == {
        "Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    assert int(n["status"]["capacity"]["pods"]) == 110 and n["status"]["allocatable"]["cpu"]
    assert any("bar/busybox:1" in name for img in n["status"]["images"] for name in img["names"])
    lease = c.get("lease", node.node, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node.node
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == node.node


def test_flags_fail_clearly():
    r = subprocess.run([*KAPAL, "kubelet", "--cgroup-driver", "systemd"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 1 and "--cgroup-driver" in r.stderr and "cgroupfs" in r.stderr
    r = subprocess.run([*KAPAL, "kubelet", "--no-such-flag"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "--no-such-flag" in r.stderr
    r = subprocess.run([sys.executable, "-m", "kapal.cli.main", "kubelet", "--pod-cidr", "10.1.2.3/24",
                        "--kubeconfig", "/nonexistent"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1 and "--pod-cidr" in r.stderr
