"""init's API phases against a real `kapal apiserver` started with the flags of the kube-apiserver.yaml that
the control-plane phase wrote (run on the host, in a temporary tree: no kubelet, no /etc/kubernetes).

Checks upload-config, mark-control-plane, bootstrap-token (Secret, RBAC, cluster-info read anonymously with a
valid JWS per token) and `kapal adm token create|list|delete` as a user runs them.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from kapal.kube.adm.apiclient import ApiClient
from kapal.kube.adm.config import load_init_config
from kapal.kube.adm.constants import KubeadmPaths
from kapal.kube.adm.init import InitContext, run_phase
from kapal.kube.pki import bootstraptoken as bt
from kapal.kube.pki import primary_ipv4

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("admapi")
    port = _free_port()
    address = str(primary_ipv4())
    cfg = load_init_config(None, {"apiserver-advertise-address": address, "node-name": "adm-node",
                                  "apiserver-bind-port": port, "cert-dir": str(root / "etc/kubernetes/pki"),
                                  "token": "abcdef.0123456789abcdef"})
    cfg.datastore_dir = root / "datastore"
    lines: list[str] = []
    ctx = InitContext(cfg, KubeadmPaths().under(root), out=lines.append, err=lines.append)
    for phase in ("certs", "kubeconfig", "control-plane"):
        run_phase(ctx, phase)
    pod = yaml.safe_load((ctx.paths.manifests_dir / "kube-apiserver.yaml").read_text())
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["kapal", "apiserver"]
    log = open(root / "apiserver.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "kapal.cli.main", *command[1:]], stdout=log, stderr=log, cwd=ROOT)
    try:
        client = ApiClient(ctx.paths.admin_conf)
        deadline = time.monotonic() + 30
        while not client.healthy("/readyz"):
            assert proc.poll() is None, (root / "apiserver.log").read_text()
            assert time.monotonic() < deadline, "the API server did not become ready"
            time.sleep(0.1)
        yield ctx, client, lines, root
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _kapal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kapal.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_upload_config_stores_both_configmaps(cluster):
    ctx, client, lines, _ = cluster
    run_phase(ctx, "upload-config")
    cm = client.get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    doc = yaml.safe_load(cm["data"]["ClusterConfiguration"])
    assert doc["kind"] == "ClusterConfiguration" and doc["networking"]["podSubnet"] == "10.244.0.0/16"
    kubelet = yaml.safe_load(client.get("/api/v1/namespaces/kube-system/configmaps/kubelet-config")["data"]["kubelet"])
    assert kubelet["kind"] == "KubeletConfiguration" and kubelet["clusterDNS"] == ["10.96.0.10"]
    assert client.get("/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/roles/kubeadm:nodes-kubeadm-config")
    assert '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" ' \
           "Namespace" in lines


def test_mark_control_plane_labels_and_taints_the_node(cluster):
    ctx, client, _, _ = cluster
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "adm-node"}})
    run_phase(ctx, "mark-control-plane")
    node = client.get("/api/v1/nodes/adm-node")
    assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert node["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] == ""
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in node["spec"]["taints"]
    run_phase(ctx, "mark-control-plane")  # again: nothing doubles
    taints = client.get("/api/v1/nodes/adm-node")["spec"]["taints"]
    assert sum(t["key"] == "node-role.kubernetes.io/control-plane" for t in taints) == 1


def _anonymous_get(url: str) -> tuple[int, dict]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bootstrap_token_phase_publishes_signed_cluster_info(cluster):
    ctx, client, lines, _ = cluster
    run_phase(ctx, "bootstrap-token")
    assert "[bootstrap-token] Using token: abcdef.0123456789abcdef" in lines
    secret = client.get("/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef")
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    for crb in ("kubeadm:kubelet-bootstrap", "kubeadm:node-autoapprove-bootstrap",
                "kubeadm:node-autoapprove-certificate-rotation", "kubeadm:get-nodes"):
        assert client.get(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{crb}"), crb
    # a joining node reads cluster-info with no credentials and checks the token's signature
    code, cm = _anonymous_get(f"{client.server}/api/v1/namespaces/kube-public/configmaps/cluster-info")
    assert code == 200, cm
    kubeconfig = cm["data"]["kubeconfig"]
    assert bt.detached_jws_valid(cm["data"]["jws-kubeconfig-abcdef"], kubeconfig, "abcdef", "0123456789abcdef")
    cluster_entry = yaml.safe_load(kubeconfig)["clusters"][0]
    assert cluster_entry["name"] == "" and cluster_entry["cluster"]["server"] == client.server
    # anonymous users may read nothing else
    code, _ = _anonymous_get(f"{client.server}/api/v1/namespaces/kube-public/configmaps")
    assert code == 403


def test_the_bootstrap_token_authenticates_as_a_bootstrapper(cluster):
    _, client, _, _ = cluster
    req = urllib.request.Request(f"{client.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                 data=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                                  "kind": "SelfSubjectReview"}).encode(),
                                 headers={"Authorization": "Bearer abcdef.0123456789abcdef",
                                          "Content-Type": "application/json"}, method="POST")
    sslctx = ssl.create_default_context()
    sslctx.check_hostname = False
    sslctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(req, context=sslctx, timeout=10) as r:
        info = json.loads(r.read())["status"]["userInfo"]
    assert info["username"] == "system:bootstrap:abcdef"
    assert "system:bootstrappers:kubeadm:default-node-token" in info["groups"]


def test_token_create_list_delete_from_the_command_line(cluster):
    ctx, client, _, root = cluster
    conf = str(ctx.paths.admin_conf)
    created = _kapal("adm", "token", "--kubeconfig", conf, "create", "--ttl", "2h", "--description", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    token_id, secret = bt.split_token(token)
    listed = _kapal("adm", "token", "--kubeconfig", conf, "list")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"]
    mine = [r for r in rows if r.startswith(token)]
    assert mine and mine[0].split()[1] in ("1h", "2h") and "signing,authentication" in mine[0]
    cm = client.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    assert bt.detached_jws_valid(cm["data"][f"jws-kubeconfig-{token_id}"], cm["data"]["kubeconfig"], token_id, secret)
    again = _kapal("adm", "token", "--kubeconfig", conf, "create", token)
    assert again.returncode == 1 and f'a token with id "{token_id}" already exists' in again.stderr
    deleted = _kapal("adm", "token", "--kubeconfig", conf, "delete", token_id)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f'bootstrap token "{token_id}" deleted'
    cm = client.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    assert f"jws-kubeconfig-{token_id}" not in cm["data"] and "jws-kubeconfig-abcdef" in cm["data"]
    bad = _kapal("adm", "token", "--kubeconfig", conf, "delete", "nope")
    assert bad.returncode == 1 and "didn't match pattern" in bad.stderr
    join = _kapal("adm", "token", "--kubeconfig", conf, "create", "--print-join-command")
    assert join.returncode == 0, join.stderr
    from kapal.kube.adm.tokens import ca_cert_hash

    assert re.fullmatch(rf"kapal adm join {re.escape(client.server.removeprefix('https://'))} --token "
                        r"[a-z0-9]{6}\.[a-z0-9]{16} --discovery-token-ca-cert-hash "
                        + re.escape(ca_cert_hash(ctx.cert_dir)) + " \n", join.stdout), join.stdout
