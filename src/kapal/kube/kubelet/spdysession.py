"""A SPDY/3.1 server session over a ByteChannel: the client opens streams, we reply and exchange data.

    session = SpdySession(channel)
    runner = asyncio.create_task(session.run())
    stream = await session.accept()          # SYN_STREAM from the client, already answered with SYN_REPLY
    stream.headers["streamtype"]             # e.g. ["stdout"]
    await stream.write(b"...")               # DATA frames
    await stream.close()                     # our half: an empty DATA frame with FIN
    await stream.read()                      # the client's bytes; b"" after its FIN or a reset
    await session.close()                    # GOAWAY, then the channel is closed

Streams are half-closed per direction, as the spec has it; a stream is gone once both halves are.
"""

from __future__ import annotations

import asyncio
import logging

from kapal.errors import KapalError

from . import spdy
from .bytechannel import ByteChannel

log = logging.getLogger(__name__)


class SpdyStream:
    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.Headers, remote_closed: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_closed = remote_closed
        self.local_closed = False
        if remote_closed:
            self._data.put_nowait(b"")

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    async def read(self) -> bytes:
        data = await self._data.get()
        if not data:
            self._data.put_nowait(b"")
        return data

    async def write(self, data: bytes) -> None:
        if self.local_closed or not data:
            return
        await self.session.send(spdy.Data(self.id, data))

    async def close(self) -> None:
        """Half-close our direction (FIN); the peer may still send."""
        if self.local_closed:
            return
        self.local_closed = True
        await self.session.send(spdy.Data(self.id, b"", spdy.FLAG_FIN))
        self.session._maybe_forget(self)

    async def reset(self, status: int = spdy.CANCEL) -> None:
        if not (self.local_closed and self.remote_closed):
            self.local_closed = True
            await self.session.send(spdy.RstStream(self.id, status))
        self._remote_finished()

    def _remote_data(self, data: bytes) -> None:
        if not self.remote_closed and data:
            self._data.put_nowait(data)

    def _remote_finished(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._data.put_nowait(b"")
        self.session._maybe_forget(self)


class SpdySession:
    def __init__(self, channel: ByteChannel) -> None:
        self.channel = channel
        self.codec = spdy.FrameCodec()
        self.streams: dict[int, SpdyStream] = {}
        self._accepted: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._last_remote_id = 0
        self.closed = False

    async def accept(self) -> SpdyStream | None:
        """The next stream the client opened; None once the connection is gone."""
        stream = await self._accepted.get()
        if stream is None:
            self._accepted.put_nowait(None)
        return stream

    async def send(self, frame: spdy.Frame) -> None:
        if self.closed:
            return
        self.channel.write(self.codec.encode(frame))
        await self.channel.drain()

    async def run(self) -> None:
        """Read frames until the client goes away; then every stream reads EOF."""
        try:
            while True:
                data = await self.channel.read()
                if not data:
                    break
                for frame in self.codec.feed(data):
                    await self._handle(frame)
        except KapalError as e:
            log.info("spdy: closing a connection after a protocol error: %s", e)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._teardown()

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.Data):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return
            stream._remote_data(frame.data)
            if frame.fin:
                stream._remote_finished()
        elif isinstance(frame, spdy.SynStream):
            if frame.stream_id % 2 == 0 or frame.stream_id <= self._last_remote_id:
                await self.send(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
                return
            self._last_remote_id = frame.stream_id
            stream = SpdyStream(self, frame.stream_id, frame.headers, bool(frame.flags & spdy.FLAG_FIN))
            self.streams[stream.id] = stream
            await self.send(spdy.SynReply(stream.id))
            self._accepted.put_nowait(stream)
        elif isinstance(frame, spdy.RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream.local_closed = True
                stream._remote_finished()
        elif isinstance(frame, spdy.HeadersFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.flags & spdy.FLAG_FIN:
                stream._remote_finished()
        elif isinstance(frame, spdy.Ping):
            if frame.id % 2 == 1:  # client pings are odd: echo them
                await self.send(frame)
        elif isinstance(frame, spdy.GoAway):
            self._accepted.put_nowait(None)

    def _maybe_forget(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.id, None)

    def _teardown(self) -> None:
        for stream in list(self.streams.values()):
            stream.local_closed = True
            stream._remote_finished()
        self.streams.clear()
        self._accepted.put_nowait(None)

    async def close(self) -> None:
        if self.closed:
            return
        try:
            await self.send(spdy.GoAway(self._last_remote_id))
        except (ConnectionError, RuntimeError):
            pass
        self.closed = True
        await self.channel.close()
