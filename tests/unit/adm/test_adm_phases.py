"""init's file-writing phases run in a temporary tree: certs, kubeconfig, control-plane, kubelet config, dry run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kapal.errors import Conflict, Invalid
from kapal.kube.adm.config import load_init_config
from kapal.kube.adm.constants import KubeadmPaths
from kapal.kube.adm.init import PHASE_NAMES, InitContext, PhaseError, run_init, run_phase, validate_skip_phases

FLAGS = {"apiserver-advertise-address": "192.0.2.10", "node-name": "node-a",
         "token": "abcdef.0123456789abcdef"}


def _ctx(root: Path, lines: list[str], **flags) -> InitContext:
    cfg = load_init_config(None, {**FLAGS, "cert-dir": str(root / "etc/kubernetes/pki"), **flags})
    return InitContext(cfg, KubeadmPaths().under(root), out=lines.append, err=lines.append)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("adm")
    lines: list[str] = []
    ctx = _ctx(root, lines)
    for phase in ("certs", "kubeconfig", "control-plane"):
        run_phase(ctx, phase)
    return root, lines


def test_phases_print_kubeadms_lines(tree):
    root, lines = tree
    assert lines[0] == f'[certs] Using certificateDir folder "{root}/etc/kubernetes/pki"'
    assert '[certs] Generating "ca" certificate and key' in lines
    assert '[certs] Generating "sa" key and public key' in lines
    assert '[kubeconfig] Writing "super-admin.conf" kubeconfig file' in lines
    assert '[control-plane] Creating static Pod manifest for "kube-apiserver"' in lines


def test_the_tree_has_kubeadms_files(tree):
    root, _ = tree
    pki = root / "etc/kubernetes/pki"
    for name in ("ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client"):
        assert (pki / f"{name}.crt").is_file() and (pki / f"{name}.key").is_file()
    assert (pki / "sa.key").is_file() and (pki / "sa.pub").is_file()
    for conf in ("admin", "super-admin", "kubelet", "controller-manager", "scheduler"):
        assert (root / f"etc/kubernetes/{conf}.conf").stat().st_mode & 0o777 == 0o600
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert (root / f"etc/kubernetes/manifests/{component}.yaml").is_file()


def test_kubelet_conf_is_the_nodes_identity(tree):
    root, _ = tree
    from cryptography import x509

    from kapal.kube.pki import common_name, load_kubeconfig, organizations

    entry = load_kubeconfig(root / "etc/kubernetes/kubelet.conf")
    cert = x509.load_pem_x509_certificate(entry.client_cert_pem)
    assert common_name(cert) == "system:node:node-a" and organizations(cert) == ("system:nodes",)
    assert entry.server == "https://192.0.2.10:6443"


def test_join_hash_equals_opensslsha256_of_the_spki(tree):
    root, _ = tree
    from kapal.kube.adm.tokens import ca_cert_hash

    ca = root / "etc/kubernetes/pki/ca.crt"
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(ca)], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout.split()[0].decode()
    assert ca_cert_hash(root / "etc/kubernetes/pki") == f"sha256:{digest}"


def test_rerunning_phases_reuses_what_is_there(tree):
    root, _ = tree
    lines: list[str] = []
    ctx = _ctx(root, lines)
    run_phase(ctx, "certs", "apiserver")
    run_phase(ctx, "kubeconfig", "admin")
    assert "[certs] Using existing apiserver certificate and key on disk" in lines
    assert f'[kubeconfig] Using existing kubeconfig file: "{root}/etc/kubernetes/admin.conf"' in lines


def test_a_different_advertise_address_is_refused_for_existing_files(tree):
    root, _ = tree
    ctx = _ctx(root, [], **{"apiserver-advertise-address": "192.0.2.99"})
    with pytest.raises(PhaseError, match="^error execution phase kubeconfig: a kubeconfig file .*admin.conf exists "
                                         "already but has got the wrong API server URL") as e:
        run_phase(ctx, "kubeconfig", "admin")
    assert isinstance(e.value.cause, Conflict)


def test_manifests_run_kapal_with_upstream_flags(tree):
    root, _ = tree
    pod = yaml.safe_load((root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    c = pod["spec"]["containers"][0]
    assert c["command"][:2] == ["kapal", "apiserver"]
    args = c["command"][2:]
    assert args == sorted(args)
    assert f"--client-ca-file={root}/etc/kubernetes/pki/ca.crt" in args
    assert "--authorization-mode=Node,RBAC" in args and "--enable-bootstrap-token-auth=true" in args
    assert pod["spec"]["hostNetwork"] is True and pod["spec"]["priorityClassName"] == "system-node-critical"
    assert pod["metadata"]["labels"] == {"component": "kube-apiserver", "tier": "control-plane"}
    assert c["livenessProbe"]["httpGet"] == {"host": "192.0.2.10", "path": "/livez", "port": 6443,
                                             "scheme": "HTTPS"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["k8s-certs"]["readOnly"] and mounts["kapal-python"]["readOnly"]
    assert c["image"] == "kapal.local/kube-apiserver:v1.33.0"
    cm = yaml.safe_load((root / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text())
    cm_args = cm["spec"]["containers"][0]["command"]
    assert "--controllers=*,bootstrapsigner,tokencleaner" in cm_args and "--cluster-cidr=10.244.0.0/16" in cm_args
    assert cm["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] == 10257


def test_extra_args_override_by_name():
    from kapal.kube.adm.config import Arg
    from kapal.kube.adm.manifests import build_args

    assert build_args({"b": "1", "a": "2"}, [Arg("b", "9"), Arg("c", "x"), Arg("c", "y")]) == [
        "--a=2", "--b=9", "--c=x", "--c=y"]


def test_skip_phases_are_checked():
    validate_skip_phases(["addon/kube-proxy", "mark-control-plane", "certs/all"])
    with pytest.raises(Invalid, match='invalid phase name: "nope"'):
        validate_skip_phases(["nope"])
    with pytest.raises(Invalid, match='invalid phase name: "certs/etcd-ca"'):
        validate_skip_phases(["certs/etcd-ca"])
    assert PHASE_NAMES[:3] == ("preflight", "certs", "kubeconfig")


def test_dry_run_writes_only_to_its_directory(tmp_path: Path):
    lines: list[str] = []
    cfg = load_init_config(None, {**FLAGS, "dry-run": True, "ignore-preflight-errors": ["all"]})
    ctx = InitContext(cfg, KubeadmPaths().under(tmp_path / "host"), out=lines.append, err=lines.append,
                      dry_run_dir=tmp_path / "dry")
    run_init(ctx)
    assert not (tmp_path / "host").exists()
    dry = tmp_path / "dry"
    assert (dry / "etc/kubernetes/pki/ca.crt").is_file()
    assert (dry / str(tmp_path / "host/etc/kubernetes/manifests/kube-apiserver.yaml").lstrip("/")).is_file()
    text = "\n".join(lines)
    assert "[dryrun] Would start the kubelet:" in text
    assert '[dryrun] Would perform action CREATE on resource "secrets" in API group "core/v1"' in text
    assert "Your Kubernetes control-plane has initialized successfully!" in text
    assert "kapal adm join 192.0.2.10:6443 --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash " \
           "sha256:" in text
    assert text.rstrip().endswith("[dryrun] Finished dry-running successfully. Above are the resources that would "
                                  "be created")


def test_addon_objects_are_kubeadms(tree):
    root, _ = tree
    from kapal.kube.adm.addons import coredns_objects, kube_proxy_objects

    ctx = _ctx(root, [])
    proxy = {o["kind"]: o for o in kube_proxy_objects(ctx)}
    ds = proxy["DaemonSet"]["spec"]["template"]["spec"]
    assert ds["hostNetwork"] and ds["containers"][0]["securityContext"] == {"privileged": True}
    assert ds["containers"][0]["command"][:2] == ["kapal", "proxy"]
    assert "--hostname-override=$(NODE_NAME)" in ds["containers"][0]["command"]
    assert ds["tolerations"] == [{"operator": "Exists"}] and ds["serviceAccountName"] == "kube-proxy"
    assert proxy["ClusterRoleBinding"]["roleRef"]["name"] == "system:node-proxier"
    assert yaml.safe_load(proxy["ConfigMap"]["data"]["kubeconfig.conf"])["clusters"][0]["cluster"]["server"] == \
        "https://192.0.2.10:6443"
    dns = {o["kind"]: o for o in coredns_objects(ctx)}
    assert dns["Service"]["spec"]["clusterIP"] == "10.96.0.10" and dns["Service"]["metadata"]["name"] == "kube-dns"
    dep = dns["Deployment"]["spec"]
    assert dep["replicas"] == 2 and dep["template"]["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in \
        dep["template"]["spec"]["tolerations"]


def test_kubelet_configuration_and_command(tree):
    root, _ = tree
    from kapal.kube.adm.kubelet import kubelet_argv, kubelet_configuration

    ctx = _ctx(root, [])
    doc = kubelet_configuration(ctx.cfg, ctx.paths)
    assert doc["kind"] == "KubeletConfiguration" and doc["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert doc["staticPodPath"] == f"{root}/etc/kubernetes/manifests" and doc["clusterDNS"] == ["10.96.0.10"]
    assert doc["authentication"]["x509"]["clientCAFile"] == f"{root}/etc/kubernetes/pki/ca.crt"
    assert doc["authorization"]["mode"] == "Webhook" and doc["cgroupDriver"] == "cgroupfs"
    argv = kubelet_argv(Path("/usr/bin/kapal"), ctx.cfg, ctx.paths)
    assert argv[:3] == ["/usr/bin/kapal", "kubelet", f"--config={root}/var/lib/kubelet/config.yaml"]
    assert f"--kubeconfig={root}/etc/kubernetes/kubelet.conf" in argv and "--hostname-override=node-a" in argv


@pytest.mark.parametrize("component", ["kube-controller-manager", "kube-scheduler"])
def test_every_manifest_flag_is_one_kapal_accepts(tree, component):
    """A flag the component's own parser refuses would crash-loop the static pod."""
    root, _ = tree
    pod = yaml.safe_load((root / f"etc/kubernetes/manifests/{component}.yaml").read_text())
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "kapal"
    args = [a for a in command[2:] if not a.startswith("--kubeconfig=")]
    exe = Path(__file__).resolve().parents[3] / ".venv/bin/kapal"
    # A missing kubeconfig stops the component right after its flags are parsed.
    proc = subprocess.run([str(exe), command[1], *args, "--kubeconfig=/nonexistent/kubeconfig"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "/nonexistent/kubeconfig" in proc.stderr, proc.stderr
    assert "unrecognized arguments" not in proc.stderr, proc.stderr
