"""`kapal up`'s certificates: all made before anything listens (ECDSA P-256 as k3s, the service-account key RSA),
each component's kubeconfig a client certificate of the cluster CA for the right user and groups, kept across
restarts (only a moved server is rewritten), and remade when the CA they name is not this cluster's."""

from __future__ import annotations

import ssl

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kapal.cli.up import Layout, _component_kubeconfigs, _prepare_pki
from kapal.kube import pki
from kapal.kube.api.config import ApiServerConfig
from kapal.kube.kubelet.config import KubeletConfig

USERS = {"kubelet": ("system:node:n1", ("system:nodes",)),
         "controller-manager": ("system:kube-controller-manager", ()),
         "scheduler": ("system:kube-scheduler", ())}


def _setup(tmp_path):
    layout = Layout(tmp_path / "c")
    api = ApiServerConfig(data_dir=layout.dir, service_cluster_ip_range="10.96.0.0/12", key_algorithm="ECDSA-P256")
    kubelet = KubeletConfig(node_name="n1", root_dir=layout.path("kubelet"))
    return layout, api, kubelet


def _client_cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.load_kubeconfig(path).client_cert_pem)


def test_a_fresh_directory_gets_every_certificate_and_kubeconfigs_that_verify(tmp_path):
    layout, api, kubelet = _setup(tmp_path)
    made = _prepare_pki(layout, api, kubelet, "192.0.2.7")
    assert set(made) == set(USERS)
    d = layout.path("pki")
    for name in ("ca", "apiserver", "apiserver-kubelet-client", "admin"):
        assert isinstance(pki.load(d / f"{name}.crt", d / f"{name}.key").key, ec.EllipticCurvePrivateKey), name
    assert isinstance(pki.load_private_key(d / "sa.key"), rsa.RSAPrivateKey)  # service-account tokens are RS256
    serving = x509.load_pem_x509_certificate((layout.path("kubelet", "pki", "kubelet.crt")).read_bytes())
    assert "192.0.2.7" in [str(ip) for ip in pki.alt_names(serving)[1]]

    paths = _component_kubeconfigs(layout, "https://127.0.0.1:6443", "n1", made)
    ca = pki.load_cert(d / "ca.crt")
    for name, (user, groups) in USERS.items():
        entry = pki.load_kubeconfig(paths[name])
        cert = _client_cert(paths[name])
        assert entry.server == "https://127.0.0.1:6443"
        assert (pki.common_name(cert), pki.organizations(cert)) == (user, groups)
        assert pki.signed_by(cert, ca)
        ctx = entry.ssl_context()  # the CA and the client pair load, as the components load them
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.get_ca_certs() and len(ctx.get_ca_certs()) == 1  # the cluster CA alone, not the system's store


def test_a_restart_keeps_the_certificates_and_only_rewrites_a_moved_server(tmp_path):
    layout, api, kubelet = _setup(tmp_path)
    paths = _component_kubeconfigs(layout, "https://127.0.0.1:6443", "n1",
                                   _prepare_pki(layout, api, kubelet, "192.0.2.7"))
    before = {name: (p.read_bytes(), _client_cert(p).serial_number) for name, p in paths.items()}
    assert _prepare_pki(layout, api, kubelet, "192.0.2.7") == {}  # nothing new to make
    _component_kubeconfigs(layout, "https://127.0.0.1:6443", "n1", {})
    assert {name: p.read_bytes() for name, p in paths.items()} == {n: b[0] for n, b in before.items()}
    _component_kubeconfigs(layout, "https://127.0.0.1:7443", "n1", {})
    for name, p in paths.items():
        assert pki.load_kubeconfig(p).server == "https://127.0.0.1:7443"
        assert _client_cert(p).serial_number == before[name][1]


def test_kubeconfigs_of_another_ca_or_node_are_remade(tmp_path):
    layout, api, kubelet = _setup(tmp_path)
    paths = _component_kubeconfigs(layout, "https://127.0.0.1:6443", "n1",
                                   _prepare_pki(layout, api, kubelet, "192.0.2.7"))
    old_serial = _client_cert(paths["scheduler"]).serial_number
    other = pki.new_ca("someone-else", algorithm="ECDSA-P256")
    pki.write(other, layout.path("pki", "ca.crt"), layout.path("pki", "ca.key"))
    made = _prepare_pki(layout, api, kubelet, "192.0.2.7")
    assert set(made) == set(USERS)
    paths = _component_kubeconfigs(layout, "https://127.0.0.1:6443", "n1", made)
    assert pki.signed_by(_client_cert(paths["scheduler"]), other.cert)
    assert _client_cert(paths["scheduler"]).serial_number != old_serial

    renamed = KubeletConfig(node_name="n2", root_dir=layout.path("kubelet"))
    assert set(_prepare_pki(layout, api, renamed, "192.0.2.7")) == {"kubelet"}
