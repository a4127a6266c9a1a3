"""pods/log|exec|attach|portforward and nodes/proxy go to the kubelet's own paths; pods|services/proxy to the pod.

The kubelet serves upstream's paths (`/containerLogs/{ns}/{pod}/{container}`,
`/exec/...`, `/attach/...`, `/portForward/{ns}/{pod}`), so it needs to know
nothing about the API server. Streaming upgrades (WebSocket `v4/v5.channel.
k8s.io`, SPDY/3.1, SPDY-over-WebSocket) are passed through byte for byte:
the kubelet's 101 goes back to the client and the two sockets are spliced;
any other answer is relayed as an ordinary response (kubectl then falls
back from WebSocket to SPDY, as against a real cluster). pods/{[scheme:]name[:port]}/proxy/...
and services/{...}/proxy/... reach the pod IP, or the Service's first ready endpoint, directly.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from kapal import errors
from kapal.kube.api import status
from kapal.kube.api.authn import UserInfo
from kapal.kube.api.requestinfo import RequestInfo
from kapal.kube.meta.resources import lookup

if TYPE_CHECKING:
    from kapal.kube.api.rest import Rest

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
_HOP_HEADERS = {"host", "authorization", "content-length", "transfer-encoding", "keep-alive", "proxy-connection",
                "te", "trailer"}
_KUBELET_PATH = {"log": "containerLogs", "exec": "exec", "attach": "attach", "portforward": "portForward"}
_ADDRESS_ORDER = ("InternalIP", "Hostname", "InternalDNS", "ExternalIP", "ExternalDNS")
_LOG_PARAMS = ("follow", "previous", "sinceSeconds", "sinceTime", "timestamps", "tailLines", "limitBytes")


class BackendUnavailable(errors.Temporary):
    pass


def node_endpoint(node: dict[str, Any], order: tuple[str, ...] | list[str] = _ADDRESS_ORDER) -> tuple[str, int]:
    """The kubelet's (host, port): the first of the node's addresses in `order` (--kubelet-preferred-address-types)."""
    st = node.get("status") or {}
    port = int(((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250)
    addresses = {a.get("type"): a.get("address") for a in st.get("addresses") or [] if a.get("address")}
    for kind in order or _ADDRESS_ORDER:
        if addresses.get(kind):
            return addresses[kind], port
    raise BackendUnavailable(f'node "{node["metadata"]["name"]}" reports no address for its kubelet yet '
                             "(status.addresses is empty)")


def _container(pod: dict[str, Any], wanted: str | None, sub: str) -> str:
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    others = [c.get("name") for key in ("initContainers", "ephemeralContainers") for c in spec.get(key) or []]
    name = pod["metadata"]["name"]
    if wanted:
        if wanted not in names + others:
            raise errors.Invalid(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(names) == 1:
        return names[0]
    raise errors.Invalid(f"a container name must be specified for pod {name}, choose one of: "
                         f"[{' '.join(n for n in names if n)}]")


async def _target(rest: Rest, request: web.Request, info: RequestInfo) -> tuple[str, int, str]:
    """(host, port, path?query) on the kubelet for this request."""
    assert info.name and NODES is not None and PODS is not None
    store = rest.ctx.store
    q = request.query
    if info.plural == "nodes":
        node = await store.get(NODES, None, info.name)
        host, port = node_endpoint(node, rest.ctx.config.kubelet_preferred_address_types)
        path = "/" + info.subpath
        return host, port, path + (f"?{request.query_string}" if request.query_string else "")
    pod = await store.get(PODS, info.namespace, info.name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.Invalid(f"pod {info.name} does not have a host assigned")
    node = await store.get(NODES, None, node_name)
    host, port = node_endpoint(node, rest.ctx.config.kubelet_preferred_address_types)
    ns, name = quote(info.namespace or ""), quote(info.name)
    sub = info.subresource
    if sub == "portforward":
        return host, port, f"/portForward/{ns}/{name}" + (f"?{request.query_string}" if request.query_string else "")
    container = _container(pod, q.get("container"), sub)
    if sub == "log":
        params = [(k, q[k]) for k in _LOG_PARAMS if k in q]
        query = urlencode(params)
        return host, port, f"/containerLogs/{ns}/{name}/{quote(container)}" + (f"?{query}" if query else "")
    params = [(k, v) for k, v in q.items() if k != "container"]
    query = urlencode(params)
    return host, port, f"/{_KUBELET_PATH[sub]}/{ns}/{name}/{quote(container)}" + (f"?{query}" if query else "")


def kubelet_ssl(rest: Rest) -> ssl.SSLContext:
    ctx = rest.ctx.kubelet_ssl
    if ctx is None:
        from kapal.kube.pki.tls import client_context

        ctx = client_context(verify=False)
        rest.ctx.kubelet_ssl = ctx
    return ctx


async def _open(host: str, port: int, what: str,
                tls: ssl.SSLContext | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    scheme = "https" if tls is not None else "http"
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), 10)
    except (TimeoutError, OSError, ssl.SSLError) as e:
        raise BackendUnavailable(f"error dialing backend: {what} at {scheme}://{host}:{port} is not reachable "
                                 f"({e.__class__.__name__}: {e or 'timeout'})") from None


def _split_name(name: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` as the proxy subresources spell their target."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", name, ""


async def _pod_or_service_target(rest: Rest, request: web.Request,
                                 info: RequestInfo) -> tuple[str, int, str, ssl.SSLContext | None, str]:
    """(host, port, path?query, tls, description) for pods/{name}/proxy and services/{name}/proxy."""
    assert info.name and PODS is not None
    scheme, name, port_ref = _split_name(info.name)
    tls = kubelet_ssl(rest) if scheme == "https" else None
    path = "/" + info.subpath + (f"?{request.query_string}" if request.query_string else "")
    if info.plural == "pods":
        pod = await rest.ctx.store.get(PODS, info.namespace, name)
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise errors.Invalid(f"pod {name} has no IP address yet (status.podIP is empty)")
        port = int(port_ref) if port_ref.isdigit() else 80
        if port_ref and not port_ref.isdigit():
            named = [p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                     for p in c.get("ports") or [] if p.get("name") == port_ref]
            if not named:
                raise errors.Invalid(f"pod {name} has no port named {port_ref!r}")
            port = int(named[0])
        return ip, port, path, tls, f"pod {name}"
    endpoints = lookup("", "v1", "endpoints")
    assert endpoints is not None
    ep = await rest.ctx.store.find(endpoints, info.namespace, name)
    for subset in (ep or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        chosen = [p for p in ports if not port_ref or p.get("name") == port_ref or str(p.get("port")) == port_ref]
        addresses = subset.get("addresses") or []
        if chosen and addresses:
            return addresses[0]["ip"], int(chosen[0]["port"]), path, tls, f'service "{name}"'
    raise BackendUnavailable(f'no endpoints available for service "{name}"')


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str, list[tuple[str, str]]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    code = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return code, reason, headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    h = {k.lower(): v for k, v in headers}
    if "content-length" in h:
        return await reader.readexactly(int(h["content-length"]))
    if h.get("transfer-encoding", "").lower() == "chunked":
        out = []
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return b"".join(out)
            out.append(await reader.readexactly(size))
            await reader.readline()
    return await reader.read(-1)


class _Relay:
    """Feeds what the client sends after the upgrade straight to the kubelet (aiohttp's payload-parser hook)."""

    def __init__(self, writer: asyncio.StreamWriter, done: asyncio.Event) -> None:
        self.writer, self.done = writer, done

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if not self.writer.is_closing():
            self.writer.write(data)
        return False, b""

    def feed_eof(self) -> None:
        self.done.set()


async def handle(rest: Rest, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
    sub = info.subresource
    allowed = {"log": ("GET",), "exec": ("GET", "POST"), "attach": ("GET", "POST"), "portforward": ("GET", "POST")}
    if sub in allowed and request.method not in allowed[sub]:
        raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
    if sub == "proxy" and info.plural != "nodes":
        host, port, path, tls, what = await _pod_or_service_target(rest, request, info)
    else:
        host, port, path = await _target(rest, request, info)
        tls = kubelet_ssl(rest)
        what = f'the kubelet of node "{info.name}"' if info.plural == "nodes" else "the kubelet of the pod's node"
    upgrade = "upgrade" in request.headers.get("Connection", "").lower() and request.headers.get("Upgrade")
    reader, writer = await _open(host, port, what, tls)
    try:
        lines = [f"{request.method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        for k, v in request.headers.items():
            if k.lower() in _HOP_HEADERS or k.lower().startswith("impersonate-"):
                continue
            if k.lower() == "connection" and not upgrade:
                continue
            lines.append(f"{k}: {v}")
        if not upgrade:
            lines.append("Connection: close")
        body = b""
        if not upgrade and request.can_read_body:
            body = await rest.read_body(request)
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        code, reason, headers = await _read_head(reader)
        if code == 101 and upgrade:
            return await _splice(request, reader, writer, headers)
        if code == 200 and (sub in ("log", "proxy")):
            return await _stream(request, reader, code, headers)
        data = await _read_body(reader, headers)
        resp = web.Response(status=code, body=data)
        for k, v in headers:
            if k.lower() in ("content-type",):
                resp.headers[k] = v
        return resp
    finally:
        if not writer.is_closing():
            writer.close()


async def _stream(request: web.Request, reader: asyncio.StreamReader, code: int,
                  headers: list[tuple[str, str]]) -> web.StreamResponse:
    h = {k.lower(): v for k, v in headers}
    resp = web.StreamResponse(status=code)
    resp.content_type = h.get("content-type", "text/plain").split(";")[0]
    await resp.prepare(request)
    if "content-length" in h:
        remaining = int(h["content-length"])
        while remaining > 0:
            chunk = await reader.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
            await resp.write(chunk)
    elif h.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            if size == 0:
                break
            await resp.write(await reader.readexactly(size))
            await reader.readline()
    else:
        while chunk := await reader.read(65536):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def _splice(request: web.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  headers: list[tuple[str, str]]) -> web.StreamResponse:
    resp = web.StreamResponse(status=101, reason="Switching Protocols")
    for k, v in headers:
        if k.lower() not in ("content-length", "transfer-encoding", "date", "server"):
            resp.headers.add(k, v)
    protocol = request.protocol
    transport = request.transport
    assert transport is not None
    done = asyncio.Event()
    protocol.set_parser(_Relay(writer, done))  # type: ignore[arg-type]
    await resp.prepare(request)
    try:
        while not done.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            closed = asyncio.ensure_future(done.wait())
            finished, _ = await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
            if read not in finished:
                read.cancel()
                break
            closed.cancel()
            chunk = read.result()
            if not chunk:
                break
            transport.write(chunk)
            if transport.get_write_buffer_size() > 1 << 20:
                await protocol._drain_helper()
    finally:
        protocol.force_close()
        transport.close()
    return resp
