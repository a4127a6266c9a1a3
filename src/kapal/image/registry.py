"""Registry HTTP API v2 client (stdlib http.client, thread-safe per connection).

Transport as Docker chooses it: HTTPS verified against the system CAs plus
`<certs_dir>/<host[:port]>/ca.crt` (and `client.cert`/`client.key`); for
127.0.0.0/8, ::1, localhost (any port) and registries marked insecure, HTTPS
without verification and then plain HTTP. Auth from the registry's
challenge (`WWW-Authenticate`): anonymous, Basic, or Bearer tokens fetched
from the realm with the credentials (if any) for the repository scope.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Forbidden, Invalid, KapalError, NotFound, Temporary, Unauthorized

from . import manifests as mf

DOCKER_HUB_API = "registry-1.docker.io"
USER_AGENT = "kapal/0.1"
_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token or self.registry_token)

    @classmethod
    def from_x_registry_auth(cls, header: str | None) -> Credentials:
        """Decode Docker's X-Registry-Auth header (base64url JSON); `e30=` ({}) is anonymous."""
        if not header:
            return cls()
        try:
            padded = header + "=" * (-len(header) % 4)
            doc = json.loads(base64.urlsafe_b64decode(padded))
        except ValueError as e:
            raise Invalid(f"malformed X-Registry-Auth header: {e}") from e
        if not isinstance(doc, dict):
            return cls()
        return cls(
            doc.get("username", "") or "",
            doc.get("password", "") or "",
            doc.get("identitytoken", "") or "",
            doc.get("registrytoken", "") or "",
        )


@dataclass
class RegistryConfig:
    """Engine-wide registry settings: insecure registries (host[:port] or CIDR) and the certs directory."""

    insecure: list[str] = field(default_factory=list)
    certs_dir: Path = Path("/etc/kapal/certs.d")

    def is_insecure(self, host: str) -> bool:
        name, port = _split_host_port(host)
        if name == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return True
        for entry in self.insecure:
            if entry in (host, name):
                return True
            if ip is not None and "/" in entry:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False


def _split_host_port(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, int(port)
    return host, None


class RegistryError(KapalError):
    pass


def _error_from(status: int, body: bytes, what: str) -> KapalError:
    detail = ""
    try:
        errors = json.loads(body).get("errors") or []
        detail = "; ".join(
            f"{str(e.get('code', '')).lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ") for e in errors
        )
    except (ValueError, AttributeError):
        detail = body[:200].decode("utf-8", "replace").strip()
    msg = f"{what}: {detail or http.client.responses.get(status, str(status))}"
    if status == 401:
        return Unauthorized(msg)
    if status == 403:
        return Forbidden(msg)
    if status == 404:
        return NotFound(msg)
    if status in (429, 502, 503, 504):
        return Temporary(msg)
    err = RegistryError(msg)
    err.http_status = 500
    return err


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """One registry host, used for one repository at a time (scope of the bearer token)."""

    def __init__(self, host: str, creds: Credentials | None = None, config: RegistryConfig | None = None) -> None:
        self.host = DOCKER_HUB_API if host == "docker.io" else host
        self.creds = creds or Credentials()
        self.config = config or RegistryConfig()
        self._scheme: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._auth_lock = threading.Lock()
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, str] = {}
        self._local = threading.local()

    # ------------------------------------------------------------ transport

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        certs = self.config.certs_dir / self.host
        if certs.is_dir():
            for ca in sorted(certs.glob("*.crt")):
                if ca.name != "client.cert":
                    ctx.load_verify_locations(cafile=str(ca))
            cert, key = certs / "client.cert", certs / "client.key"
            if cert.exists() and key.exists():
                ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            assert self._ssl is not None
            return http.client.HTTPSConnection(host, timeout=_TIMEOUT, context=self._ssl)
        return http.client.HTTPConnection(host, timeout=_TIMEOUT)

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(self.scheme, self.host)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @property
    def scheme(self) -> str:
        if self._scheme is None:
            self.ping()
        assert self._scheme is not None
        return self._scheme

    def ping(self) -> None:
        """GET /v2/: decides the scheme and learns the auth challenge."""
        insecure = self.config.is_insecure(self.host)
        attempts = [("https", True)] if not insecure else [("https", False), ("http", False)]
        last: Exception | None = None
        for scheme, verify in attempts:
            self._ssl = self._ssl_context(verify) if scheme == "https" else None
            conn = self._connect(scheme, self.host)
            try:
                conn.request("GET", "/v2/", headers={"User-Agent": USER_AGENT})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                last = e
                conn.close()
                continue
            conn.close()
            if resp.status not in (200, 401):
                last = _error_from(resp.status, b"", f"registry {self.host} answered /v2/ with {resp.status}")
                continue
            self._scheme = scheme
            if resp.status == 401:
                self._learn_challenge(resp.getheader("WWW-Authenticate", ""))
            return
        if isinstance(last, ssl.SSLCertVerificationError):
            raise Invalid(
                f"cannot verify the TLS certificate of registry {self.host}: {last.verify_message}. Put its CA in "
                f"{self.config.certs_dir / self.host}/ca.crt or mark it insecure (--insecure-registry {self.host})"
            )
        if isinstance(last, KapalError):
            raise last
        raise Temporary(f"cannot reach registry {self.host}: {last}")

    # ------------------------------------------------------------ auth

    def _learn_challenge(self, header: str) -> None:
        scheme, _, rest = header.partition(" ")
        self._challenge = (scheme.lower(), dict(_CHALLENGE.findall(rest)))

    def _authorization(self, scope: str) -> str | None:
        if self._challenge is None:
            return None
        kind, params = self._challenge
        if kind == "basic":
            if self.creds.anonymous:
                return None
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if kind == "bearer":
            if self.creds.registry_token:
                return "Bearer " + self.creds.registry_token
            with self._auth_lock:
                token = self._tokens.get(scope)
                if token is None:
                    token = self._tokens[scope] = self._fetch_token(params, scope)
            return "Bearer " + token
        return None

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise Unauthorized(f"registry {self.host} asked for a bearer token without a realm")
        query = {"service": params.get("service", "")} if params.get("service") else {}
        if scope:
            query["scope"] = scope
        url = urllib.parse.urlsplit(realm)
        headers = {"User-Agent": USER_AGENT}
        if not self.creds.anonymous and self.creds.username:
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        ctx = self._ssl_context(not self.config.is_insecure(url.netloc)) if url.scheme == "https" else None
        conn = (
            http.client.HTTPSConnection(url.netloc, timeout=_TIMEOUT, context=ctx)
            if url.scheme == "https"
            else http.client.HTTPConnection(url.netloc, timeout=_TIMEOUT)
        )
        path = url.path or "/"
        sep = "&" if url.query else ""
        target = f"{path}?{url.query}{sep}{urllib.parse.urlencode(query)}"
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise Temporary(f"cannot reach the token server {realm}: {e}") from e
        finally:
            conn.close()
        if resp.status != 200:
            raise _error_from(resp.status, body, f"token server {realm} refused {scope or 'access'}")
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise Unauthorized(f"token server {realm} answered without a token")
        return token

    # ------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        ok: tuple[int, ...] = (200,),
        what: str = "",
        stream: bool = False,
    ) -> http.client.HTTPResponse:
        """One request with auth and redirects; a non-`ok` status becomes a KapalError."""
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        for attempt in range(3):
            auth = self._authorization(scope)
            h = dict(hdrs)
            if auth:
                h["Authorization"] = auth
            if body is None and method in ("PUT", "POST", "PATCH"):
                h["Content-Length"] = "0"
            try:
                conn = self._conn()
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self._drop_conn()
                if attempt < 2 and (body is None or isinstance(body, bytes)):
                    continue
                raise Temporary(f"{what or path}: connection to {self.host} failed: {e}") from e
            if resp.status == 401 and attempt == 0:
                resp.read()
                challenge = resp.getheader("WWW-Authenticate", "")
                with self._auth_lock:
                    self._learn_challenge(challenge)
                    self._tokens.pop(scope, None)
                if self._challenge and (self._challenge[0] == "bearer" or not self.creds.anonymous):
                    if hasattr(body, "seek"):
                        body.seek(0)  # type: ignore[union-attr]
                    continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = resp.getheader("Location", "")
                resp.read()
                return self._follow(method, location, hdrs, ok, what)
            if resp.status not in ok:
                data = resp.read()
                raise _error_from(resp.status, data, what or f"{method} {path}")
            return resp
        raise Unauthorized(f"{what or path}: registry {self.host} refused the credentials")

    def _follow(self, method: str, location: str, headers: dict, ok: tuple[int, ...], what: str):
        for _ in range(5):
            url = urllib.parse.urlsplit(location)
            if not url.netloc:
                url = urllib.parse.urlsplit(f"{self.scheme}://{self.host}{location}")
            ctx = self._ssl_context(not self.config.is_insecure(url.netloc)) if url.scheme == "https" else None
            conn = (
                http.client.HTTPSConnection(url.netloc, timeout=_TIMEOUT, context=ctx)
                if url.scheme == "https"
                else http.client.HTTPConnection(url.netloc, timeout=_TIMEOUT)
            )
            target = url.path + (f"?{url.query}" if url.query else "")
            conn.request(method, target, headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location", "")
                resp.read()
                conn.close()
                continue
            if resp.status not in ok:
                raise _error_from(resp.status, resp.read(), what)
            return resp
        raise RegistryError(f"{what}: too many redirects")

    # ------------------------------------------------------------ API

    @staticmethod
    def scope(repo: str, actions: str = "pull") -> str:
        return f"repository:{repo}:{actions}"

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str | None]:
        """(body, media type, Docker-Content-Digest header) of a tag or digest."""
        shown = f"{self.host}/{repo}" + (f"@{reference}" if ":" in reference else f":{reference}")
        try:
            resp = self.request(
                "GET",
                f"/v2/{repo}/manifests/{reference}",
                scope=self.scope(repo),
                headers={"Accept": mf.ACCEPT},
                what=f"manifest for {shown}",
            )
        except NotFound as e:
            detail = str(e).split(": ", 1)[-1]
            raise NotFound(f"manifest for {shown} not found: {detail}") from None
        body = resp.read()
        return body, mf.media_type_of(body, resp.getheader("Content-Type")), resp.getheader("Docker-Content-Digest")

    def open_blob(self, repo: str, digest: str) -> http.client.HTTPResponse:
        return self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", scope=self.scope(repo), what=f"blob {digest} of {repo}", stream=True
        )

    def blob_exists(self, repo: str, digest: str, actions: str = "pull") -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scope=self.scope(repo, actions), ok=(200, 404), what="blob check"
        )
        resp.read()
        return resp.status == 200

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False when the registry wants an upload instead."""
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/?{q}", scope=self.scope(repo, "pull,push"), ok=(201, 202), what="mount"
        )
        resp.read()
        if resp.status == 202:
            self._cancel_upload(repo, resp.getheader("Location", ""))
        return resp.status == 201

    def _cancel_upload(self, repo: str, location: str) -> None:
        if not location:
            return
        try:
            self.request("DELETE", self._path_of(location), scope=self.scope(repo, "pull,push"), ok=(204, 404)).read()
        except KapalError:
            pass

    def _path_of(self, location: str) -> str:
        url = urllib.parse.urlsplit(location)
        return url.path + (f"?{url.query}" if url.query else "")

    def upload_blob(self, repo: str, digest: str, size: int, body: BinaryIO) -> None:
        """Monolithic upload: POST for a session, then PUT ?digest= with the whole blob."""
        scope = self.scope(repo, "pull,push")
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,), what=f"upload of {digest}")
        resp.read()
        location = self._path_of(resp.getheader("Location", ""))
        sep = "&" if "?" in location else "?"
        resp = self.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            scope=scope,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body,
            ok=(201, 204),
            what=f"upload of {digest}",
        )
        resp.read()

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str | None:
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            scope=self.scope(repo, "pull,push"),
            headers={"Content-Type": media_type},
            body=body,
            ok=(201, 200),
            what=f"manifest {repo}:{reference}",
        )
        resp.read()
        return resp.getheader("Docker-Content-Digest")
