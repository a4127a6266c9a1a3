"""The kubelet's HTTPS API (port 10250): what the API server proxies to, on upstream's paths.

    GET  /healthz                                    ok
    GET  /pods                                       the pods this kubelet runs (a PodList)
    GET  /containerLogs/{ns}/{pod}/{container}       follow, previous, sinceSeconds, sinceTime, timestamps,
                                                     tailLines, limitBytes
    GET|POST /exec/{ns}/{pod}/{container}            ?command=...&stdin&stdout&stderr&tty (remotecommand.py)
    GET|POST /attach/{ns}/{pod}/{container}
    GET|POST /portForward/{ns}/{pod}                 (portforward.py)

Serving certificate from --tls-cert-file/--tls-private-key-file, else a self-signed one under
<root>/pki (as upstream). Authentication: client certificates signed by --client-ca-file, bearer tokens
through a TokenReview (--authentication-token-webhook), anonymous requests if --anonymous-auth; then
--authorization-mode AlwaysAllow or Webhook (a SubjectAccessReview per request, cached briefly).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kapal import errors

from . import portforward
from .containers import ContainerRecord
from .engineapi import EngineStream
from .remotecommand import StreamOptions, UpgradeFailed, open_streams, pump

if TYPE_CHECKING:
    from pathlib import Path

    from .config import KubeletConfig
    from .kubelet import Kubelet
    from .pods import PodWorker

log = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


def _error_response(e: errors.KapalError) -> web.Response:
    return _status(e.http_status, e.reason, str(e))


def serving_cert_files(c: KubeletConfig, node_ip: str, algorithm: str = "RSA-2048") -> tuple[Path, Path]:
    """--tls-cert-file/--tls-private-key-file, else a self-signed pair under the kubelet's pki dir, made once (as
    upstream: its own CA `<node>-ca@<time>` and a serving certificate for the node's name and IP)."""
    if c.tls_cert_file and c.tls_private_key_file:
        return c.tls_cert_file, c.tls_private_key_file
    from kapal.kube import pki

    d = c.pki_dir
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = d / "kubelet.crt", d / "kubelet.key"
    if not (cert.exists() and key.exists()):
        stamp = int(time.time())
        ca = pki.new_ca(f"{c.node_name}-ca@{stamp}", algorithm=algorithm)
        hosts = sorted({c.node_name, node_ip, "localhost"})
        ips = [h for h in hosts if h[:1].isdigit()] + ["127.0.0.1"]
        names = [h for h in hosts if not h[:1].isdigit()]
        pki.write(pki.issue(ca, f"{c.node_name}@{stamp}", dns_names=names, ip_addresses=ips, server=True,
                            algorithm=algorithm), cert, key)
    return cert, key


def serving_ssl(kl: Kubelet) -> ssl.SSLContext:
    c = kl.config
    cert, key = serving_cert_files(c, kl.node_ip)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if c.client_ca_file:
        ctx.load_verify_locations(cafile=str(c.client_ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _peer(request: web.Request) -> Caller | None:
    if request.transport is None:
        return None
    cert = request.transport.get_extra_info("peercert")
    if not cert:
        return None
    cn = ""
    orgs = []
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    return Caller(cn, tuple(orgs))


_SUBRESOURCE = {"stats": "stats", "metrics": "metrics", "logs": "log", "spec": "spec", "pods": "proxy",
                "healthz": "proxy", "containerLogs": "proxy", "exec": "proxy", "attach": "proxy",
                "portForward": "proxy", "run": "proxy", "configz": "proxy", "runningpods": "proxy"}


class KubeletServer:
    def __init__(self, kl: Kubelet) -> None:
        self.kl = kl
        self.runner: web.AppRunner | None = None
        self.healthz_runner: web.AppRunner | None = None
        self._auth_cache: dict[tuple[Any, ...], tuple[float, bool, str]] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> int:
        app = web.Application(middlewares=[self._auth], client_max_size=1 << 20)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/pods", self.pods)
        app.router.add_get("/pods/", self.pods)
        app.router.add_get("/runningpods/", self.pods)
        app.router.add_get("/configz", self.configz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        for verb in ("exec", "attach"):
            app.router.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.exec_attach)
            app.router.add_route("*", f"/{verb}/{{ns}}/{{pod}}/{{uid}}/{{container}}", self.exec_attach)
        app.router.add_route("*", "/portForward/{ns}/{pod}", self.port_forward)
        app.router.add_route("*", "/portForward/{ns}/{pod}/{uid}", self.port_forward)
        if self.kl.stats is not None:
            from .stats import add_routes

            add_routes(app, self.kl.stats)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        ctx = await asyncio.to_thread(serving_ssl, self.kl)
        site = web.TCPSite(self.runner, self.kl.config.address, self.kl.config.port, ssl_context=ctx,
                           reuse_address=True)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        return int(sockets[0].getsockname()[1])

    async def start_healthz(self, address: str, port: int) -> None:
        """Plain HTTP GET /healthz -> ok (kubeadm's kubelet-check polls 127.0.0.1:10248)."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        self.healthz_runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await self.healthz_runner.setup()
        await web.TCPSite(self.healthz_runner, address, port, reuse_address=True).start()

    async def stop(self) -> None:
        for runner in (self.runner, self.healthz_runner):
            if runner is not None:
                await runner.cleanup()
        self.runner = self.healthz_runner = None

    # ---- authn/authz -------------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            caller = await self._authenticate(request)
            await self._authorize(request, caller)
            return await handler(request)
        except UpgradeFailed as e:
            log.info("%s: %s", request.path, e)
            return e.response or _status(500, "InternalError", str(e))
        except errors.KapalError as e:
            return _error_response(e)

    async def _authenticate(self, request: web.Request) -> Caller:
        peer = _peer(request)
        if peer is not None:
            return peer
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer ") and self.kl.config.authentication_token_webhook:
            return await self._token_review(auth[7:].strip())
        if self.kl.config.anonymous_auth:
            return Caller("system:anonymous", ("system:unauthenticated",))
        raise errors.Unauthorized("Unauthorized")

    async def _token_review(self, token: str) -> Caller:
        from kapal.kube.client.kinds import resource

        key = ("token", token)
        cached = self._auth_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            if not cached[1]:
                raise errors.Unauthorized("Unauthorized")
            name, _, groups = cached[2].partition("\n")
            return Caller(name, tuple(g for g in groups.split(",") if g))
        if self.kl.client is None:
            raise errors.Unauthorized("Unauthorized")
        r = resource("authentication.k8s.io", "tokenreviews")
        out = await self.kl.client.create(r, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                              "spec": {"token": token}})
        st = out.get("status") or {}
        user = st.get("user") or {}
        ok = bool(st.get("authenticated"))
        self._auth_cache[key] = (time.monotonic() + AUTH_CACHE_SECONDS, ok,
                                 f"{user.get('username', '')}\n{','.join(user.get('groups') or [])}")
        if not ok:
            raise errors.Unauthorized("Unauthorized")
        return Caller(user.get("username", ""), tuple(user.get("groups") or []), user.get("uid", ""))

    async def _authorize(self, request: web.Request, caller: Caller) -> None:
        mode = self.kl.config.authorization_mode
        if mode == "AlwaysAllow" or request.path == "/healthz":
            return
        if mode != "Webhook":
            raise errors.Forbidden(f"authorization mode {mode} denies everything")
        first = request.path.strip("/").split("/", 1)[0]
        sub = _SUBRESOURCE.get(first, "proxy")
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            request.method, "get")
        key = (caller.name, caller.groups, verb, sub)
        cached = self._auth_cache.get(key)
        if cached is None or cached[0] < time.monotonic():
            if self.kl.client is None:
                raise errors.Forbidden("no API server to ask for authorization")
            from kapal.kube.client.kinds import resource

            r = resource("authorization.k8s.io", "subjectaccessreviews")
            out = await self.kl.client.create(r, {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": caller.name, "groups": list(caller.groups), "uid": caller.uid,
                         "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": sub,
                                                "name": self.kl.config.node_name}}})
            allowed = bool((out.get("status") or {}).get("allowed"))
            cached = (time.monotonic() + AUTH_CACHE_SECONDS, allowed, "")
            self._auth_cache[key] = cached
        if not cached[1]:
            raise errors.Forbidden(f"Forbidden (user={caller.name}, verb={verb}, resource=nodes, subresource={sub})")

    # ---- simple endpoints --------------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def configz(self, request: web.Request) -> web.Response:
        c = self.kl.config
        cfg = {"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1",
               "clusterDNS": c.cluster_dns, "clusterDomain": c.cluster_domain, "maxPods": c.max_pods,
               "cgroupDriver": c.cgroup_driver, "cgroupRoot": c.cgroup_root, "staticPodPath":
               str(c.pod_manifest_path or ""), "port": self.kl.port, "podCIDR": self.kl.pod_cidr or "",
               "failSwapOn": c.fail_swap_on}
        return web.json_response({"kubeletconfig": cfg})

    async def pods(self, request: web.Request) -> web.Response:
        items = []
        for w in list(self.kl.workers.values()):
            pod = json.loads(json.dumps(w.pod))
            if w.last_status is not None:
                pod["status"] = w.last_status
            pod.setdefault("kind", "Pod")
            pod.setdefault("apiVersion", "v1")
            items.append(pod)
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    # ---- lookups -----------------------------------------------------------------------------------------------

    def _worker(self, request: web.Request) -> PodWorker:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        w = self.kl.find_worker(ns, name)
        if w is None:
            raise errors.NotFound(f'pod "{name}" in namespace "{ns}" not found on node {self.kl.config.node_name}')
        uid = request.match_info.get("uid")
        if uid and uid != w.uid:
            raise errors.NotFound(f'pod "{name}" with UID {uid} not found')
        return w

    def _container(self, w: PodWorker, name: str, previous: bool = False) -> ContainerRecord:
        spec = w.pod.get("spec") or {}
        kinds = {c["name"]: "regular" for c in spec.get("containers") or []}
        kinds.update({c["name"]: "init" for c in spec.get("initContainers") or []})
        pod_name = w.pod["metadata"]["name"]
        if name not in kinds:
            raise errors.Invalid(f"container {name} is not valid for pod {pod_name}")
        recs = w.records(name, kinds[name])
        if previous:
            older = [r for r in recs[1:] if r.exited]
            if not older:
                raise errors.Invalid(f'previous terminated container "{name}" in pod "{pod_name}" not found')
            return older[0]
        if not recs:
            waiting = w.waiting.get(name)
            why = waiting[0] if waiting else ("PodInitializing" if kinds[name] == "regular" and
                                              spec.get("initContainers") else "ContainerCreating")
            if why in ("ErrImagePull", "ImagePullBackOff"):
                raise errors.Invalid(f'container "{name}" in pod "{pod_name}" is waiting to start: trying and '
                                     "failing to pull image")
            raise errors.Invalid(f'container "{name}" in pod "{pod_name}" is waiting to start: {why}')
        return recs[0]

    # ---- logs --------------------------------------------------------------------------------------------------

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        w = self._worker(request)
        rec = self._container(w, request.match_info["container"], _bool(q.get("previous")))
        follow = _bool(q.get("follow"))
        timestamps = _bool(q.get("timestamps"))
        since = None
        if q.get("sinceSeconds"):
            since = time.time() - _int(q["sinceSeconds"], "sinceSeconds")
        elif q.get("sinceTime"):
            try:
                since = dt.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00")).timestamp()
            except ValueError as e:
                raise errors.Invalid(f'invalid sinceTime "{q["sinceTime"]}": {e}') from e
        tail = _int(q["tailLines"], "tailLines") if q.get("tailLines") else None
        limit = _int(q["limitBytes"], "limitBytes") if q.get("limitBytes") else None
        if limit is not None and limit <= 0:
            raise errors.Invalid("limitBytes must be a positive integer")
        stream = self.kl.engine.logs(rec.id, follow=follow and rec.running, timestamps=timestamps, since=since,
                                     tail=tail, tty=rec.tty)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        first = True
        sent = 0
        try:
            async for _, chunk in stream:
                if first:
                    await resp.prepare(request)
                    first = False
                if limit is not None:
                    chunk = chunk[:limit - sent]
                if chunk:
                    await resp.write(chunk)
                    sent += len(chunk)
                if limit is not None and sent >= limit:
                    break
        except ConnectionError:  # the client went away (kubectl logs -f interrupted)
            return resp
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if first:
            await resp.prepare(request)
        await resp.write_eof()
        return resp

    # ---- exec / attach -----------------------------------------------------------------------------------------

    async def exec_attach(self, request: web.Request) -> web.StreamResponse:
        verb = request.path.strip("/").split("/", 1)[0]
        w = self._worker(request)
        rec = self._container(w, request.match_info["container"])
        if not rec.running:
            raise errors.Invalid(f"container {rec.name} is not running (state: {rec.state})" if verb == "attach"
                                 else f"cannot exec in a stopped container: container {rec.name} is not running")
        opts = StreamOptions.from_query(request.query)
        engine = self.kl.engine
        command = request.query.getall("command", []) if verb == "exec" else []
        if verb == "exec" and not command:
            raise errors.Invalid("you must specify at least one command for the container")
        if verb == "exec":
            exec_id = await engine.exec_create(rec.id, command, tty=opts.tty, stdin=opts.stdin, stdout=opts.stdout,
                                               stderr=opts.stderr)
            streams = await open_streams(request, opts)
            try:
                engine_stream: EngineStream = await engine.exec_start(exec_id, tty=opts.tty)
            except errors.KapalError as e:
                await streams.write_status(_failure_status(e))
                await streams.close()
                return streams.response or web.Response()

            async def exit_code() -> int | None:
                for _ in range(100):
                    info = await engine.exec_inspect(exec_id)
                    if not info.get("Running"):
                        code = info.get("ExitCode")
                        return int(code) if code is not None else None
                    await asyncio.sleep(0.02)
                return None

            async def resize(h: int, wd: int) -> None:
                await engine.exec_resize(exec_id, h, wd)

            async def started() -> None:
                for _ in range(100):
                    info = await engine.exec_inspect(exec_id)
                    if info.get("Running") or info.get("Pid") or info.get("ExitCode") is not None:
                        return
                    await asyncio.sleep(0.01)

            await pump(streams, engine_stream, opts, resize if opts.tty else None, exit_code, command, started)
            return streams.response or web.Response()
        streams = await open_streams(request, opts)
        try:
            engine_stream = await engine.attach(rec.id, stdin=opts.stdin, stdout=opts.stdout or opts.tty,
                                                stderr=opts.stderr, tty=rec.tty)
        except errors.KapalError as e:
            await streams.write_status(_failure_status(e))
            await streams.close()
            return streams.response or web.Response()

        async def no_code() -> int | None:
            return None

        async def resize_container(h: int, wd: int) -> None:
            await engine.resize_container(rec.id, h, wd)

        await pump(streams, engine_stream, opts, resize_container if opts.tty else None, no_code, None)
        return streams.response or web.Response()

    # ---- port-forward ------------------------------------------------------------------------------------------

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        w = self._worker(request)
        sb = w.sandbox
        if sb is None or not sb.network_ready:
            raise errors.Invalid(f"pod {w.pod['metadata']['name']} has no network (its sandbox is not running)")
        return await portforward.serve(request, sb.netns if not sb.host_network else None,
                                       w.pod["metadata"]["name"])


def _failure_status(e: errors.KapalError) -> dict[str, Any]:
    message = getattr(e, "engine_message", None) or str(e)
    return {"metadata": {}, "status": "Failure", "message": f"error executing command in container: {message}",
            "reason": "InternalError", "code": 500}


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true")


def _int(v: str, name: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise errors.Invalid(f'invalid {name} "{v}": must be an integer') from None
