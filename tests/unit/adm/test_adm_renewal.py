"""certs check-expiration and certs renew on a real PKI tree in a temporary directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kapal.kube.adm.config import load_init_config
from kapal.kube.adm.constants import KubeadmPaths
from kapal.kube.adm.init import InitContext, run_phase
from kapal.kube.adm.renewal import expiration_table, find, renew, renew_all


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("renew")
    cfg = load_init_config(None, {"apiserver-advertise-address": "192.0.2.10", "node-name": "node-a",
                                  "cert-dir": str(root / "pki")})
    ctx = InitContext(cfg, KubeadmPaths().under(root), out=lambda _l: None)
    run_phase(ctx, "certs")
    run_phase(ctx, "kubeconfig")
    return root


def test_expiration_table_lists_every_certificate_and_ca(tree: Path):
    now = dt.datetime.now(dt.UTC)
    lines = expiration_table(tree / "pki", tree / "etc/kubernetes", now).splitlines()
    assert lines[0].split() == ["CERTIFICATE", "EXPIRES", "RESIDUAL", "TIME", "CERTIFICATE", "AUTHORITY",
                                "EXTERNALLY", "MANAGED"]
    names = [line.split()[0] for line in lines[1:8]]
    assert names == ["admin.conf", "apiserver", "apiserver-kubelet-client", "controller-manager.conf",
                     "front-proxy-client", "scheduler.conf", "super-admin.conf"]
    for line in lines[1:8]:
        assert " 364d " in line and line.rstrip().endswith("no")
    assert "front-proxy-ca" in lines[5]
    assert lines[8] == ""
    assert [line.split()[0] for line in lines[10:]] == ["ca", "front-proxy-ca"]
    assert all(" 9y " in line for line in lines[10:])


def test_renew_keeps_subject_and_sans_with_a_new_key(tree: Path):
    from kapal.kube.pki import alt_names, common_name, load_cert

    pki = tree / "pki"
    before = load_cert(pki / "apiserver.crt")
    key_before = (pki / "apiserver.key").read_bytes()
    lines: list[str] = []
    assert renew(find("apiserver"), pki, tree / "etc/kubernetes", lines.append)
    after = load_cert(pki / "apiserver.crt")
    assert lines == ["certificate for serving the Kubernetes API renewed"]
    assert common_name(after) == common_name(before) and alt_names(after) == alt_names(before)
    assert after.serial_number != before.serial_number and (pki / "apiserver.key").read_bytes() != key_before


def test_renew_all_rewrites_the_kubeconfigs(tree: Path):
    conf = tree / "etc/kubernetes/admin.conf"
    before = conf.read_text()
    lines: list[str] = []
    renew_all(tree / "pki", tree / "etc/kubernetes", lines.append)
    assert conf.read_text() != before
    assert lines[0] == "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"
    assert lines[-1].startswith("\nDone renewing certificates.")
    from cryptography import x509

    from kapal.kube.pki import load_kubeconfig, organizations

    cert = x509.load_pem_x509_certificate(load_kubeconfig(conf).client_cert_pem)
    assert organizations(cert) == ("kubeadm:cluster-admins",)


def test_an_external_ca_is_not_renewed(tmp_path: Path, tree: Path):
    import shutil

    pki = tmp_path / "pki"
    shutil.copytree(tree / "pki", pki)
    (pki / "front-proxy-ca.key").unlink()
    lines: list[str] = []
    assert not renew(find("front-proxy-client"), pki, tree / "etc/kubernetes", lines.append)
    assert lines == ["Detected external front-proxy-ca, certificate for the front proxy client can't be renewed"]
    table = expiration_table(pki, tree / "etc/kubernetes")
    assert [line for line in table.splitlines() if line.startswith("front-proxy-ca ")][0].rstrip().endswith("yes")
