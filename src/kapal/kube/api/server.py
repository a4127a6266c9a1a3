"""The API server: HTTPS front door, authentication, authorization, routing; `serve(config)` to run one.

In-process use (tests, `kapal up`):

    server = await serve(ApiServerConfig(data_dir=path, secure_port=0))
    ... server.url, server.admin_kubeconfig, server.ca_file ...
    await server.stop()

or, from synchronous code, `with ServerThread(config) as server: ...`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import platform
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kapal import errors
from kapal.kube.api import authn, bootstrap, discovery, requestinfo, status
from kapal.kube.api.admission import Admission
from kapal.kube.api.allocator import IPAllocator, PortAllocator
from kapal.kube.api.authn import Authenticator, UserInfo
from kapal.kube.api.authz import Attributes, Authorizer
from kapal.kube.api.cache import WatchCache
from kapal.kube.api.config import KUBERNETES_VERSION, ApiServerConfig
from kapal.kube.api.context import ApiContext
from kapal.kube.api.metrics import Metrics
from kapal.kube.api.rest import Rest, json_response
from kapal.kube.api.serving_pki import Pki, ensure_pki, write_admin_kubeconfig
from kapal.kube.api.store import ObjectStore
from kapal.kube.storage import open_backend

log = logging.getLogger(__name__)

_PUBLIC = ("/healthz", "/livez", "/readyz", "/version", "/version/")
_HEALTH = ("/healthz", "/livez", "/readyz")


def server_ssl(pki_files: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki_files.cert_file, pki_files.key_file)
    ctx.load_verify_locations(cafile=str(pki_files.client_ca_file))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _kubelet_ssl(config: ApiServerConfig, pki_files: Pki) -> ssl.SSLContext:
    from kapal.kube.pki.tls import client_context

    if config.kubelet_certificate_authority:
        ctx = client_context(config.kubelet_certificate_authority.read_bytes())
        ctx.check_hostname = False
    else:
        ctx = client_context(verify=False)
    if pki_files.kubelet_client:
        ctx.load_cert_chain(*pki_files.kubelet_client)
    return ctx


def version_info() -> dict[str, Any]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1),
            "gitVersion": KUBERNETES_VERSION, "gitCommit": "kapal", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
            "platform": f"linux/{'amd64' if platform.machine() in ('x86_64', 'AMD64') else platform.machine()}"}


def _advertise_address(config: ApiServerConfig) -> str:
    if config.advertise_address:
        return config.advertise_address
    if config.bind_address not in ("0.0.0.0", "::", ""):
        return config.bind_address
    from kapal.kube import pki

    ip = pki.primary_ipv4()
    return str(ip) if ip is not None else "127.0.0.1"


class Frontend:
    """The aiohttp handler: public health endpoints, then authn → authz → routing, errors as Status."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.rest = Rest(ctx)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        info: requestinfo.RequestInfo | None = None
        code = 500
        try:
            path = request.path
            if path in _PUBLIC or path.startswith(tuple(p + "/" for p in _HEALTH)):
                self._authenticate(request, anonymous_ok=True)
                resp = self.public(request)
            else:
                user = self._authenticate(request, anonymous_ok=False)
                user = self._impersonate(request, user)
                upgrade = "upgrade" in request.headers.get("Connection", "").lower()
                info = requestinfo.parse(request.method, path, request.query.get("watch"), upgrade)
                self._authorize(user, info)
                if info.is_resource:
                    if not self.ctx.ready:
                        err = errors.Temporary("the API server is starting; try again shortly")
                        err.retry_after = 1  # type: ignore[attr-defined]
                        raise err
                    resp = await self.rest.handle(request, info, user)
                else:
                    resp = await self.non_resource(request, user)
            code = resp.status
            return resp
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            code, body = status.status_body(e)
            resp = json_response(code, body)
            retry = getattr(e, "retry_after", None)
            if retry or code == 429:
                resp.headers["Retry-After"] = str(retry or 1)
            return resp
        finally:
            if info is not None and info.is_resource:
                verb = info.verb.upper() if info.verb != "watch" else "WATCH"
                self.ctx.metrics.observe(verb, info.group, info.version, info.plural, info.subresource,
                                         "namespace" if info.namespace else "cluster", code,
                                         time.monotonic() - started)

    # --- authentication and authorization -------------------------------------------------------------------

    def _authenticate(self, request: web.Request, anonymous_ok: bool) -> UserInfo:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        user = self.ctx.authenticator.authenticate(request.headers.get("Authorization"), peercert)
        if user is None:
            if anonymous_ok or self.ctx.config.anonymous_auth:
                return authn.anonymous()
            raise errors.Unauthorized("Unauthorized")
        return user

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        h = request.headers
        name = h.get("Impersonate-User")
        groups = h.getall("Impersonate-Group", [])
        uid = h.get("Impersonate-Uid")
        extra = {k[len("Impersonate-Extra-"):].lower(): h.getall(k) for k in set(h)
                 if k.lower().startswith("impersonate-extra-")}
        if not name and not groups and not uid and not extra:
            return user
        if not name:
            raise errors.Invalid("requested impersonation of groups or extra without impersonating a user")
        checks = []
        if name.startswith("system:serviceaccount:") and name.count(":") == 3:
            _, _, ns, sa = name.split(":")
            checks.append(Attributes(user, "impersonate", ns, "", "v1", "serviceaccounts", name=sa))
        else:
            checks.append(Attributes(user, "impersonate", "", "", "v1", "users", name=name))
        checks += [Attributes(user, "impersonate", "", "", "v1", "groups", name=g) for g in groups]
        if uid:
            checks.append(Attributes(user, "impersonate", "", "authentication.k8s.io", "v1", "uids", name=uid))
        for key, values in extra.items():
            checks += [Attributes(user, "impersonate", "", "authentication.k8s.io", "v1", "userextras",
                                  subresource=key, name=v) for v in values]
        for a in checks:
            ok, _ = self.ctx.authorizer.authorize(a)
            if not ok:
                what = {"users": "user", "groups": "group", "serviceaccounts": "serviceaccount", "uids": "uid",
                        "userextras": "userextras"}[a.resource]
                raise errors.Forbidden(f'{a.resource} "{a.name}" is forbidden: User "{user.name}" cannot impersonate '
                                       f'resource "{a.resource}" in API group "{a.api_group}"'
                                       + (f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster "
                                          "scope") + f" (impersonating {what})")
        if name.startswith("system:serviceaccount:") and not groups:
            ns = name.split(":")[2]
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        return authn.with_authenticated(UserInfo(name, uid or "", tuple(groups), extra))

    def _authorize(self, user: UserInfo, info: requestinfo.RequestInfo) -> None:
        if info.is_resource:
            name = info.name or ""
            if info.plural == "namespaces" and info.name and not info.subresource:
                ns = info.name
            else:
                ns = info.namespace or ""
            a = Attributes(user, info.verb, ns, info.group, info.version, info.plural, info.subresource, name)
        else:
            a = Attributes(user, info.verb, is_resource=False, path=info.path)
        ok, _ = self.ctx.authorizer.authorize(a)
        if ok:
            return
        if not info.is_resource:
            raise errors.Forbidden(f'forbidden: User "{user.name}" cannot {info.verb} path "{info.path}"')
        raise status.forbidden(user.name, info.verb, info.resource, info.plural, info.group,
                               info.namespace if info.plural != "namespaces" or info.subresource else None,
                               info.name, info.subresource)

    # --- non-resource endpoints -----------------------------------------------------------------------------

    def public(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/") or "/"
        if path.startswith("/version"):
            return json_response(200, version_info())
        ready = self.ctx.ready
        base = path.split("/")[1]
        checks = ["ping", "log", "etcd", "poststarthook/start-apiserver-admission-initializer",
                  "poststarthook/rbac/bootstrap-roles", "poststarthook/bootstrap-controller"]
        if base == "readyz":
            checks.insert(2, "informer-sync")
        ok = ready or base == "livez"
        if "verbose" in request.query:
            lines = [f"[{'+' if ok or c == 'ping' else '-'}]{c} {'ok' if ok or c == 'ping' else 'failed: not ready'}"
                     for c in checks]
            lines.append(f"{base} check {'passed' if ok else 'failed'}")
            return web.Response(status=200 if ok else 503, text="\n".join(lines) + "\n")
        return web.Response(status=200 if ok else 503, text="ok" if ok else f"[-]{base} check failed: not ready")

    async def non_resource(self, request: web.Request, user: UserInfo) -> web.Response:
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD"):
            raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
        if path == "/api":
            return json_response(200, discovery.api_versions(f"{self.ctx.advertise_address}:{self.ctx.port}"))
        if path == "/apis":
            return json_response(200, discovery.api_group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.resource_list("", parts[1])
            if doc is not None:
                return json_response(200, doc)
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(parts[1])
            if group is not None:
                return json_response(200, group)
        if parts[0] == "apis" and len(parts) == 3:
            doc = discovery.resource_list(parts[1], parts[2])
            if doc is not None:
                return json_response(200, doc)
        if parts[0] == "openapi":
            return self.openapi(request, path)
        if path == "/metrics":
            return web.Response(text=self.ctx.metrics.render(), content_type="text/plain")
        if path == "/.well-known/openid-configuration":
            issuer = self.ctx.config.service_account_issuer[0]
            return json_response(200, {"issuer": issuer, "jwks_uri": f"{issuer}/openid/v1/jwks",
                                       "response_types_supported": ["id_token"],
                                       "subject_types_supported": ["public"],
                                       "id_token_signing_alg_values_supported": ["RS256"]})
        if path == "/openid/v1/jwks":
            return json_response(200, {"keys": self._jwks()})
        raise errors.NotFound("the server could not find the requested resource")

    def _jwks(self) -> list[dict[str, Any]]:
        import base64

        from kapal.kube.api import tokens

        keys = []
        for kid, k in self.ctx.authenticator.sa_keys.items():
            nums = k.public_numbers()

            def b64(n: int) -> str:
                return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

            keys.append({"use": "sig", "kty": "RSA", "kid": kid or tokens.key_id(k), "alg": "RS256",
                         "n": b64(nums.n), "e": b64(nums.e)})
        return keys

    def openapi(self, request: web.Request, path: str) -> web.Response:
        from kapal.kube.api import openapi

        if path == "/openapi/v2":
            accept = request.headers.get("Accept", "")
            if "com.github.proto-openapi.spec.v2" in accept:
                return web.Response(body=openapi.v2_protobuf(),
                                    content_type=openapi.V2_PROTOBUF_RESPONSE_CONTENT_TYPE)
            if "application/json" not in accept and "*/*" not in accept and accept:
                raise status.NotAcceptable("only application/json and the OpenAPI v2 protobuf are served here")
            return json_response(200, openapi.v2_document_bytes())
        if path == "/openapi/v3":
            return json_response(200, openapi.v3_index())
        group, version = openapi.v3_lookup(path)
        resp = json_response(200, openapi.v3_document_bytes(group, version))
        if request.query.get("hash"):
            resp.headers["Cache-Control"] = "public, immutable"
            resp.headers["Expires"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).strftime(
                "%a, %d %b %Y %H:%M:%S GMT")
        resp.headers["Etag"] = f'"{openapi.v3_hash(group, version)}"'
        return resp


@dataclass
class RunningApiServer:
    """A started server: where it listens, how to reach it, and how to stop it."""

    config: ApiServerConfig
    ctx: ApiContext
    runner: web.AppRunner
    port: int
    ca_file: Path
    admin_kubeconfig: Path | None
    startup_seconds: float
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in list(self.ctx.extra.get("tasks", ())):
            t.cancel()
        await self.ctx.cache.stop()
        await self.runner.cleanup()
        await self.ctx.backend.close()


async def _event_sweeper(ctx: ApiContext) -> None:
    """Events expire (upstream gives them an etcd lease of --event-ttl): delete those not written for that long."""
    from kapal.kube.meta.resources import lookup

    events = lookup("", "v1", "events")
    assert events is not None
    while True:
        await asyncio.sleep(min(60.0, ctx.config.event_ttl / 4))
        cutoff = time.time() - ctx.config.event_ttl
        for entry in list(ctx.cache.resource(events.storage_key).items.values()):
            meta = entry.obj.get("metadata") or {}
            stamp = (entry.obj.get("lastTimestamp") or entry.obj.get("eventTime") or
                     meta.get("creationTimestamp") or "")
            try:
                written = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if written < cutoff:
                try:
                    await ctx.store.delete(events, meta.get("namespace"), meta.get("name", ""), entry.revision)
                except errors.KapalError:
                    pass


async def _compactor(ctx: ApiContext) -> None:
    """Every interval, forget history older than what the previous run saw (upstream's 5-minute rhythm)."""
    previous = 0
    while True:
        await asyncio.sleep(ctx.config.compaction_interval)
        try:
            if previous:
                await ctx.backend.compact(previous)
            previous = await ctx.backend.current_revision()
        except Exception:
            log.exception("compaction failed")


def _raise_fd_limit() -> None:
    """Every watch holds a socket: allow as many as the hard limit permits."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: ApiServerConfig) -> RunningApiServer:
    """Start an API server on config.secure_port (0: a free port) and return once it is ready."""
    started = time.monotonic()
    _raise_fd_limit()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    backend = open_backend(config.storage_dsn)
    pki_files = await asyncio.to_thread(ensure_pki, config)
    from kapal.kube.api import tokens

    cache = WatchCache(backend, config.watch_cache_size, config.watch_queue_size)
    store = ObjectStore(backend, cache)
    sa_keys = [k for p in pki_files.sa_pub_files for k in tokens.load_public_keys(p)]
    static = authn.load_token_file(config.token_auth_file) if config.token_auth_file else None
    authenticator = Authenticator(cache, sa_keys=sa_keys, issuers=config.service_account_issuer,
                                  audiences=config.api_audiences or config.service_account_issuer[:1],
                                  static_tokens=static, bootstrap_tokens=config.enable_bootstrap_token_auth)
    authorizer = Authorizer(config.authorization_modes, cache)
    ips = IPAllocator(config.service_cluster_ip_range)
    ports = PortAllocator(config.service_node_port_range)
    admission = Admission(cache, store, ips, ports)
    signer = tokens.Signer(tokens.load_private_key(pki_files.sa_key_file), config.service_account_issuer[0])
    ctx = ApiContext(config, backend, cache, store, authenticator, authorizer, admission, Metrics(), signer,
                     _kubelet_ssl(config, pki_files), _advertise_address(config))
    ctx.metrics.gauges["etcd_object_counts_revision"] = lambda: cache.revision

    await cache.start()
    await cache.ready.wait()
    admission.repair()

    app = web.Application(client_max_size=config.max_request_bytes * 4, handler_args={"max_field_size": 65536})
    app.router.add_route("*", "/{tail:.*}", Frontend(ctx).__call__)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                           handler_cancellation=True)
    await runner.setup()
    host = None if config.bind_address in ("0.0.0.0", "::", "") else config.bind_address
    sock = socket.socket(socket.AF_INET6 if host and ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host or "0.0.0.0", config.secure_port))
    except OSError as e:
        sock.close()
        await runner.cleanup()
        await backend.close()
        raise errors.FailedPrecondition(f"cannot listen on {host or '0.0.0.0'}:{config.secure_port}: {e.strerror}; "
                                        "is another API server running? pick another --secure-port") from None
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    ctx.port = port
    site = web.SockSite(runner, sock, ssl_context=server_ssl(pki_files), backlog=1024)
    await site.start()
    rest = Rest(ctx)
    await bootstrap.run(rest)
    ctx.ready = True
    admin = write_admin_kubeconfig(config, port) if config.write_admin_kubeconfig else None
    server = RunningApiServer(config, ctx, runner, port, pki_files.ca_file, admin, time.monotonic() - started)
    server._tasks.append(asyncio.create_task(_compactor(ctx), name="compactor"))
    server._tasks.append(asyncio.create_task(_event_sweeper(ctx), name="event-ttl"))
    log.info("API server ready on %s in %.2fs (storage %s)", server.url, server.startup_seconds, config.storage_dsn)
    return server


class ServerThread:
    """Run an API server on its own event loop in a background thread (for synchronous callers and tests)."""

    def __init__(self, config: ApiServerConfig) -> None:
        self.config = config
        self.server: RunningApiServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kapal-apiserver", daemon=True)

    def start(self) -> RunningApiServer:
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(serve(self.config), self._loop).result(60)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
            self.server = None

        async def cancel_the_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> RunningApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
