"""kubectl 1.27–1.33, unchanged, against `kapal apiserver`: the commands users type, with their real output.

Versions come from KAPAL_KUBECTL_VERSIONS (make test: 1.27 1.30 1.33; make test-full: all seven); a version
whose binary is missing is skipped with a reason. Each version gets its own --cache-dir and kubeconfig copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from apiserver_harness import kubectl_binary, kubectl_versions

VERSIONS = kubectl_versions()

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"""


class Kubectl:
    def __init__(self, binary: Path, home: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        shutil.copy(kubeconfig, self.kubeconfig)
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(home)}

    def cmd(self, *args: str) -> list[str]:
        return [str(self.binary), "--cache-dir", str(self.home / "cache"), *args]

    def __call__(self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run(self.cmd(*args), input=input, capture_output=True, text=True, timeout=timeout,
                           env={**self.env, **(env or {})})
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def ok(self, *args: str, **kw) -> str:
        """Run, require success and a clean stderr (no warning a real cluster would not print)."""
        p = self(*args, **kw)
        assert p.stderr == "", f"kubectl {' '.join(args)} printed on stderr: {p.stderr}"
        return p.stdout


@pytest.fixture(scope="module", params=VERSIONS)
def kubectl(request, apiserver, tmp_path_factory):
    version = request.param
    binary = kubectl_binary(version)
    home = tmp_path_factory.mktemp(f"kubectl-{version}")
    k = Kubectl(binary, home, apiserver.kubeconfig)
    k.version = version
    k.ns = f"m{version.replace('.', '')}"
    k.ok("create", "namespace", k.ns)
    yield k
    k("delete", "namespace", k.ns, "--wait=false", check=False)


def test_create_and_get_in_every_output_format(kubectl):
    k, ns = kubectl, kubectl.ns
    assert k.ok("-n", ns, "create", "configmap", "cfg", "--from-literal=color=blue") == "configmap/cfg created\n"
    assert k.ok("-n", ns, "get", "configmap", "cfg", "-o", "jsonpath={.data.color}") == "blue"
    doc = json.loads(k.ok("-n", ns, "get", "configmap", "cfg", "-o", "json"))
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["uid"] and doc["metadata"]["resourceVersion"]
    assert "color: blue" in k.ok("-n", ns, "get", "configmap", "cfg", "-o", "yaml")
    wide = k.ok("-n", ns, "get", "configmap", "-o", "wide").splitlines()
    assert wide[0].split()[0] == "NAME" and wide[1].split()[0] == "cfg"
    cols = k.ok("-n", ns, "get", "configmap", "-o", "custom-columns=NAME:.metadata.name,COLOR:.data.color")
    assert cols.split() == ["NAME", "COLOR", "cfg", "blue"]
    assert "cfg" in k.ok("get", "configmaps", "-A")
    assert k.ok("get", "namespace", ns, "-o", "name") == f"namespace/{ns}\n"


def test_empty_list_says_no_resources_found(kubectl):
    p = kubectl("-n", kubectl.ns, "get", "pods")
    assert p.returncode == 0 and p.stdout == ""
    assert p.stderr == f"No resources found in {kubectl.ns} namespace.\n"


def test_apply_replace_edit_and_describe(kubectl, tmp_path):
    k, ns = kubectl, kubectl.ns
    manifest = tmp_path / "web.yaml"
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=2))
    assert k.ok("apply", "-f", str(manifest)) == "deployment.apps/web created\n"
    assert k.ok("apply", "-f", str(manifest)) == "deployment.apps/web unchanged\n"
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=3))
    assert k.ok("apply", "-f", str(manifest)) == "deployment.apps/web configured\n"
    got = json.loads(k.ok("-n", ns, "get", "deploy", "web", "-o", "json"))
    assert got["spec"]["replicas"] == 3 and got["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=4))
    assert k.ok("replace", "-f", str(manifest)) == "deployment.apps/web replaced\n"
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/replicas: 4/replicas: 6/" "$1"\n')
    editor.chmod(0o755)
    assert k.ok("-n", ns, "edit", "deploy", "web", env={"EDITOR": str(editor)}) == "deployment.apps/web edited\n"
    assert k.ok("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "6"
    described = k.ok("-n", ns, "describe", "deployment", "web")
    assert "Name:" in described and "web" in described and "Replicas:" in described and "6 desired" in described


def test_server_side_apply_records_field_managers(kubectl, tmp_path):
    k, ns = kubectl, kubectl.ns
    manifest = tmp_path / "ssa.yaml"
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=1).replace("name: web", "name: ssa", 1))
    assert k.ok("apply", "--server-side", "-f", str(manifest)) == "deployment.apps/ssa serverside-applied\n"
    got = json.loads(k.ok("-n", ns, "get", "deploy", "ssa", "-o", "json", "--show-managed-fields"))
    assert {"kubectl"} <= {m["manager"] for m in got["metadata"]["managedFields"]}
    k.ok("-n", ns, "scale", "deploy", "ssa", "--replicas=3")
    conflict = k("apply", "--server-side", "-f", str(manifest), check=False)
    assert conflict.returncode == 1 and "conflict" in conflict.stderr.lower()
    assert k.ok("apply", "--server-side", "--force-conflicts", "-f", str(manifest)) == \
        "deployment.apps/ssa serverside-applied\n"


def test_client_side_apply_upgrades_to_server_side(kubectl, tmp_path):
    k, ns = kubectl, kubectl.ns
    manifest = tmp_path / "upgrade.yaml"
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=1).replace("name: web", "name: upgrade", 1))
    k.ok("apply", "-f", str(manifest))
    manifest.write_text(DEPLOYMENT.format(ns=ns, replicas=2).replace("name: web", "name: upgrade", 1))
    assert k.ok("apply", "--server-side", "-f", str(manifest)) == "deployment.apps/upgrade serverside-applied\n"


def test_patch_types_label_annotate_scale(kubectl):
    k, ns = kubectl, kubectl.ns
    k.ok("-n", ns, "create", "deployment", "pt", "--image=nginx:1.25")
    out = k.ok("-n", ns, "patch", "deploy", "pt", "--type=json", "-p",
               '[{"op":"replace","path":"/spec/replicas","value":3}]')
    assert out == "deployment.apps/pt patched\n"
    k.ok("-n", ns, "patch", "deploy", "pt", "--type=merge", "-p", '{"metadata":{"labels":{"merged":"yes"}}}')
    k.ok("-n", ns, "patch", "deploy", "pt", "-p",
         '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}')
    got = json.loads(k.ok("-n", ns, "get", "deploy", "pt", "-o", "json"))
    assert got["spec"]["replicas"] == 3 and got["metadata"]["labels"]["merged"] == "yes"
    assert [c["image"] for c in got["spec"]["template"]["spec"]["containers"]] == ["nginx:1.26"]
    assert k.ok("-n", ns, "label", "deploy", "pt", "tier=web") == "deployment.apps/pt labeled\n"
    annotated = "annotate" if k.version == "1.27" else "annotated"  # kubectl 1.27 prints "annotate"
    assert k.ok("-n", ns, "annotate", "deploy", "pt", "note=hello") == f"deployment.apps/pt {annotated}\n"
    assert k.ok("-n", ns, "scale", "deploy", "pt", "--replicas=5") == "deployment.apps/pt scaled\n"
    got = json.loads(k.ok("-n", ns, "get", "deploy", "pt", "-o", "json"))
    assert got["spec"]["replicas"] == 5 and got["metadata"]["labels"]["tier"] == "web"
    assert got["metadata"]["annotations"]["note"] == "hello"
    assert "tier=web" in k.ok("-n", ns, "get", "deploy", "-l", "tier=web", "--show-labels")
    unchanged = k.ok("-n", ns, "patch", "deploy", "pt", "--type=merge", "-p", '{"spec":{"replicas":5}}')
    assert unchanged == "deployment.apps/pt patched (no change)\n"


def test_delete_and_wait(kubectl):
    k, ns = kubectl, kubectl.ns
    k.ok("-n", ns, "create", "configmap", "gone", "--from-literal=a=b")
    assert k.ok("-n", ns, "delete", "configmap", "gone") == 'configmap "gone" deleted\n'
    p = k("-n", ns, "get", "configmap", "gone", check=False)
    assert p.returncode == 1
    assert p.stderr == 'Error from server (NotFound): configmaps "gone" not found\n'
    k.ok("-n", ns, "create", "configmap", "later")
    waiter = subprocess.Popen(k.cmd("-n", ns, "wait", "--for=delete", "configmap/later", "--timeout=30s"),
                              env=k.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        k.ok("-n", ns, "delete", "configmap", "later", "--wait=false")
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert "condition met" in out or "deleted" in out


def test_wait_for_condition(kubectl):
    k, ns = kubectl, kubectl.ns
    k.ok("-n", ns, "run", "waiter", "--image=busybox", "--restart=Never")
    waiter = subprocess.Popen(k.cmd("-n", ns, "wait", "--for=condition=Ready", "pod/waiter", "--timeout=30s"),
                              env=k.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        status = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}
        k.ok("-n", ns, "patch", "pod", "waiter", "--subresource=status", "--type=merge", "-p", json.dumps(status))
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert out == "pod/waiter condition met\n"


def test_get_watch_with_event_types(kubectl):
    k, ns = kubectl, kubectl.ns
    watcher = subprocess.Popen(k.cmd("-n", ns, "get", "secrets", "-w", "--output-watch-events"), env=k.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        k.ok("-n", ns, "create", "secret", "generic", "w1", "--from-literal=a=b")
        k.ok("-n", ns, "label", "secret", "w1", "x=y")
        k.ok("-n", ns, "delete", "secret", "w1")
        time.sleep(1.0)
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=10)
    events = [line.split()[:2] for line in out.splitlines()[1:]]
    assert events == [["ADDED", "w1"], ["MODIFIED", "w1"], ["DELETED", "w1"]], out + err


def test_auth_and_discovery(kubectl):
    k = kubectl
    assert k.ok("auth", "can-i", "list", "pods") == "yes\n"
    assert k.ok("auth", "can-i", "create", "deployments.apps", "-n", k.ns) == "yes\n"
    whoami = k("auth", "whoami", check=False)
    if k.version == "1.27":
        # 1.27 asks only v1alpha1/v1beta1, which a 1.33 server no longer serves: the same answer as a real cluster.
        assert whoami.returncode == 1
        assert whoami.stderr.startswith("error: the selfsubjectreviews API is not enabled in the cluster")
    else:
        assert whoami.returncode == 0, whoami.stderr
        assert "kubernetes-admin" in whoami.stdout and "system:masters" in whoami.stdout
    resources = k.ok("api-resources")
    assert "deployments" in resources and "deploy" in resources and "apps/v1" in resources
    versions = k.ok("api-versions").split()
    assert "v1" in versions and "apps/v1" in versions and "autoscaling/v2" in versions


def test_explain(kubectl):
    k = kubectl
    out = k.ok("explain", "pods.spec.restartPolicy")
    assert "restartPolicy" in out and "KIND:" in out
    out = k.ok("explain", "deployment.spec.replicas")
    assert "replicas" in out
    if k.version == "1.27":
        out = k.ok("explain", "deployment", "--output=plaintext-openapiv2")
        assert "Deployment" in out and "DESCRIPTION" in out
