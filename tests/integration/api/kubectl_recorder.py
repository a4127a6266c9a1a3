"""A tiny recording HTTPS server for watching what real kubectl sends.

It serves legacy discovery and the OpenAPI documents from kapal's own modules, answers other requests from a
table the test fills in (or 404 Status), and records every request with its headers and raw body. Tests use it
to decode the exact bytes kubectl puts on the wire (protobuf bodies, patches) and to check that kubectl accepts
our OpenAPI documents (explain, fieldValidation support).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_binary(version: str) -> str:
    path = KUBECTL_DIR / f"kubectl.{version}"
    if not path.exists():
        pytest.skip(f"kubectl {version} is not installed ({path} missing)")
    return str(path)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[Recorded], Reply | None]


def status(code: int, reason: str, message: str, **details) -> Reply:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return code, {"Content-Type": "application/json"}, json.dumps(body).encode()


def ok_json(obj, code: int = 200) -> Reply:
    return code, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _discovery(path: str) -> Reply | None:
    from kapal.kube.meta import resources as reg

    if path == "/api":
        return ok_json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
    if path == "/apis":
        groups = []
        for group, versions in reg.groups().items():
            if not group:
                continue
            vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": vs, "preferredVersion": vs[0]})
        return ok_json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    rs = reg.by_group_version(group, version)
    if not rs:
        return None
    out = []
    for r in rs:
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub in r.subresources:
            out.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]})
    return ok_json({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": r.api_version, "resources": out})


def _openapi(req: Recorded) -> Reply | None:
    from kapal.errors import NotFound
    from kapal.kube.api import openapi

    if req.path == "/openapi/v3":
        return ok_json(openapi.v3_index())
    if req.path.startswith("/openapi/v3/"):
        try:
            g, v = openapi.v3_lookup(req.path)
        except NotFound:
            return None
        return 200, {"Content-Type": "application/json"}, openapi.v3_document_bytes(g, v)
    if req.path == "/openapi/v2":
        if openapi.V2_PROTOBUF_CONTENT_TYPE in req.headers.get("accept", ""):
            return 200, {"Content-Type": openapi.V2_PROTOBUF_RESPONSE_CONTENT_TYPE}, openapi.v2_protobuf()
        return 200, {"Content-Type": "application/json"}, openapi.v2_document_bytes()
    return None


@dataclass
class RecordingServer:
    """Serves discovery + OpenAPI, answers from `handlers`, records everything. Use as a context manager."""

    workdir: Path
    serve_openapi: bool = True
    serve_openapi_v2: bool = True
    handlers: list[Handler] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def __enter__(self) -> RecordingServer:
        cert, key = _self_signed(self.workdir)
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(self.command, url.path, parse_qs(url.query),
                               {k.lower(): v for k, v in self.headers.items()}, body)
                outer.requests.append(req)
                try:
                    code, headers, payload = outer._reply(req)
                except Exception as e:  # a broken handler must show up as a 500 in the test, not hang kubectl
                    code, headers, payload = status(500, "InternalError", f"recorder: {e!r}")
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.port = self._server.server_address[1]
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "rec",
            "clusters": [{"name": "rec", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                     "insecure-skip-tls-verify": True}}],
            "users": [{"name": "rec", "user": {"token": "recording"}}],
            "contexts": [{"name": "rec", "context": {"cluster": "rec", "user": "rec", "namespace": "default"}}],
        }))
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _reply(self, req: Recorded) -> Reply:
        for handler in self.handlers:
            reply = handler(req)
            if reply is not None:
                return reply
        if req.method == "GET":
            if req.path == "/version":
                return ok_json({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})
            if self.serve_openapi and (req.path.startswith("/openapi/v3")
                                       or (self.serve_openapi_v2 and req.path == "/openapi/v2")):
                reply = _openapi(req)
                if reply is not None:
                    return reply
            reply = _discovery(req.path)
            if reply is not None:
                return reply
        return status(404, "NotFound", f"the server could not find the requested resource ({req.path})")

    def kubectl(self, version: str, *args: str, stdin: str | None = None, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        cache = self.workdir / f"cache-{version}"
        cmd = [kubectl_binary(version), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(cache), *args]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        full_env["HOME"] = str(self.workdir)
        full_env.update(env or {})
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env)

    def sent(self, method: str, path_suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def reset(self) -> None:
        self.requests.clear()
        self.handlers.clear()
        shutil.rmtree(self.workdir / "cache", ignore_errors=True)


def _self_signed(workdir: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recorder")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "rec.crt", workdir / "rec.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
