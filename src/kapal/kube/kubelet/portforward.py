"""Port forwarding into a pod: a TCP connection to localhost:<port> made inside the pod's network namespace.

Three ways in, as the kubelet serves them upstream:

- SPDY/3.1 (`X-Stream-Protocol-Version: portforward.k8s.io`, kubectl up to 1.30): per forwarded connection
  the client opens an error stream and a data stream sharing the headers `port` and `requestid`.
- The same SPDY bytes tunnelled in binary WebSocket messages (subprotocol `SPDY/3.1+portforward.k8s.io`,
  kubectl 1.31+).
- WebSocket channels (`v4.channel.k8s.io`, the Python client): `?ports=80,8080`; channel 2i carries port i's
  data, 2i+1 its errors; the server first sends each channel the port as two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from kapal import errors
from kapal.network import netns

from .bytechannel import WebSocketTunnel, hijack
from .remotecommand import is_spdy, is_websocket, negotiate
from .spdysession import SpdySession, SpdyStream

log = logging.getLogger(__name__)

PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
WS_PROTOCOLS = (TUNNEL_PROTOCOL, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io")

Dialer = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def dialer_for(netns_path: str | None) -> Dialer:
    """Connects to localhost:<port> inside the pod (or on the host for hostNetwork pods)."""

    def connect(port: int) -> socket.socket:
        last: OSError | None = None
        for host in ("127.0.0.1", "::1"):
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.setblocking(False)
                return sock
            except OSError as e:
                last = e
        assert last is not None
        raise last

    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if netns_path:
            sock = await asyncio.to_thread(netns.call_in, netns_path, connect, port)
        else:
            sock = await asyncio.to_thread(connect, port)
        return await asyncio.open_connection(sock=sock)

    return dial


def _failure(port: int, pod: str, e: BaseException) -> str:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return (f"an error occurred forwarding {port} -> {port}: error forwarding port {port} to pod {pod}: failed to "
            f"connect to localhost:{port} inside namespace \"{pod}\": dial tcp 127.0.0.1:{port}: connect: "
            f"{reason.lower()}")


async def _copy_spdy(data: SpdyStream, error: SpdyStream | None, dial: Dialer, port: int, pod: str) -> None:
    try:
        reader, writer = await dial(port)
    except (OSError, errors.KapalError) as e:
        if error is not None:
            await error.write(_failure(port, pod, e).encode())
            await error.close()
        await data.close()
        return

    async def to_pod() -> None:
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def from_pod() -> None:
        while chunk := await reader.read(65536):
            await data.write(chunk)
        await data.close()

    up = asyncio.create_task(to_pod())
    try:
        await from_pod()
    except (ConnectionError, OSError):
        pass
    finally:
        up.cancel()
        writer.close()
        if error is not None:
            await error.close()
        await data.close()


async def _serve_spdy(session: SpdySession, dial: Dialer, pod: str) -> None:
    pending: dict[str, SpdyStream] = {}
    tasks: set[asyncio.Task[None]] = set()
    while True:
        s = await session.accept()
        if s is None:
            break
        kind = s.header("streamtype")
        port_text = s.header("port")
        request_id = s.header("requestid") or str(s.id if kind == "error" else s.id - 2)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            await s.reset()
            continue
        if kind == "error":
            pending[request_id] = s
        elif kind == "data":
            t = asyncio.create_task(_copy_spdy(s, pending.pop(request_id, None), dial, int(port_text), pod))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        else:
            await s.reset()
    for t in tasks:
        t.cancel()


async def _serve_channels(ws: web.WebSocketResponse, b64: bool, ports: list[int], dial: Dialer, pod: str) -> None:
    async def send(channel: int, payload: bytes) -> None:
        if ws.closed:
            return
        if b64:
            await ws.send_str(chr(ord("0") + channel) + base64.b64encode(payload).decode())
        else:
            await ws.send_bytes(bytes([channel]) + payload)

    writers: dict[int, asyncio.StreamWriter] = {}
    tasks = []
    for i, port in enumerate(ports):
        head = struct.pack("<H", port)
        await send(2 * i, head)
        await send(2 * i + 1, head)
        try:
            reader, writer = await dial(port)
        except (OSError, errors.KapalError) as e:
            await send(2 * i + 1, _failure(port, pod, e).encode())
            continue
        writers[2 * i] = writer

        async def from_pod(channel: int = 2 * i, reader: asyncio.StreamReader = reader) -> None:
            while chunk := await reader.read(65536):
                await send(channel, chunk)

        tasks.append(asyncio.create_task(from_pod()))
    async def from_client() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                return
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if b64:
                channel -= ord("0")
                payload = base64.b64decode(payload)
            w = writers.get(channel)
            if w is not None and payload:
                w.write(payload)
                await w.drain()

    client = asyncio.create_task(from_client())
    try:
        # as upstream: once every forwarded connection has ended (or none could be made) the WebSocket closes
        if tasks:
            pods = asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.wait({client, pods}, return_when=asyncio.FIRST_COMPLETED)
            pods.cancel()
    finally:
        client.cancel()
        for t in tasks:
            t.cancel()
        for w in writers.values():
            w.close()


def parse_ports(request: web.Request) -> list[int]:
    ports: list[int] = []
    for value in request.query.getall("ports", []) + request.query.getall("port", []):
        for p in value.split(","):
            if not p.strip().isdigit() or not 0 < int(p) < 65536:
                raise errors.Invalid(f'unable to parse "{value}" as a port: must be 1-65535')
            ports.append(int(p))
    return ports


async def serve(request: web.Request, netns_path: str | None, pod: str) -> web.StreamResponse:
    dial = dialer_for(netns_path)
    if is_websocket(request):
        ws = web.WebSocketResponse(protocols=WS_PROTOCOLS, compress=False, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        protocol = ws.ws_protocol or ""
        if protocol == TUNNEL_PROTOCOL:
            tunnel = WebSocketTunnel(ws)
            session = SpdySession(tunnel)
            runner = asyncio.create_task(session.run())
            try:
                await _serve_spdy(session, dial, pod)
            finally:
                runner.cancel()
                await tunnel.close()
            return ws
        ports = parse_ports(request)
        if not ports:
            await ws.close(message=b'query parameter "port" is required')
            return ws
        await _serve_channels(ws, "base64" in protocol, ports, dial, pod)
        if not ws.closed:
            await ws.close()
        return ws
    if not is_spdy(request):
        raise errors.Invalid("Upgrade request required: port-forward needs a WebSocket or SPDY/3.1 upgrade")
    protocol = negotiate(request, (PORTFORWARD_PROTOCOL,))
    channel = await hijack(request, {"Upgrade": "SPDY/3.1", **({"X-Stream-Protocol-Version": protocol}
                                                                  if protocol else {})})
    session = SpdySession(channel)
    runner = asyncio.create_task(session.run())
    try:
        await _serve_spdy(session, dial, pod)
    finally:
        runner.cancel()
        await session.close()
    assert channel.response is not None
    return channel.response
