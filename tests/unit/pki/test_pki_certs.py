"""CAs and leaf certificates, read back with the real openssl."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from kapal.errors import Invalid, NotFound
from kapal.kube import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.new_ca("kubernetes")


def _dates(openssl, path: Path) -> tuple[dt.datetime, dt.datetime]:
    out = openssl.field(path, "-startdate", "-enddate").splitlines()
    parse = lambda s: dt.datetime.strptime(s.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT").replace(tzinfo=dt.UTC)  # noqa: E731
    return parse(out[0]), parse(out[1])


def test_ca_has_kubeadm_shape(tmp_path, openssl, ca):
    pki.write(ca, tmp_path / "ca.crt", tmp_path / "ca.key")
    text = openssl.text(tmp_path / "ca.crt")
    assert "Subject: CN=kubernetes\n" in text
    assert "Issuer: CN=kubernetes\n" in text
    assert "Public-Key: (2048 bit)" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert openssl.extension(text, "Basic Constraints") == (True, "CA:TRUE")
    assert openssl.extension(text, "Key Usage") == (True, "Digital Signature, Key Encipherment, Certificate Sign")
    assert openssl.extension(text, "Subject Key Identifier")[1]
    assert openssl.extension(text, "Subject Alternative Name") == (False, "DNS:kubernetes")
    assert openssl.extension(text, "Authority Key Identifier") == (False, "")
    start, end = _dates(openssl, tmp_path / "ca.crt")
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=4) < now - start < dt.timedelta(minutes=6)
    assert abs((end - now) - dt.timedelta(days=3650)) < dt.timedelta(minutes=1)


def test_server_leaf_has_kubeadm_shape(tmp_path, openssl, ca):
    leaf = pki.issue(ca, "kube-apiserver", dns_names=["kubernetes", "b.example", "kubernetes"],
                     ip_addresses=["10.96.0.1", "127.0.0.1", "10.96.0.1", "::1"], server=True)
    pki.write(leaf, tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    text = openssl.text(tmp_path / "apiserver.crt")
    assert "Subject: CN=kube-apiserver\n" in text
    assert "Public-Key: (2048 bit)" in text
    assert openssl.extension(text, "Basic Constraints") == (True, "CA:FALSE")
    assert openssl.extension(text, "Key Usage") == (True, "Digital Signature, Key Encipherment")
    assert openssl.extension(text, "Extended Key Usage") == (False, "TLS Web Server Authentication")
    assert openssl.extension(text, "Subject Alternative Name")[1] == (
        "DNS:b.example, DNS:kubernetes, IP Address:10.96.0.1, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(pki.certs.x509.SubjectKeyIdentifier).value.digest
    assert openssl.extension(text, "Authority Key Identifier")[1].removeprefix("keyid:") == ca_ski.hex(":").upper()
    assert openssl.extension(text, "Subject Key Identifier") == (False, "")
    start, end = _dates(openssl, tmp_path / "apiserver.crt")
    assert abs((end - dt.datetime.now(dt.UTC)) - dt.timedelta(days=365)) < dt.timedelta(minutes=1)
    pki.write_cert(ca.cert, tmp_path / "ca.crt")
    out = openssl.run("verify", "-CAfile", str(tmp_path / "ca.crt"), "-purpose", "sslserver",
                      str(tmp_path / "apiserver.crt"))
    assert out.strip().endswith(b"OK")


def test_client_leaf_carries_groups(tmp_path, openssl, ca):
    leaf = pki.issue(ca, "kubernetes-admin", organizations=["kubeadm:cluster-admins", "dev"], client=True)
    pki.write(leaf, tmp_path / "a.crt", tmp_path / "a.key")
    text = openssl.text(tmp_path / "a.crt")
    assert "Subject: CN=kubernetes-admin,O=dev,O=kubeadm:cluster-admins\n" in text  # RFC 2253 lists RDNs reversed
    assert openssl.extension(text, "Extended Key Usage") == (False, "TLS Web Client Authentication")
    assert openssl.extension(text, "Subject Alternative Name") == (False, "")
    assert pki.organizations(leaf.cert) == ("kubeadm:cluster-admins", "dev")


def test_server_and_client_leaf(tmp_path, openssl, ca):
    leaf = pki.issue(ca, "node1", dns_names=["localhost"], server=True, client=True)
    pki.write(leaf, tmp_path / "s.crt", tmp_path / "s.key")
    text = openssl.text(tmp_path / "s.crt")
    assert openssl.extension(text, "Extended Key Usage")[1] == (
        "TLS Web Server Authentication, TLS Web Client Authentication"
    )


def test_spki_hash_matches_openssl_pipeline(tmp_path, openssl, ca):
    pki.write_cert(ca.cert, tmp_path / "ca.crt")
    pubkey = openssl.run("x509", "-pubkey", "-noout", "-in", str(tmp_path / "ca.crt"))
    der = openssl.run("rsa", "-pubin", "-outform", "der", input=pubkey)
    assert pki.spki_sha256(ca.cert) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert pki.spki_sha256(ca.cert_pem()) == pki.spki_sha256(ca.cert)


def test_write_is_private_and_load_round_trips(tmp_path, openssl, ca):
    leaf = pki.issue(ca, "x", client=True)
    crt, key = tmp_path / "d" / "x.crt", tmp_path / "d" / "x.key"
    pki.write(leaf, crt, key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(crt).st_mode) == 0o644
    assert key.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert openssl.run("rsa", "-check", "-noout", "-in", str(key)).strip() == b"RSA key ok"
    assert sorted(p.name for p in crt.parent.iterdir()) == ["x.crt", "x.key"]  # no temp file left behind
    again = pki.load(crt, key)
    assert again.cert == leaf.cert and again.key_pem() == leaf.key_pem()


def test_load_refuses_a_key_of_another_certificate(tmp_path, ca):
    a, b = pki.issue(ca, "a", client=True), pki.issue(ca, "b", client=True)
    pki.write(a, tmp_path / "a.crt", tmp_path / "a.key")
    pki.write(b, tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(Invalid, match="does not belong"):
        pki.load(tmp_path / "a.crt", tmp_path / "b.key")
    with pytest.raises(NotFound, match="does not exist"):
        pki.load(tmp_path / "a.crt", tmp_path / "missing.key")


def test_a_leaf_cannot_sign(ca):
    leaf = pki.issue(ca, "x", client=True)
    with pytest.raises(Invalid, match="not a CA"):
        pki.issue(leaf, "y", client=True)
    with pytest.raises(Invalid, match="usage"):
        pki.issue(ca, "z")
    with pytest.raises(Invalid, match="not an IP address"):
        pki.issue(ca, "z", ip_addresses=["nope"], server=True)


def test_service_account_keypair(tmp_path, openssl):
    private, public = pki.new_rsa_keypair_pem()
    pki.write_keypair(private, public, tmp_path / "sa.key", tmp_path / "sa.pub")
    derived = openssl.run("rsa", "-in", str(tmp_path / "sa.key"), "-pubout")
    assert derived == public
    assert stat.S_IMODE(os.stat(tmp_path / "sa.key").st_mode) == 0o600


def test_csr_signed_keeps_subject_and_sans(tmp_path, openssl, ca):
    csr, key = pki.new_csr("system:node:n1", organizations=["system:nodes"], dns_names=["n1"],
                           ip_addresses=["10.0.0.5"])
    assert b"CERTIFICATE REQUEST" in csr
    (tmp_path / "n.csr").write_bytes(csr)
    assert b"verify OK" in subprocess.run(
        [openssl.binary, "req", "-verify", "-noout", "-in", str(tmp_path / "n.csr")], capture_output=True
    ).stderr
    signed = pki.sign_csr(ca, csr, client=True)
    (tmp_path / "n.crt").write_bytes(signed)
    text = openssl.text(tmp_path / "n.crt")
    assert "Subject: CN=system:node:n1,O=system:nodes\n" in text
    assert openssl.extension(text, "Subject Alternative Name")[1] == "DNS:n1, IP Address:10.0.0.5"
    (tmp_path / "n.key").write_bytes(key)
    assert pki.load(tmp_path / "n.crt", tmp_path / "n.key").common_name == "system:node:n1"
    with pytest.raises(Invalid):
        pki.sign_csr(ca, b"garbage", client=True)


def test_mutual_tls_handshake_with_issued_certificates(ca):
    """What the API server and its clients do: the server proves 127.0.0.1, the client proves its CN."""
    server = pki.issue(ca, "kube-apiserver", dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    client = pki.issue(ca, "kubernetes-admin", organizations=["kubeadm:cluster-admins"], client=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.load_cert_chain_pem(server_ctx, server.cert_pem(), server.key_pem())
    server_ctx.load_verify_locations(cadata=ca.cert_pem().decode())
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(10)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        entry = pki.load_kubeconfig(pki.kubeconfig(
            f"https://127.0.0.1:{port}", ca.cert_pem(), "kubernetes-admin",
            client_cert_pem=client.cert_pem(), client_key_pem=client.key_pem(),
        ))
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                entry.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
        thread.join(5)
    subject = dict(x[0] for x in seen["peer"]["subject"])  # type: ignore[index]
    assert subject == {"commonName": "kubernetes-admin", "organizationName": "kubeadm:cluster-admins"}


def test_signed_by(ca):
    other = pki.new_ca("other")
    leaf = pki.issue(ca, "x", client=True)
    assert pki.signed_by(leaf.cert, ca.cert)
    assert not pki.signed_by(leaf.cert, other.cert)
