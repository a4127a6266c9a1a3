"""Hijacked connections (`101 UPGRADED`) for attach and exec: raw bytes both ways on the socket.

After the 101 the client's bytes are stdin (never parsed as HTTP again), its half-close is the end of
stdin only (the output side stays open), and the server closes the socket when the process ends.
Output is written with the 8-byte stdout/stderr framing unless the process has a terminal.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiohttp import web

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def parse_detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys: "ctrl-p,ctrl-q", "a,ctrl-@" …"""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            else:
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(ch, 0))
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"invalid detach key {key!r}")
    return bytes(out)


class _Hijacked(asyncio.Protocol):
    """Takes over the transport from aiohttp's protocol once the 101 is out."""

    def __init__(self, inner: asyncio.Protocol, on_data: Callable[[bytes], None], on_eof: Callable[[], None],
                 lost: asyncio.Event) -> None:
        self.inner = inner
        self.on_data = on_data
        self.on_eof = on_eof
        self.lost = lost

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def eof_received(self) -> bool:
        self.on_eof()
        return True  # a half-close ends stdin; our output side stays open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class HijackedStream:
    """One upgraded connection: `write(stream, data)` output, stdin via callbacks, `close()` at the end."""

    def __init__(self, request: web.Request, tty: bool) -> None:
        self.request = request
        self.tty = tty
        self.upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        self.transport: asyncio.Transport | None = None
        self.response: web.StreamResponse | None = None
        self.lost = asyncio.Event()
        self.closed = False

    async def open(self, on_stdin: Callable[[bytes], None], on_stdin_eof: Callable[[], None]) -> None:
        content_type = RAW if self.tty else MULTIPLEXED
        if self.upgrade:
            resp = web.StreamResponse(
                status=101,
                reason="UPGRADED",
                headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"},
            )
        else:
            resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
            resp.enable_chunked_encoding()
        self.transport = self.request.transport  # type: ignore[assignment]
        protocol = self.request.protocol
        if self.upgrade and self.transport is not None and protocol is not None:
            # taken over before the 101 goes out: a client sends stdin the moment it reads it, and those
            # bytes must not reach aiohttp's HTTP parser
            self.transport.set_protocol(_Hijacked(protocol, on_stdin, on_stdin_eof, self.lost))
        await resp.prepare(self.request)
        self.response = resp

    async def write(self, stream: int, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            self.closed = True
            return
        payload = data if self.tty else frame(stream, data)
        if self.upgrade:
            self.transport.write(payload)
            if self.transport.get_write_buffer_size() > (4 << 20):
                await asyncio.sleep(0.01)  # let a slow client catch up a little
        else:
            try:
                assert self.response is not None
                await self.response.write(payload)
            except ConnectionError:
                self.closed = True

    async def close(self) -> web.StreamResponse:
        assert self.response is not None
        self.closed = True
        if self.upgrade:
            if self.transport is not None:
                self.transport.close()
        else:
            try:
                await self.response.write_eof()
            except ConnectionError:
                pass
        return self.response


async def pump(
    stream: HijackedStream,
    queue: asyncio.Queue[tuple[int, bytes] | None],
) -> None:
    """Write queued output until None (the process ended) or the client went away."""
    lost = asyncio.ensure_future(stream.lost.wait())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, lost}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            item = getter.result()
            if item is None:
                return
            await stream.write(*item)
            if stream.closed:
                return
    finally:
        lost.cancel()


class StdinForwarder:
    """Hands stdin chunks to a blocking sender one at a time, in order, off the event loop; watches for
    the detach keys (then the connection closes without ending the container's stdin)."""

    def __init__(self, send: Callable[[bytes], None], close: Callable[[], None], detach_keys: bytes | None,
                 executor) -> None:
        self.send = send
        self.close = close
        self.detach_keys = detach_keys
        self.detached = asyncio.Event()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.executor = executor
        self._held = b""
        self.task = asyncio.ensure_future(self._run())

    def data(self, chunk: bytes) -> None:
        if self.detached.is_set():
            return
        if self.detach_keys:
            chunk = self._held + chunk
            self._held = b""
            at = chunk.find(self.detach_keys)
            if at >= 0:
                if at:
                    self.queue.put_nowait(chunk[:at])
                self.detached.set()
                return
            for n in range(len(self.detach_keys) - 1, 0, -1):
                if chunk.endswith(self.detach_keys[:n]):
                    chunk, self._held = chunk[:-n], chunk[-n:]
                    break
        if chunk:
            self.queue.put_nowait(chunk)

    def eof(self) -> None:
        if not self.detached.is_set():
            if self._held:
                self.queue.put_nowait(self._held)
                self._held = b""
            self.queue.put_nowait(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            chunk = await self.queue.get()
            if chunk is None:
                await loop.run_in_executor(self.executor, self.close)
                return
            await loop.run_in_executor(self.executor, self.send, chunk)

    def cancel(self) -> None:
        self.task.cancel()
