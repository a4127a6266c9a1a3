"""Registry access the way Docker does it: Basic auth, Bearer tokens from a realm, TLS with a custom CA."""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import socket
import threading
import warnings

import pytest
from image_helpers import EngineProcess, LocalRegistry, cleanup_tree

pytestmark = pytest.mark.root


def docker_config(tmp_path, registry_host: str, user: str, password: str) -> dict:
    """A DOCKER_CONFIG dir with auths for the registry, as `docker login` writes it."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {registry_host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(cfg)}


def run_as(engine, env: dict, *args: str):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return engine.run(*args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_basic_auth(engine, rootfs_tar, tmp_path, unique):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"kapal:{hashed}\n")
    registry = LocalRegistry(tmp_path / "reg", htpasswd=htpasswd)
    try:
        ref = f"{registry.host}/{unique}/private:1"
        engine.ok("import", str(rootfs_tar), ref)
        r = engine.run("push", ref)
        assert r.returncode == 1 and b"UNAUTHORIZED" in r.stderr.upper()
        good = docker_config(tmp_path, registry.host, "kapal", "s3cret")
        assert run_as(engine, good, "push", ref).returncode == 0
        engine.ok("rmi", ref)
        assert engine.run("pull", ref).returncode == 1
        r = run_as(engine, good, "pull", ref)
        assert r.returncode == 0, r.stderr
        engine.ok("rmi", ref)
    finally:
        registry.stop()


class TokenProxy(http.server.ThreadingHTTPServer):
    """A registry front that wants Bearer tokens from its own realm (/token, Basic kapal:pw), like Docker Hub."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tokens: set[str] = set()
        self.token_requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        server: TokenProxy = self.server  # type: ignore[assignment]
        if self.path.startswith("/token"):
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"kapal:pw").decode():
                self._reply(401, b'{"details":"bad credentials"}')
                return
            token = os.urandom(8).hex()
            server.tokens.add(token)
            server.token_requests.append(self.path)
            self._reply(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in server.tokens:
            challenge = f'Bearer realm="http://{server.host}/token",service="kapal-test"'
            self._reply(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}',
                {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
            )
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(server.upstream)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out = {
            k: v for k, v in resp.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")
        }
        if "Location" in out:
            out["Location"] = out["Location"].replace(server.upstream, server.host)
        self._reply(resp.status, data if self.command != "HEAD" else b"", out)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


def test_bearer_token_auth(engine, registry, rootfs_tar, tmp_path, unique):
    proxy = TokenProxy(registry.host)
    try:
        ref = f"{proxy.host}/{unique}/tok:1"
        engine.ok("import", str(rootfs_tar), ref)
        r = engine.run("push", ref)
        assert r.returncode == 1 and b"refused" in r.stderr
        good = docker_config(tmp_path, proxy.host, "kapal", "pw")
        r = run_as(engine, good, "push", ref)
        assert r.returncode == 0, r.stderr
        assert any(f"scope=repository%3A{unique}%2Ftok%3Apull%2Cpush" in p for p in proxy.token_requests)
        engine.ok("rmi", ref)
        r = run_as(engine, good, "pull", ref)
        assert r.returncode == 0, r.stderr
        engine.ok("rmi", ref)
    finally:
        proxy.shutdown()
        proxy.server_close()


def _primary_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
        except OSError:
            ip = "127.0.0.1"
    if ipaddress.ip_address(ip).is_loopback:
        pytest.skip("no non-loopback address to serve TLS on (loopback registries are insecure by design)")
    return ip


def make_ca_and_cert(tmp_path, ip: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kapal test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {name: tmp_path / name for name in ("ca.crt", "server.crt", "server.key")}
    paths["ca.crt"].write_bytes(ca.public_bytes(pem))
    paths["server.crt"].write_bytes(cert.public_bytes(pem))
    paths["server.key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_tls_with_a_custom_ca(rootfs_tar, tmp_path, unique):
    ip = _primary_ip()
    pki = make_ca_and_cert(tmp_path, ip)
    registry = LocalRegistry(tmp_path / "reg", bind=ip, tls=(pki["server.crt"], pki["server.key"]))
    certs = tmp_path / "certs.d"
    certs.mkdir()
    eng = EngineProcess(tmp_path, extra=["--registry-certs-dir", str(certs)])
    eng.start()
    try:
        ref = f"{registry.host}/{unique}/tls:1"
        eng.ok("import", str(rootfs_tar), ref)
        r = eng.run("push", ref)
        assert r.returncode == 1 and b"cannot verify the TLS certificate" in r.stderr, r.stderr
        (certs / registry.host).mkdir()
        (certs / registry.host / "ca.crt").write_bytes(pki["ca.crt"].read_bytes())
        eng.ok("push", ref)
        eng.ok("rmi", ref)
        eng.ok("pull", ref)
        assert eng.ok("run", "--rm", ref, "cat", "/etc/motd") == "original\n"
    finally:
        eng.kill()
        registry.stop()
        cleanup_tree(eng.data_root)
