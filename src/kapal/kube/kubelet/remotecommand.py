"""exec and attach streams, whatever the client speaks: WebSocket channel protocols or SPDY/3.1 streams.

WebSocket (`Upgrade: websocket`), subprotocols as upstream's kubelet accepts them:

    v5.channel.k8s.io   binary frames, first byte the channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a JSON
                        metav1.Status with the exit code), 4 resize (JSON {"Width","Height"}); [255, 0] closes stdin
    v4.channel.k8s.io   the same without the close signal (the Python client)
    v3/v2/"" channel.k8s.io, and the base64.channel.k8s.io variants (text frames, channel as an ASCII digit)

SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version` negotiated from v5..v1): the client opens one stream
per purpose (header streamtype: error, stdin, stdout, stderr, resize); the server waits for all it expects.
kubectl up to 1.29 speaks only this; later ones fall back to it when WebSockets are refused.

Either way the result is a `CommandStreams`; `pump` connects it to an engine exec or attach.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from kapal import errors

from .bytechannel import hijack
from .engineapi import STDERR, EngineStream
from .spdysession import SpdySession, SpdyStream

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR_CH, ERROR, RESIZE = 0, 1, 2, 3, 4
WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                "channel.k8s.io", "v4.base64.channel.k8s.io", "v3.base64.channel.k8s.io", "v2.base64.channel.k8s.io",
                "base64.channel.k8s.io")
SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io")
STREAM_CREATION_TIMEOUT = 30.0


def _flag(q: Any, name: str) -> bool:
    return str(q.get(name, "")).lower() in ("1", "true")


@dataclass(frozen=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, q: Any) -> StreamOptions:
        tty = _flag(q, "tty")
        stdin, stdout, stderr = _flag(q, "stdin"), _flag(q, "stdout"), _flag(q, "stderr")
        if tty:
            stderr = False  # a terminal merges stderr into stdout, as upstream
        if not (stdin or stdout or stderr):
            raise errors.Invalid("you must specify at least 1 of stdin, stdout, stderr")
        return cls(stdin, stdout, stderr, tty)


def exit_status(code: int, command: list[str] | None) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    what = f"error executing command [{' '.join(command)}], exit code {code}" if command else f"exit code {code}"
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {what}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500,
            "details": {"causes": [{"message": message}]}}


class UpgradeFailed(Exception):
    """The connection was already upgraded when the session failed: return `response` from the handler."""

    def __init__(self, message: str, response: web.StreamResponse | None) -> None:
        super().__init__(message)
        self.response = response


class CommandStreams:
    """The client's side of one exec/attach session."""

    protocol = ""
    response: web.StreamResponse | None = None  # what the request handler returns
    structured_status = True  # v4+: a JSON Status on the error channel; older: the error text only

    async def read_stdin(self) -> bytes:  # b"" at EOF
        raise NotImplementedError

    async def write(self, channel: int, data: bytes) -> None:
        raise NotImplementedError

    async def resizes(self) -> dict[str, int] | None:  # None when no more resizes will come
        raise NotImplementedError

    async def close_output(self) -> None: ...

    async def write_status(self, status: dict[str, Any]) -> None:
        if self.structured_status:
            await self.write(ERROR, json.dumps(status).encode())
        elif status.get("status") != "Success":
            await self.write(ERROR, (status.get("message") or "error").encode())

    async def close(self) -> None:
        raise NotImplementedError


class WebSocketStreams(CommandStreams):
    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.response = ws
        self.protocol = protocol
        self.base64 = "base64" in protocol
        self.version = int(protocol[1]) if protocol.startswith("v") else 1
        self.structured_status = self.version >= 4
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue()
        self._resize: asyncio.Queue[dict[str, int] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_loop())
        self._send_lock = asyncio.Lock()

    async def _read_loop(self) -> None:
        resize_buf = b""
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    data = bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    data = msg.data.encode()
                else:
                    break
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if self.base64:
                    channel -= ord("0")
                    try:
                        payload = base64.b64decode(payload)
                    except ValueError:
                        continue
                if channel == 255 and self.version >= 5:
                    if payload[:1] == bytes([STDIN]):
                        self._stdin.put_nowait(b"")
                    continue
                if channel == STDIN and payload:
                    self._stdin.put_nowait(payload)
                elif channel == RESIZE:
                    resize_buf += payload
                    while resize_buf:
                        try:
                            size, end = json.JSONDecoder().raw_decode(resize_buf.decode().lstrip())
                        except ValueError:
                            break
                        resize_buf = resize_buf.decode().lstrip()[end:].encode()
                        self._resize.put_nowait({"width": int(size.get("Width") or 0),
                                                 "height": int(size.get("Height") or 0)})
        finally:
            self._stdin.put_nowait(b"")
            self._resize.put_nowait(None)

    async def read_stdin(self) -> bytes:
        data = await self._stdin.get()
        if not data:
            self._stdin.put_nowait(b"")
        return data

    async def resizes(self) -> dict[str, int] | None:
        item = await self._resize.get()
        if item is None:
            self._resize.put_nowait(None)
        return item

    async def write(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            try:
                if self.base64:
                    await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
                else:
                    await self.ws.send_bytes(bytes([channel]) + data)
            except (ConnectionError, RuntimeError):
                pass

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        self._reader.cancel()


class SpdyStreams(CommandStreams):
    def __init__(self, session: SpdySession, runner: asyncio.Task[None], protocol: str,
                 streams: dict[str, SpdyStream]) -> None:
        self.session = session
        self.runner = runner
        self.protocol = protocol
        self.streams = streams
        self.structured_status = protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io")
        self._resize_buf = b""

    async def read_stdin(self) -> bytes:
        s = self.streams.get("stdin")
        if s is None:
            return b""
        return await s.read()

    async def resizes(self) -> dict[str, int] | None:
        s = self.streams.get("resize")
        if s is None:
            return None
        while True:
            text = self._resize_buf.decode(errors="replace").lstrip()
            if text:
                try:
                    size, end = json.JSONDecoder().raw_decode(text)
                    self._resize_buf = text[end:].encode()
                    return {"width": int(size.get("Width") or 0), "height": int(size.get("Height") or 0)}
                except ValueError:
                    pass
            data = await s.read()
            if not data:
                return None
            self._resize_buf += data

    async def write(self, channel: int, data: bytes) -> None:
        name = {STDOUT: "stdout", STDERR_CH: "stderr", ERROR: "error"}[channel]
        s = self.streams.get(name)
        if s is not None:
            await s.write(data)

    async def close_output(self) -> None:
        for name in ("stdout", "stderr"):
            s = self.streams.get(name)
            if s is not None:
                await s.close()

    async def close(self) -> None:
        for s in self.streams.values():
            await s.close()
        await asyncio.sleep(0.05)
        await self.session.close()
        self.runner.cancel()


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket" and \
        "upgrade" in request.headers.get("Connection", "").lower()


def is_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/3.1")


def requested_protocols(request: web.Request) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall("X-Stream-Protocol-Version", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def negotiate(request: web.Request, supported: tuple[str, ...]) -> str:
    """The first protocol the client offers that we support ("" when it offers none: upstream's v1 fallback)."""
    offered = requested_protocols(request)
    if not offered:
        return ""
    for p in offered:
        if p in supported:
            return p
    raise errors.Forbidden(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server "
                           f"supports {list(supported)}")


async def open_streams(request: web.Request, opts: StreamOptions) -> CommandStreams:
    if is_websocket(request):
        ws = web.WebSocketResponse(protocols=WS_PROTOCOLS, compress=False, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        streams = WebSocketStreams(ws, ws.ws_protocol or "channel.k8s.io")
        if opts.stdout:  # tell the client the connection is up, as upstream does
            await streams.write(STDOUT, b"")
        elif opts.stderr:
            await streams.write(STDERR_CH, b"")
        else:
            await streams.write(ERROR, b"")
        return streams
    if not is_spdy(request):
        raise errors.Invalid("Upgrade request required: exec, attach and port-forward need a WebSocket or "
                             "SPDY/3.1 upgrade")
    protocol = negotiate(request, SPDY_PROTOCOLS)
    channel = await hijack(request, {"Upgrade": "SPDY/3.1", **({"X-Stream-Protocol-Version": protocol}
                                                                  if protocol else {})})
    session = SpdySession(channel)
    runner = asyncio.create_task(session.run())
    expected = 1 + opts.stdin + opts.stdout + opts.stderr + (1 if opts.tty and protocol not in (
        "", "channel.k8s.io", "v2.channel.k8s.io") else 0)
    streams: dict[str, SpdyStream] = {}

    async def collect() -> None:
        while len(streams) < expected:
            s = await session.accept()
            if s is None:
                raise ConnectionError("client went away before opening its streams")
            kind = s.header("streamtype")
            if kind in ("error", "stdin", "stdout", "stderr", "resize"):
                streams[kind] = s
            else:
                log.info("exec: unexpected stream type %r", kind)

    try:
        await asyncio.wait_for(collect(), STREAM_CREATION_TIMEOUT)
    except (TimeoutError, ConnectionError) as e:
        await session.close()
        runner.cancel()
        raise UpgradeFailed(f"timed out waiting for client to create streams: {e}", channel.response) from e
    out = SpdyStreams(session, runner, protocol, streams)
    out.response = channel.response
    return out


async def pump(streams: CommandStreams, engine_stream: EngineStream, opts: StreamOptions,
               resize: Callable[[int, int], Awaitable[None]] | None,
               exit_code: Callable[[], Awaitable[int | None]], command: list[str] | None,
               started: Callable[[], Awaitable[None]] | None = None) -> None:
    """Copy stdin to the process and its output to the client until it ends; then the exit Status.

    `started` (exec) returns once the process runs: stdin is held back until then, so an engine that has no
    pipe yet cannot lose the first bytes or an early EOF."""

    async def to_process() -> None:
        if started is not None:
            await started()
        while True:
            data = await streams.read_stdin()
            if not data:
                engine_stream.close_stdin()
                return
            await engine_stream.write(data)

    async def resizer() -> None:
        while resize is not None:
            size = await streams.resizes()
            if size is None:
                return
            if size["width"] and size["height"]:
                try:
                    await resize(size["height"], size["width"])
                except errors.KapalError as e:
                    log.debug("resize: %s", e)

    side = [asyncio.create_task(resizer())]
    if opts.stdin:
        side.append(asyncio.create_task(to_process()))
    try:
        while True:
            stream, data = await engine_stream.read()
            if not data:
                break
            if stream == STDERR and opts.stderr:
                await streams.write(STDERR_CH, data)
            elif opts.stdout or (stream == STDERR and opts.tty):
                await streams.write(STDOUT, data)
        await streams.close_output()
        code = await exit_code()
        if code is None:
            await streams.write_status({"metadata": {}, "status": "Success"})
        else:
            await streams.write_status(exit_status(code, command))
    finally:
        for t in side:
            t.cancel()
        engine_stream.close()
        await streams.close()
