"""Docker API: /containers/{id}/exec and /exec/{id}/(start|resize|json)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from kapal.errors import Invalid

from .api import COMMON_HEADERS, EXECUTOR_KEY, Router, in_thread, json_body, json_response
from .hijack import HijackedStream, StdinForwarder, parse_detach_keys, pump
from .routes_containers import _int, manager


async def exec_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    result = await in_thread(request, manager(request).execs.create, request.match_info["id"], body)
    return json_response(result, status=201)


async def exec_start(request: web.Request) -> web.StreamResponse:
    execs = manager(request).execs
    exec_id = request.match_info["id"]
    body = await json_body(request)
    session = await in_thread(request, execs.get, exec_id)
    tty = bool(body.get("Tty", session.config.get("Tty")))
    detach = bool(body.get("Detach"))
    console_size = body.get("ConsoleSize") or session.config.get("ConsoleSize")
    if detach:
        await in_thread(request, lambda: execs.start(exec_id, tty=tty, detach=True, console_size=console_size))
        return json_response({})
    cfg = session.config
    want = {1: bool(cfg.get("AttachStdout", True)), 2: bool(cfg.get("AttachStderr", True))}
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

    def on_data(stream: int, data: bytes) -> None:
        if want.get(stream):
            loop.call_soon_threadsafe(queue.put_nowait, (stream, data))

    def on_close() -> None:
        loop.call_soon_threadsafe(queue.put_nowait, None)

    stream = HijackedStream(request, tty)
    forwarder = None
    if cfg.get("AttachStdin"):
        keys = cfg.get("DetachKeys")
        forwarder = StdinForwarder(
            lambda data: session.send_stdin(data), session.close_stdin,
            parse_detach_keys(keys) if keys else None, request.app[EXECUTOR_KEY],
        )
    # the 101 goes out before the process starts, as with dockerd: a client that reads the response head
    # through a buffered reader (docker-py) would otherwise swallow the first output with it
    if forwarder is not None:
        await stream.open(forwarder.data, forwarder.eof)
    else:
        await stream.open(lambda _d: None, lambda: None)
    try:
        await in_thread(
            request,
            lambda: execs.start(exec_id, tty=tty, console_size=console_size, on_data=on_data, on_close=on_close),
        )
    except Exception as e:
        # as dockerd: the error goes out on stdout, and GET /exec/ID/json reports exit code 126 or 127
        await stream.write(1, f"{e}\r\n".encode())
        return await stream.close()
    output = asyncio.ensure_future(pump(stream, queue))
    waits = {output}
    if forwarder is not None:
        waits.add(asyncio.ensure_future(forwarder.detached.wait()))
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return await stream.close()


async def exec_resize(request: web.Request) -> web.StreamResponse:
    h, w = _int(request, "h", 0), _int(request, "w", 0)
    if h is None or w is None or h < 0 or w < 0:
        raise Invalid("resize needs h and w")
    await in_thread(request, manager(request).execs.resize, request.match_info["id"], h, w)
    return web.Response(status=200, headers=COMMON_HEADERS)


async def exec_inspect(request: web.Request) -> web.StreamResponse:
    return json_response(await in_thread(request, manager(request).execs.inspect, request.match_info["id"]))


def register(r: Router) -> None:
    r.add("POST", "/containers/{id}/exec", exec_create)
    r.add("POST", "/exec/{id}/start", exec_start)
    r.add("POST", "/exec/{id}/resize", exec_resize)
    r.add("GET", "/exec/{id}/json", exec_inspect)
