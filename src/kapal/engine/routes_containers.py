"""Docker API: /containers (create, start, attach, wait, kill, stop, remove, inspect, list, changes, export, logs)
and /commit."""

from __future__ import annotations

import asyncio
import json
import struct

from aiohttp import web

from kapal.errors import Invalid, Unsupported

from .api import COMMON_HEADERS, Router, engine_of, filters_of, flag, in_thread, json_body, json_response
from .containers import Attacher, ContainerManager


def manager(request: web.Request) -> ContainerManager:
    mgr = engine_of(request).containers
    assert isinstance(mgr, ContainerManager)
    return mgr


class HalfCloseKeeper(asyncio.Protocol):
    """Wraps aiohttp's protocol on a hijacked connection: a client's half-close (EOF) keeps our output open."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


async def container_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    name = request.query.get("name") or None
    result = await in_thread(request, manager(request).create, body, name)
    return json_response(result, status=201)


async def container_start(request: web.Request) -> web.StreamResponse:
    started = await in_thread(request, manager(request).start, request.match_info["id"])
    return web.Response(status=204 if started else 304, headers=COMMON_HEADERS)


async def container_wait(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    cid = request.match_info["id"]
    await in_thread(request, mgr.get, cid)
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)  # headers go out at once: the docker CLI sends start only after seeing them
    result = await in_thread(request, mgr.wait, cid, request.query.get("condition", "not-running"))
    try:
        await resp.write((json.dumps(result) + "\n").encode())
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


async def container_attach(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    cid = request.match_info["id"]
    container = await in_thread(request, mgr.get, cid)
    if not flag(request, "stream", True):
        raise Unsupported("attach without stream=1 (logs only) is not supported by this engine yet")
    want = {1: flag(request, "stdout"), 2: flag(request, "stderr")}
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def on_data(stream: int, data: bytes) -> None:
        if want.get(stream):
            loop.call_soon_threadsafe(queue.put_nowait, frame(stream, data))

    def on_close() -> None:
        loop.call_soon_threadsafe(queue.put_nowait, None)

    attacher = Attacher(on_data, on_close)
    mgr.attach(container.id, attacher)
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    resp = web.StreamResponse(
        status=101 if upgrade else 200,
        reason="UPGRADED" if upgrade else "OK",
        headers={"Content-Type": "application/vnd.docker.multiplexed-stream"}
        | ({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}),
    )
    await resp.prepare(request)
    transport = request.transport
    protocol = request.protocol
    if upgrade and transport is not None and protocol is not None:
        transport.set_protocol(HalfCloseKeeper(protocol))  # type: ignore[arg-type]
    try:
        while True:
            item = await queue.get()
            if item is None or transport is None or transport.is_closing():
                break
            if upgrade:
                transport.write(item)
            else:
                await resp.write(item)
    finally:
        mgr.detach(container, attacher)
    if upgrade:
        if transport is not None:
            transport.close()
        return resp
    await resp.write_eof()
    return resp


async def container_kill(request: web.Request) -> web.StreamResponse:
    await in_thread(request, manager(request).kill, request.match_info["id"], request.query.get("signal", "KILL"))
    return web.Response(status=204, headers=COMMON_HEADERS)


async def container_stop(request: web.Request) -> web.StreamResponse:
    t = request.query.get("t") or request.query.get("timeout")
    stopped = await in_thread(request, manager(request).stop, request.match_info["id"], float(t) if t else None)
    return web.Response(status=204 if stopped else 304, headers=COMMON_HEADERS)


async def container_delete(request: web.Request) -> web.StreamResponse:
    await in_thread(
        request, manager(request).remove, request.match_info["id"], flag(request, "force"), flag(request, "v")
    )
    return web.Response(status=204, headers=COMMON_HEADERS)


async def container_inspect(request: web.Request) -> web.StreamResponse:
    return json_response(await in_thread(request, manager(request).inspect, request.match_info["id"]))


async def container_list(request: web.Request) -> web.StreamResponse:
    all_ = flag(request, "all")
    return json_response(await in_thread(request, manager(request).list, all_, filters_of(request)))


async def container_changes(request: web.Request) -> web.StreamResponse:
    changes = await in_thread(request, manager(request).changes, request.match_info["id"])
    return json_response(changes or None)


async def container_export(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    cid = request.match_info["id"]
    await in_thread(request, mgr.get, cid)
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    loop = asyncio.get_running_loop()

    class Sink:
        def write(self, data: bytes) -> int:
            asyncio.run_coroutine_threadsafe(resp.write(bytes(data)), loop).result()
            return len(data)

    await in_thread(request, mgr.export, cid, Sink())
    await resp.write_eof()
    return resp


async def container_logs(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    if flag(request, "follow"):
        raise Unsupported("logs --follow is not supported by this engine yet")
    want = {"stdout": flag(request, "stdout"), "stderr": flag(request, "stderr")}
    out = bytearray()
    try:
        with open(c.doc["LogPath"], "rb") as f:
            for line in f:
                entry = json.loads(line)
                if want.get(entry["stream"]):
                    out += frame(1 if entry["stream"] == "stdout" else 2, entry["log"].encode())
    except FileNotFoundError:
        pass
    return web.Response(
        body=bytes(out), headers={**COMMON_HEADERS, "Content-Type": "application/vnd.docker.multiplexed-stream"}
    )


async def commit(request: web.Request) -> web.StreamResponse:
    q = request.query
    container = q.get("container")
    if not container:
        raise Invalid("commit needs container=…")
    body = await json_body(request)
    image_id = await in_thread(
        request,
        lambda: manager(request).commit(
            container,
            q.get("repo", ""),
            q.get("tag", ""),
            q.get("author", ""),
            q.get("comment", ""),
            q.getall("changes", []),
            body or None,
        ),
    )
    return json_response({"Id": image_id}, status=201)


def register(r: Router) -> None:
    r.add("POST", "/containers/create", container_create)
    r.add("GET", "/containers/json", container_list)
    r.add("GET", "/containers/{id}/json", container_inspect)
    r.add("POST", "/containers/{id}/start", container_start)
    r.add("POST", "/containers/{id}/wait", container_wait)
    r.add("POST", "/containers/{id}/attach", container_attach)
    r.add("POST", "/containers/{id}/kill", container_kill)
    r.add("POST", "/containers/{id}/stop", container_stop)
    r.add("DELETE", "/containers/{id}", container_delete)
    r.add("GET", "/containers/{id}/changes", container_changes)
    r.add("GET", "/containers/{id}/export", container_export)
    r.add("GET", "/containers/{id}/logs", container_logs)
    r.add("POST", "/commit", commit)
