"""Kubeconfigs: what kubectl and the official Python client read, and reading them back."""

from __future__ import annotations

import base64
import glob
import json
import os
import stat
import subprocess

import pytest
import yaml

from kapal.errors import Invalid, NotFound
from kapal.kube import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.new_ca("kubernetes")


@pytest.fixture(scope="module")
def admin(ca) -> pki.CertKey:
    return pki.issue(ca, "kubernetes-admin", organizations=["kubeadm:cluster-admins"], client=True)


def _kubectl() -> str:
    found = sorted(glob.glob("/usr/lib/google-cloud-sdk/bin/kubectl.1.*"))
    if not found:
        pytest.skip("no kubectl.1.NN under /usr/lib/google-cloud-sdk/bin")
    return found[-1]


def test_kubectl_reads_it(tmp_path, ca, admin):
    text = pki.kubeconfig("https://127.0.0.1:6443", ca.cert_pem(), "kubernetes-admin",
                          client_cert_pem=admin.cert_pem(), client_key_pem=admin.key_pem())
    path = tmp_path / "admin.conf"
    pki.write_kubeconfig(path, text)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    out = subprocess.run(
        [_kubectl(), "config", "view", "--raw", "--kubeconfig", str(path), "-o",
         "jsonpath={.current-context} {.clusters[0].cluster.server} {.users[0].user.client-certificate-data}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert out[:2] == ["kubernetes-admin@kubernetes", "https://127.0.0.1:6443"]
    assert base64.b64decode(out[2]) == admin.cert_pem()


def test_python_client_reads_it(tmp_path, ca, admin):
    kubernetes = pytest.importorskip("kubernetes")
    path = tmp_path / "admin.conf"
    pki.write_kubeconfig(path, pki.kubeconfig("https://10.0.0.1:6443", ca.cert_pem(), "kubernetes-admin",
                                              client_cert_pem=admin.cert_pem(), client_key_pem=admin.key_pem()))
    conf = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(path), client_configuration=conf)
    assert conf.host == "https://10.0.0.1:6443"
    with open(conf.cert_file, "rb") as f:
        assert f.read() == admin.cert_pem()
    with open(conf.ssl_ca_cert, "rb") as f:
        assert f.read() == ca.cert_pem()


def test_token_user_round_trip(ca):
    text = pki.kubeconfig("https://h:6443", ca.cert_pem(), "bob", token="abc.def", cluster="c1", context="ctx")
    entry = pki.load_kubeconfig(text)
    assert (entry.context, entry.cluster, entry.user, entry.server) == ("ctx", "c1", "bob", "https://h:6443")
    assert entry.token == "abc.def" and entry.client_cert_pem is None
    assert entry.ca_pem == ca.cert_pem()


def test_one_line_json_kubeconfig_is_text(ca):
    text = json.dumps(pki.kubeconfig_dict("https://h:6443", ca.cert_pem(), "bob", token="t"))
    assert "\n" not in text
    assert pki.load_kubeconfig(text).token == "t"


def test_cert_user_round_trip_from_file(tmp_path, ca, admin):
    path = tmp_path / "k"
    pki.write_kubeconfig(path, pki.kubeconfig("https://h:1", ca.cert_pem(), "kubernetes-admin",
                                              client_cert_pem=admin.cert_pem(), client_key_pem=admin.key_pem()))
    for source in (path, str(path)):
        entry = pki.load_kubeconfig(source)
        assert entry.client_cert_pem == admin.cert_pem() and entry.client_key_pem == admin.key_pem()


def test_file_references_are_relative_to_the_kubeconfig(tmp_path, ca, admin):
    """kubelet.conf after TLS bootstrap names its files instead of embedding them."""
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "pki" / "client.pem").write_bytes(admin.cert_pem() + admin.key_pem())
    (tmp_path / "tok").write_text("t0k\n")
    data = {
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://s:6443", "certificate-authority": "pki/ca.crt"}}],
        "users": [{"name": "u", "user": {"client-certificate": "pki/client.pem", "client-key": "pki/client.pem"}},
                  {"name": "t", "user": {"tokenFile": "tok"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "ns1"}},
                     {"name": "b", "context": {"cluster": "c", "user": "t"}}],
    }
    (tmp_path / "kubelet.conf").write_text(yaml.safe_dump(data))
    entry = pki.load_kubeconfig(tmp_path / "kubelet.conf")
    assert entry.ca_pem == ca.cert_pem() and entry.client_key_pem == admin.cert_pem() + admin.key_pem()
    assert entry.namespace == "ns1"
    assert pki.load_kubeconfig(tmp_path / "kubelet.conf", context="b").token == "t0k"
    with pytest.raises(NotFound, match="context 'zz'"):
        pki.load_kubeconfig(tmp_path / "kubelet.conf", context="zz")


def test_bad_kubeconfigs_say_what_is_wrong(tmp_path, ca):
    with pytest.raises(NotFound, match="does not exist"):
        pki.load_kubeconfig(tmp_path / "nope")
    with pytest.raises(Invalid, match="no current-context"):
        pki.load_kubeconfig("apiVersion: v1\nkind: Config\n")
    with pytest.raises(Invalid, match="not valid YAML"):
        pki.load_kubeconfig("a: [\n")
    with pytest.raises(Invalid, match="needs a client certificate or a token"):
        pki.kubeconfig("https://h", ca.cert_pem(), "u")


def test_merge_keeps_other_contexts(tmp_path, ca):
    path = tmp_path / ".kube" / "config"
    pki.merge_kubeconfig(path, pki.kubeconfig("https://a:1", ca.cert_pem(), "ua", token="1", cluster="a"))
    pki.merge_kubeconfig(path, pki.kubeconfig("https://b:1", ca.cert_pem(), "ub", token="2", cluster="b"))
    pki.merge_kubeconfig(path, pki.kubeconfig("https://b:2", ca.cert_pem(), "ub", token="3", cluster="b"))
    data = yaml.safe_load(path.read_text())
    assert [c["name"] for c in data["contexts"]] == ["ua@a", "ub@b"]
    assert data["current-context"] == "ub@b"
    assert pki.load_kubeconfig(path).server == "https://b:2"
    assert pki.load_kubeconfig(path, context="ua@a").token == "1"
    out = subprocess.run([_kubectl(), "config", "get-contexts", "-o", "name", "--kubeconfig", str(path)],
                         check=True, capture_output=True, text=True).stdout.split()
    assert sorted(out) == ["ua@a", "ub@b"]
