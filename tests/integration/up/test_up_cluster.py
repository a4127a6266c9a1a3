"""`kapal up` / `kapal down`: a cluster in one command, kubeconfig merged without clobbering, state and pods
surviving a kill -9 of the whole process, and nothing left once it is down."""

from __future__ import annotations

import importlib.util
import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.root, pytest.mark.slow]

_spec = importlib.util.spec_from_file_location(
    "kubelet_harness", Path(__file__).resolve().parents[1] / "kubelet" / "kubelet_harness.py")
harness = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules.setdefault("kubelet_harness", harness)
_spec.loader.exec_module(harness)  # type: ignore[union-attr]

OTHER = {"apiVersion": "v1", "kind": "Config", "current-context": "other", "preferences": {},
         "clusters": [{"name": "other", "cluster": {"server": "https://192.0.2.99:6443"}}],
         "users": [{"name": "other-user", "user": {"token": "t0ken"}}],
         "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other-user"}}]}


def test_up_kill9_restart_and_down(tmp_path):
    c = harness.UpCluster(tmp_path)
    (c.home / ".kube").mkdir(parents=True)
    (c.home / ".kube" / "config").write_text(yaml.safe_dump(OTHER))
    try:
        c.start()  # a fresh directory: CA, certificates, service accounts and the node's pod CIDR all made now
        assert f"export DOCKER_HOST=unix://{c.dir / 'docker.sock'}\n" in c.out_lines
        # Ready when printed, and truly so: the node has its pod CIDR (what CNI hands out) and says Ready
        node = c.get("node", c.node)
        assert {x["type"]: x["status"] for x in node["status"]["conditions"]}["Ready"] == "True"
        pod_cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
        assert pod_cidr.subnet_of(ipaddress.ip_network(c.pod_range))
        for part in ("db", "engine", "kubelet", "manifests"):  # everything lives under DIR
            assert (c.dir / part).is_dir(), part
        assert c.admin.is_file() and stat.S_ISSOCK((c.dir / "docker.sock").stat().st_mode)
        merged = yaml.safe_load((c.home / ".kube" / "config").read_text())
        names = {ctx["name"] for ctx in merged["contexts"]}
        assert "other" in names and merged["current-context"] in names - {"other"}
        assert {u["name"] for u in merged["users"]} >= {"other-user"}
        again = subprocess.run(c.up_args(), capture_output=True, text=True, env=c.env, timeout=60, cwd=harness.ROOT)
        assert again.returncode == 1 and "already running" in again.stderr
        # the issue's own command: `kapal -H unix://DIR/docker.sock import - bar/busybox:1`, the tar on stdin
        tar = harness.busybox_tar(tmp_path / "busybox.tar").read_bytes()
        imported = subprocess.run([*harness.KAPAL, "-H", f"unix://{c.dir}/docker.sock", "import", "-", harness.IMAGE],
                                  input=tar, capture_output=True, env=c.env, cwd=harness.ROOT, timeout=120)
        assert imported.returncode == 0 and imported.stdout.startswith(b"sha256:"), imported.stderr
        why = c.engine_supports_pods()
        assert why is None, why
        # kubectl with the merged context, no KUBECONFIG
        env = {k: v for k, v in c.env.items() if k != "KUBECONFIG"}
        kubectl = str(harness.kubectl_binary("1.33"))
        subprocess.run([kubectl, "create", "configmap", "keepme", "--from-literal=a=b"], env=env, check=True,
                       capture_output=True, timeout=30)
        c.kubectl("run", "survivor", f"--image={harness.IMAGE}", "--", "sh", "-c", "echo up; sleep 3600")
        c.wait_for("survivor running", lambda: (c.container_state("survivor") or {}).get("ready"))
        assert ipaddress.ip_address(c.get("pod", "survivor")["status"]["podIP"]) in pod_cidr
        before = c.container_state("survivor")
        c.kill9()  # the whole process: API server, controllers, scheduler, kubelet; the engine follows it
        assert c.kapal("ps", "-q").returncode != 0  # no engine answers now
        c.start()
        # a pod asked for the moment Ready is printed runs, with an address from the node's pod network
        c.kubectl("run", "right-after-ready", f"--image={harness.IMAGE}", "--", "sh", "-c", "echo hi; sleep 3600")
        c.wait_for("a pod created right after Ready running",
                   lambda: (c.container_state("right-after-ready") or {}).get("ready"))
        assert ipaddress.ip_address(c.get("pod", "right-after-ready")["status"]["podIP"]) in pod_cidr
        assert c.kubectl("logs", "right-after-ready").stdout == "hi\n"
        assert c.get("configmap", "keepme")["data"] == {"a": "b"}
        c.wait_for("survivor reported again", lambda: (c.container_state("survivor") or {}).get("ready"))
        after = c.container_state("survivor")
        assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
        assert c.kubectl("logs", "survivor").stdout == "up\n"
    finally:
        leaks = c.stop()
    assert leaks == []
    merged = yaml.safe_load((c.home / ".kube" / "config").read_text())
    assert [ctx["name"] for ctx in merged["contexts"]] == ["other"]  # --purge took only ours away
    assert not c.dir.exists()
