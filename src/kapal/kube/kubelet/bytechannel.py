"""A bidirectional byte pipe under a streaming protocol: an upgraded HTTP connection, or binary WebSocket
messages tunnelling the same bytes (kubectl 1.31+ sends SPDY inside a WebSocket for port-forward).

`ByteChannel` is the seam the SPDY session reads and writes; `hijack` turns an aiohttp request into one after
answering 101 Switching Protocols, `WebSocketTunnel` wraps an open aiohttp WebSocket.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import WSMsgType, web

_HIGH_WATER = 1 << 20


class ByteChannel(Protocol):
    async def read(self) -> bytes:
        """The next bytes from the peer; b"" once it has closed."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...


class _Feeder:
    """aiohttp's payload-parser hook on an upgraded connection: everything the client sends lands in a queue."""

    def __init__(self, channel: HijackedChannel) -> None:
        self.channel = channel

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.channel._incoming(data)
        return False, b""

    def feed_eof(self) -> None:
        self.channel._incoming(b"")


class HijackedChannel:
    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.transport = request.transport
        self.protocol = request.protocol
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffered = 0
        self._paused = False
        self._eof = False
        self.response: web.StreamResponse | None = None

    def _incoming(self, data: bytes) -> None:
        if self._eof:
            return
        if not data:
            self._eof = True
        self._queue.put_nowait(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True

    async def read(self) -> bytes:
        data = await self._queue.get()
        self._buffered -= len(data)
        if self._paused and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False
        if not data:
            self._queue.put_nowait(b"")  # every later read sees EOF too
        return data

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing() and t.get_write_buffer_size() > _HIGH_WATER:
            await self.protocol._drain_helper()  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.protocol.force_close()  # type: ignore[union-attr]
            self.transport.close()
        self._incoming(b"")


async def hijack(request: web.Request, headers: dict[str, str]) -> HijackedChannel:
    """Answer 101 with `headers` and take the connection over for raw bytes in both directions."""
    channel = HijackedChannel(request)
    request.protocol.set_parser(_Feeder(channel))  # type: ignore[arg-type, union-attr]
    resp = web.StreamResponse(status=101, reason="Switching Protocols",
                              headers={"Connection": "Upgrade", **headers})
    await resp.prepare(request)
    channel.response = resp
    return channel


class WebSocketTunnel:
    """Bytes as binary WebSocket messages: each write one message (sent in order), reads concatenate messages."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        while (data := await self._outgoing.get()) is not None:
            try:
                await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                pass
            finally:
                self._outgoing.task_done()
        self._outgoing.task_done()

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return b""

    def write(self, data: bytes) -> None:
        if not self.ws.closed and not self._sender.done():
            self._outgoing.put_nowait(data)

    async def drain(self) -> None:
        if not self._sender.done():
            await self._outgoing.join()

    async def close(self) -> None:
        if not self._sender.done():
            self._outgoing.put_nowait(None)
            await self._sender
        if not self.ws.closed:
            await self.ws.close()
