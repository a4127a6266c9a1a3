"""Docker API: /containers (create, start, attach, wait, kill, stop, restart, update, pause, unpause, rename, remove,
inspect, list, changes, export, logs, top, stats, resize, archive) and /commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time

from aiohttp import web

from kapal.errors import Invalid

from . import archive_cp
from .api import (
    COMMON_HEADERS,
    EXECUTOR_KEY,
    Router,
    engine_of,
    filters_of,
    flag,
    in_thread,
    json_body,
    json_response,
)
from .containers import Attacher, ContainerManager
from .hijack import DETACH_KEYS, HijackedStream, StdinForwarder, frame, parse_detach_keys, pump
from .jsonlog import docker_timestamp, parse_time_ns


class _ThreadPerTask(concurrent.futures.Executor):
    """An executor that starts a daemon thread per task (long-lived followers must not starve the pool)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)

        threading.Thread(target=run, daemon=True, name="logs-follow").start()
        return future


_FOLLOWERS = _ThreadPerTask()


def manager(request: web.Request) -> ContainerManager:
    mgr = engine_of(request).containers
    assert isinstance(mgr, ContainerManager)
    return mgr


def no_content(status: int = 204) -> web.Response:
    return web.Response(status=status, headers=COMMON_HEADERS)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"invalid value for {name}: {value!r}") from None


def _time_ns(value: str | None) -> int:
    """Docker's since/until: unix seconds with an optional fraction, or RFC 3339."""
    if not value:
        return 0
    try:
        sec, _, frac = value.partition(".")
        return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    except ValueError:
        pass
    try:
        return parse_time_ns(value)
    except ValueError:
        raise Invalid(f"invalid time value {value!r}: use unix seconds or RFC 3339") from None


async def container_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    name = request.query.get("name") or None
    result = await in_thread(request, manager(request).create, body, name)
    return json_response(result, status=201)


async def container_start(request: web.Request) -> web.StreamResponse:
    started = await in_thread(request, manager(request).start, request.match_info["id"])
    return no_content(204 if started else 304)


async def container_wait(request: web.Request) -> web.StreamResponse:
    """Long poll without holding a thread: a listener on the container resolves a future. Clients that
    go away (`docker run -d` drops its wait) are noticed by the transport closing."""
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    done = mgr.wait_condition(c, request.query.get("condition", "not-running"))
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)  # headers go out at once: the docker CLI sends start only after seeing them
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def listener() -> None:
        loop.call_soon_threadsafe(woken.set)

    with c.lock:
        c.listeners.append(listener)
    try:
        while not done():
            woken.clear()
            try:
                await asyncio.wait_for(woken.wait(), 1.0)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return resp
        await resp.write((json.dumps(mgr.wait_result(c)) + "\n").encode())
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with c.lock:
            if listener in c.listeners:
                c.listeners.remove(listener)
    return resp


async def container_attach(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    want = {1: flag(request, "stdout"), 2: flag(request, "stderr")}
    use_stdin = flag(request, "stdin") and bool(c.doc["Config"].get("OpenStdin"))
    stream_live = flag(request, "stream", False)
    with_logs = flag(request, "logs", False)
    keys_text = request.query.get("detachKeys")
    detach_keys = parse_detach_keys(keys_text) if keys_text else (DETACH_KEYS if c.tty and use_stdin else None)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

    def on_data(stream: int, data: bytes) -> None:
        if want.get(stream):
            loop.call_soon_threadsafe(queue.put_nowait, (stream, data))

    def on_close() -> None:
        loop.call_soon_threadsafe(queue.put_nowait, None)

    attacher = Attacher(on_data, on_close)
    hijacked = HijackedStream(request, c.tty)
    forwarder = None
    if use_stdin:
        forwarder = StdinForwarder(
            lambda data: mgr.send_stdin(c, data), lambda: mgr.close_stdin(c), detach_keys,
            request.app[EXECUTOR_KEY],
        )
    if stream_live:
        await in_thread(request, mgr.attach, c.id, attacher)
    try:
        if forwarder is not None:
            await hijacked.open(forwarder.data, forwarder.eof)
        else:
            await hijacked.open(lambda _d: None, lambda: None)
        if with_logs:
            records = await in_thread(request, lambda: list(mgr.logs(c.id)))
            for name, data, _ in records:
                stream = 2 if name == "stderr" else 1
                if want.get(stream):
                    await hijacked.write(stream, data)
        if stream_live:
            output = asyncio.ensure_future(pump(hijacked, queue))
            waits = {output}
            if forwarder is not None:
                waits.add(asyncio.ensure_future(forwarder.detached.wait()))
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
    finally:
        mgr.detach(c, attacher)
        if forwarder is not None and forwarder.detached.is_set():
            forwarder.cancel()
    return await hijacked.close()


async def container_kill(request: web.Request) -> web.StreamResponse:
    await in_thread(request, manager(request).kill, request.match_info["id"], request.query.get("signal") or "KILL")
    return no_content()


async def container_stop(request: web.Request) -> web.StreamResponse:
    t = request.query.get("t") or request.query.get("timeout")
    sig = request.query.get("signal") or None
    stopped = await in_thread(
        request, manager(request).stop, request.match_info["id"], float(t) if t else None, sig
    )
    return no_content(204 if stopped else 304)


async def container_restart(request: web.Request) -> web.StreamResponse:
    t = request.query.get("t") or request.query.get("timeout")
    await in_thread(request, manager(request).restart, request.match_info["id"], float(t) if t else None)
    return no_content()


async def container_update(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    warnings = await in_thread(request, manager(request).update, request.match_info["id"], body or {})
    return json_response({"Warnings": warnings})


async def container_pause(request: web.Request) -> web.StreamResponse:
    await in_thread(request, manager(request).pause, request.match_info["id"])
    return no_content()


async def container_unpause(request: web.Request) -> web.StreamResponse:
    await in_thread(request, manager(request).unpause, request.match_info["id"])
    return no_content()


async def container_rename(request: web.Request) -> web.StreamResponse:
    await in_thread(request, manager(request).rename, request.match_info["id"], request.query.get("name", ""))
    return no_content()


async def container_resize(request: web.Request) -> web.StreamResponse:
    h, w = _int(request, "h", 0), _int(request, "w", 0)
    await in_thread(request, manager(request).resize, request.match_info["id"], h, w)
    return web.Response(status=200, headers=COMMON_HEADERS)


async def container_delete(request: web.Request) -> web.StreamResponse:
    if flag(request, "link"):
        raise Invalid("links are not supported by kapal, so there is no link to remove")
    await in_thread(
        request, manager(request).remove, request.match_info["id"], flag(request, "force"), flag(request, "v")
    )
    return no_content()


async def container_inspect(request: web.Request) -> web.StreamResponse:
    return json_response(
        await in_thread(request, manager(request).inspect, request.match_info["id"], flag(request, "size"))
    )


async def container_list(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    items = await in_thread(request, mgr.list, flag(request, "all"), filters_of(request), flag(request, "size"))
    limit = _int(request, "limit", -1)
    if limit and limit > 0:
        items = items[:limit]
    return json_response(items)


async def container_changes(request: web.Request) -> web.StreamResponse:
    changes = await in_thread(request, manager(request).changes, request.match_info["id"])
    return json_response(changes or None)


class _Sink:
    """A blocking file-like writer for a thread, feeding a streamed response on the event loop."""

    def __init__(self, resp: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.resp = resp
        self.loop = loop

    def write(self, data: bytes) -> int:
        asyncio.run_coroutine_threadsafe(self.resp.write(bytes(data)), self.loop).result()
        return len(data)


async def container_export(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    cid = request.match_info["id"]
    await in_thread(request, mgr.get, cid)
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/x-tar"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await in_thread(request, mgr.export, cid, _Sink(resp, asyncio.get_running_loop()))
    await resp.write_eof()
    return resp


async def container_logs(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    want = {"stdout": flag(request, "stdout"), "stderr": flag(request, "stderr")}
    if not any(want.values()):
        raise Invalid("Bad parameters: you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = -1 if tail_text in ("all", "") else _int(request, "tail", -1)
    since, until = _time_ns(request.query.get("since")), _time_ns(request.query.get("until"))
    timestamps = flag(request, "timestamps")
    follow = flag(request, "follow")
    tty = c.tty
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes, int] | None | BaseException] = asyncio.Queue(maxsize=1024)
    gone = False

    def produce() -> None:
        try:
            for record in mgr.logs(c.id, follow=follow, since_ns=since, until_ns=until, tail=tail,
                                   cancelled=lambda: gone):
                if want.get(record[0]):
                    asyncio.run_coroutine_threadsafe(queue.put(record), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
        except BaseException as e:
            asyncio.run_coroutine_threadsafe(queue.put(e), loop).result()

    resp = web.StreamResponse(
        headers={**COMMON_HEADERS,
                 "Content-Type": "application/vnd.docker.raw-stream" if tty else
                 "application/vnd.docker.multiplexed-stream"}
    )
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    # a follower can last as long as the container: its own thread, not one of the API's pool
    producer = loop.run_in_executor(_FOLLOWERS, produce) if follow else \
        loop.run_in_executor(request.app[EXECUTOR_KEY], produce)
    try:
        while True:
            item = await queue.get()
            if item is None or isinstance(item, BaseException):
                break
            name, data, ts = item
            if timestamps:
                data = docker_timestamp(ts).encode() + b" " + data
            await resp.write(data if tty else frame(2 if name == "stderr" else 1, data))
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        gone = True
        while not producer.done():
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
    return resp


async def container_top(request: web.Request) -> web.StreamResponse:
    return json_response(
        await in_thread(request, manager(request).top, request.match_info["id"], request.query.get("ps_args", ""))
    )


async def container_stats(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    cid = request.match_info["id"]
    c = await in_thread(request, mgr.get, cid)
    stream = flag(request, "stream", True)
    one_shot = flag(request, "one-shot", False)
    if not stream:
        first = await in_thread(request, mgr.stats, c.id, None)
        if one_shot or not c.running:
            return json_response(first)
        await asyncio.sleep(0.5)
        return json_response(await in_thread(request, mgr.stats, c.id, first))
    resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    previous = None
    try:
        while True:
            started = time.monotonic()
            previous = await in_thread(request, mgr.stats, c.id, previous)
            await resp.write((json.dumps(previous) + "\n").encode())
            if not c.running or c.removed:
                break
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    return resp


def _paths(mgr: ContainerManager, c):
    return archive_cp.ContainerPaths(c.rootfs, c.doc["Mounts"])


async def archive_head(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    path = request.query.get("path") or ""
    if not path:
        raise Invalid("path must not be empty")

    def work() -> dict:
        with mgr.mounted_rootfs(c):
            return archive_cp.stat_path(_paths(mgr, c), path, c.name)

    doc = await in_thread(request, work)
    return web.Response(status=200, headers={**COMMON_HEADERS, "X-Docker-Container-Path-Stat":
                                             archive_cp.stat_header(doc)})


async def archive_get(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    path = request.query.get("path") or ""
    if not path:
        raise Invalid("path must not be empty")
    loop = asyncio.get_running_loop()
    holder: dict = {}

    def prepare() -> dict:
        holder["ctx"] = mgr.mounted_rootfs(c)
        holder["ctx"].__enter__()
        return archive_cp.stat_path(_paths(mgr, c), path, c.name)

    try:
        doc = await in_thread(request, prepare)
        resp = web.StreamResponse(headers={**COMMON_HEADERS, "Content-Type": "application/x-tar",
                                           "X-Docker-Container-Path-Stat": archive_cp.stat_header(doc)})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await in_thread(request, archive_cp.write_tar, _paths(mgr, c), path, _Sink(resp, loop))
        await resp.write_eof()
        return resp
    finally:
        if "ctx" in holder:
            await in_thread(request, holder["ctx"].__exit__, None, None, None)


async def archive_put(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)
    c = await in_thread(request, mgr.get, request.match_info["id"])
    path = request.query.get("path") or ""
    if not path:
        raise Invalid("path must not be empty")
    from .routes_images import BodyReader

    reader = BodyReader(request, asyncio.get_running_loop())

    def work() -> None:
        with mgr.mounted_rootfs(c):
            archive_cp.extract_tar(
                _paths(mgr, c), path, reader, copy_uid_gid=flag(request, "copyUIDGID"),
                no_overwrite_dir_non_dir=flag(request, "noOverwriteDirNonDir"),
            )

    await in_thread(request, work)
    return web.Response(status=200, headers=COMMON_HEADERS)


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
            flag(request, "pause", True),  # dockerd pauses unless told pause=0
        ),
    )
    return json_response({"Id": image_id}, status=201)


async def containers_prune(request: web.Request) -> web.StreamResponse:
    mgr = manager(request)

    def prune() -> dict:
        deleted, reclaimed = [], 0
        for c in mgr.all():
            if c.running:
                continue
            reclaimed += mgr.size_rw(c)
            mgr.remove(c.id)
            deleted.append(c.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    return json_response(await in_thread(request, prune))


def register(r: Router) -> None:
    r.add("POST", "/containers/create", container_create)
    r.add("GET", "/containers/json", container_list)
    r.add("POST", "/containers/prune", containers_prune)
    r.add("GET", "/containers/{id}/json", container_inspect)
    r.add("POST", "/containers/{id}/start", container_start)
    r.add("POST", "/containers/{id}/wait", container_wait)
    r.add("POST", "/containers/{id}/attach", container_attach)
    r.add("POST", "/containers/{id}/kill", container_kill)
    r.add("POST", "/containers/{id}/stop", container_stop)
    r.add("POST", "/containers/{id}/restart", container_restart)
    r.add("POST", "/containers/{id}/pause", container_pause)
    r.add("POST", "/containers/{id}/unpause", container_unpause)
    r.add("POST", "/containers/{id}/rename", container_rename)
    r.add("POST", "/containers/{id}/update", container_update)
    r.add("POST", "/containers/{id}/resize", container_resize)
    r.add("DELETE", "/containers/{id}", container_delete)
    r.add("GET", "/containers/{id}/changes", container_changes)
    r.add("GET", "/containers/{id}/export", container_export)
    r.add("GET", "/containers/{id}/logs", container_logs)
    r.add("GET", "/containers/{id}/top", container_top)
    r.add("GET", "/containers/{id}/stats", container_stats)
    r.add("HEAD", "/containers/{id}/archive", archive_head)
    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("PUT", "/containers/{id}/archive", archive_put)
    r.add("POST", "/commit", commit)
