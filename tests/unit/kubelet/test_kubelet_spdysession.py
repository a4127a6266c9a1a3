"""The SPDY server session over an in-memory byte pipe: streams opened by the client are answered, data flows
both ways, FIN half-closes, pings are echoed, and everything reads EOF when the client goes."""

from __future__ import annotations

import asyncio

from kapal.kube.kubelet import spdy
from kapal.kube.kubelet.spdysession import SpdySession


class Pipe:
    """One side of a byte pipe: what it writes, the peer reads."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.peer: Pipe | None = None

    async def read(self) -> bytes:
        return await self.inbox.get()

    def write(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.inbox.put_nowait(data)

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        assert self.peer is not None
        self.peer.inbox.put_nowait(b"")


def pipes() -> tuple[Pipe, Pipe]:
    a, b = Pipe(), Pipe()
    a.peer, b.peer = b, a
    return a, b


def test_streams_both_ways():
    async def run() -> None:
        server_side, client_side = pipes()
        session = SpdySession(server_side)
        runner = asyncio.create_task(session.run())
        client = spdy.FrameCodec()
        client_side.write(client.encode(spdy.SynStream(1, {"streamtype": ["stdin"]})))
        client_side.write(client.encode(spdy.Data(1, b"hello ")) + client.encode(spdy.Data(1, b"world", spdy.FLAG_FIN)))
        client_side.write(client.encode(spdy.Ping(3)))
        stream = await session.accept()
        assert stream is not None and stream.header("streamtype") == "stdin"
        got = b""
        while chunk := await stream.read():
            got += chunk
        assert got == b"hello world"
        await stream.write(b"back")
        await stream.close()
        frames = []
        while len(frames) < 4:
            frames += client.feed(await client_side.read())
        assert isinstance(frames[0], spdy.SynReply) and frames[0].stream_id == 1
        assert isinstance(frames[1], spdy.Ping) and frames[1].id == 3
        assert frames[2] == spdy.Data(1, b"back") and frames[3].fin
        await client_side.close()
        await runner
        assert await session.accept() is None

    asyncio.run(run())


def test_even_stream_ids_from_a_client_are_refused():
    async def run() -> None:
        server_side, client_side = pipes()
        session = SpdySession(server_side)
        runner = asyncio.create_task(session.run())
        client = spdy.FrameCodec()
        client_side.write(client.encode(spdy.SynStream(2, {"streamtype": ["data"]})))
        (frame,) = client.feed(await client_side.read())
        assert frame == spdy.RstStream(2, spdy.PROTOCOL_ERROR)
        await client_side.close()
        await runner

    asyncio.run(run())
