"""The kubeadm tree: every file kubeadm writes, checked with openssl as the issue asks."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from kapal.errors import Conflict
from kapal.kube import pki

CFG = pki.ClusterPki(node_name="node-a", advertise_address="192.0.2.10",
                     apiserver_cert_sans=("api.example", "10.1.1.1"))
SERVER = "TLS Web Server Authentication"
CLIENT = "TLS Web Client Authentication"
BOTH = f"{SERVER}, {CLIENT}"
ETCD_SANS = "DNS:localhost, DNS:node-a, IP Address:192.0.2.10, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"

# file -> (subject, issuer, extended key usage, SANs)
EXPECTED = {
    "ca": ("CN=kubernetes", "CN=kubernetes", "", "DNS:kubernetes"),
    "apiserver": ("CN=kube-apiserver", "CN=kubernetes", SERVER,
                  "DNS:api.example, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, "
                  "DNS:kubernetes.default.svc.cluster.local, DNS:node-a, IP Address:10.96.0.1, "
                  "IP Address:192.0.2.10, IP Address:10.1.1.1"),
    "apiserver-kubelet-client": ("CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins", "CN=kubernetes",
                                 CLIENT, ""),
    "front-proxy-ca": ("CN=front-proxy-ca", "CN=front-proxy-ca", "", "DNS:front-proxy-ca"),
    "front-proxy-client": ("CN=front-proxy-client", "CN=front-proxy-ca", CLIENT, ""),
    "etcd/ca": ("CN=etcd-ca", "CN=etcd-ca", "", "DNS:etcd-ca"),
    "etcd/server": ("CN=node-a", "CN=etcd-ca", BOTH, ETCD_SANS),
    "etcd/peer": ("CN=node-a", "CN=etcd-ca", BOTH, ETCD_SANS),
    "etcd/healthcheck-client": ("CN=kube-etcd-healthcheck-client", "CN=etcd-ca", CLIENT, ""),
    "apiserver-etcd-client": ("CN=kube-apiserver-etcd-client", "CN=etcd-ca", CLIENT, ""),
}
KUBECONFIG_SUBJECTS = {
    "admin.conf": ("CN=kubernetes-admin,O=kubeadm:cluster-admins", "https://192.0.2.10:6443"),
    "super-admin.conf": ("CN=kubernetes-super-admin,O=system:masters", "https://192.0.2.10:6443"),
    "kubelet.conf": ("CN=system:node:node-a,O=system:nodes", "https://192.0.2.10:6443"),
    "controller-manager.conf": ("CN=system:kube-controller-manager", "https://192.0.2.10:6443"),
    "scheduler.conf": ("CN=system:kube-scheduler", "https://192.0.2.10:6443"),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("etc-kubernetes")
    lines: list[str] = []
    pki.ensure_pki(CFG, root / "pki", lines.append)
    pki.ensure_kubeconfigs(CFG, root / "pki", root, lines.append)
    return root, lines


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_certificate_matches_kubeadm(tree, openssl, name):
    root, _ = tree
    subject, issuer, eku, sans = EXPECTED[name]
    text = openssl.text(root / "pki" / f"{name}.crt")
    assert f"Subject: {subject}\n" in text
    assert f"Issuer: {issuer}\n" in text
    assert "Public-Key: (2048 bit)" in text
    assert openssl.extension(text, "Extended Key Usage")[1] == eku
    assert openssl.extension(text, "Subject Alternative Name")[1] == sans
    is_ca = not eku
    assert openssl.extension(text, "Basic Constraints") == (True, "CA:TRUE" if is_ca else "CA:FALSE")
    usage = "Digital Signature, Key Encipherment" + (", Certificate Sign" if is_ca else "")
    assert openssl.extension(text, "Key Usage") == (True, usage)
    # lifetimes: CAs 10 years, leaves 1 year (checkend: still valid in N seconds?)
    days = 3650 if is_ca else 365
    path = str(root / "pki" / f"{name}.crt")
    openssl.run("x509", "-noout", "-checkend", str((days - 1) * 86400), "-in", path)
    with pytest.raises(subprocess.CalledProcessError):  # expired by then
        openssl.run("x509", "-noout", "-checkend", str((days + 1) * 86400), "-in", path)
    ca_file = root / "pki" / (issuer.split("=")[1].replace("kubernetes", "ca").replace("etcd-ca", "etcd/ca") + ".crt")
    assert openssl.run("verify", "-CAfile", str(ca_file), path).strip().endswith(b"OK")


def test_service_account_keys(tree, openssl):
    root, _ = tree
    assert openssl.run("rsa", "-in", str(root / "pki" / "sa.key"), "-pubout") == (root / "pki" / "sa.pub").read_bytes()


@pytest.mark.parametrize("file", sorted(KUBECONFIG_SUBJECTS))
def test_kubeconfig_matches_kubeadm(tree, openssl, tmp_path, file):
    root, _ = tree
    subject, server = KUBECONFIG_SUBJECTS[file]
    entry = pki.load_kubeconfig(root / file)
    assert entry.server == server
    assert entry.ca_pem == (root / "pki" / "ca.crt").read_bytes()
    (tmp_path / "c.crt").write_bytes(entry.client_cert_pem or b"")
    text = openssl.text(tmp_path / "c.crt")
    assert f"Subject: {subject}\n" in text
    assert openssl.extension(text, "Extended Key Usage")[1] == CLIENT
    user = yaml.safe_load((root / file).read_text())["users"][0]
    assert base64.b64decode(user["user"]["client-key-data"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_second_run_reuses_everything(tree):
    root, first = tree
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again: list[str] = []
    pki.ensure_pki(CFG, root / "pki", again.append)
    pki.ensure_kubeconfigs(CFG, root / "pki", root, again.append)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert '[certs] Generating "ca" certificate and key' in first
    assert "[certs] Using existing ca certificate authority" in again
    assert not [line for line in again if "Generating" in line or "Writing" in line]


def test_user_provided_ca_is_reused(tmp_path, openssl):
    ca = pki.new_ca("my-own-ca")
    pki.write(ca, tmp_path / "pki" / "ca.crt", tmp_path / "pki" / "ca.key")
    pki.ensure_pki(CFG, tmp_path / "pki", only=frozenset({"apiserver"}))
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == ca.cert_pem()
    assert "Issuer: CN=my-own-ca\n" in openssl.text(tmp_path / "pki" / "apiserver.crt")
    assert not (tmp_path / "pki" / "front-proxy-ca.crt").exists()


def test_existing_cert_with_other_sans_is_refused(tmp_path):
    pki.ensure_pki(CFG, tmp_path, only=frozenset({"apiserver"}))
    other = pki.ClusterPki(node_name="node-b", advertise_address="192.0.2.11")
    with pytest.raises(Conflict, match="lacks the SANs"):
        pki.ensure_pki(other, tmp_path, only=frozenset({"apiserver"}))


def test_kubeconfig_with_another_ca_is_refused(tmp_path):
    pki.ensure_pki(CFG, tmp_path / "pki", only=frozenset({"ca"}))
    pki.ensure_kubeconfigs(CFG, tmp_path / "pki", tmp_path, only=frozenset({"admin"}))
    for f in ("ca.crt", "ca.key"):
        (tmp_path / "pki" / f).unlink()
    pki.ensure_pki(CFG, tmp_path / "pki", only=frozenset({"ca"}))
    with pytest.raises(Conflict, match="wrong CA cert"):
        pki.ensure_kubeconfigs(CFG, tmp_path / "pki", tmp_path, only=frozenset({"admin"}))


def test_control_plane_endpoint_and_ipv6():
    cfg = pki.ClusterPki(node_name="n", advertise_address="fd00::2", control_plane_endpoint="lb.example:443",
                         service_subnet="fd00:96::/108,10.96.0.0/12")
    assert cfg.control_plane_url() == "https://lb.example:443"
    assert cfg.local_url() == "https://[fd00::2]:6443"
    dns, ips = pki.kubeadm.alt_names(pki.KUBEADM_CERTS[1], cfg)
    assert "lb.example" in dns and ips[:2] == ["fd00:96::1", "fd00::2"]
