"""Watch over HTTP: newline-delimited JSON events in one chunked response.

resourceVersion semantics as upstream: unset or "0" start with synthetic
ADDED events for the current state; N starts after N (from the cache ring,
or straight from storage when the ring is shorter, 410 Gone only after
compaction); sendInitialEvents=true ends the initial state with a bookmark
annotated `k8s.io/initial-events-end`. Bookmarks every bookmark_interval
when allowWatchBookmarks=true; the stream ends at timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kapal import errors
from kapal.kube.api import codec, pure
from kapal.kube.api.cache import CacheEvent, Entry, Filter, Watcher
from kapal.kube.api.requestinfo import RequestInfo
from kapal.kube.meta.resources import ResourceType
from kapal.kube.storage import Compacted

if TYPE_CHECKING:
    from kapal.kube.api.rest import Rest


def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true")


def _gone(revision: int, oldest: int) -> bytes:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": f"too old resource version: {revision} ({oldest})", "reason": "Expired", "code": 410}
    return codec.dumps({"type": "ERROR", "object": status}) + b"\n"


class _Encoder:
    """Turns (type, entry) into one event line, as the client asked for it (plain, Table, converted)."""

    def __init__(self, rest: Rest, request: web.Request, r: ResourceType) -> None:
        from kapal.kube.api.rest import partial, storage_resource

        self.rest, self.request, self.r = rest, request, r
        self.srs = storage_resource(r)
        self.accept = codec.negotiate(request.headers.get("Accept"))
        self.partial = partial
        self.plain = self.srs is r and not self.accept.as_kind

    def event(self, kind: str, entry: Entry) -> bytes:
        if self.plain:
            return b'{"type":"' + kind.encode() + b'","object":' + entry.json() + b"}\n"
        obj: dict[str, Any] = entry.obj
        if self.srs is not self.r:
            obj = pure.convert(obj, self.srs, self.r)
        if self.accept.as_kind == "Table":
            obj = self.rest.table(self.request, self.r, [obj], {"resourceVersion": str(entry.revision)})
        elif self.accept.as_kind.startswith("PartialObjectMetadata"):
            obj = self.partial(obj)
        return codec.dumps({"type": kind, "object": obj}) + b"\n"

    def bookmark(self, revision: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        kind, api_version = self.r.kind, self.r.api_version
        if self.accept.as_kind == "Table":
            kind, api_version = "Table", "meta.k8s.io/v1"
        elif self.accept.as_kind.startswith("PartialObjectMetadata"):
            kind, api_version = "PartialObjectMetadata", "meta.k8s.io/v1"
        return codec.dumps({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                                                           "metadata": meta}}) + b"\n"


async def serve(rest: Rest, request: web.Request, info: RequestInfo) -> web.StreamResponse:
    r = info.resource
    assert r is not None
    ctx = rest.ctx
    q = request.query
    filt: Filter = rest.list_filter(request, r, info.namespace)
    if info.name:
        filt = Filter(filt.namespace, info.name, filt.labels, filt.fields)
    rv = q.get("resourceVersion", "")
    bookmarks = _truthy(q.get("allowWatchBookmarks"))
    send_initial = q.get("sendInitialEvents")
    if send_initial is not None and not (q.get("resourceVersionMatch") == "NotOlderThan"):
        raise errors.Invalid("sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to "
                             "NotOlderThan")
    initial = _truthy(send_initial) if send_initial is not None else rv in ("", "0")
    if send_initial is not None and not bookmarks:
        raise errors.Invalid("sendInitialEvents requires setting allowWatchBookmarks=true")
    timeout_raw = q.get("timeoutSeconds")
    if timeout_raw:
        try:
            timeout = float(int(timeout_raw))
        except ValueError:
            raise errors.Invalid(f'invalid timeoutSeconds "{timeout_raw}"') from None
    else:
        base = ctx.config.min_request_timeout
        timeout = float(random.randint(base, 2 * base)) if base else 3600.0
    deadline = time.monotonic() + timeout

    after: int | None = None
    await rest.wait_for_rv(rv)
    if not initial:
        after = rest.parse_rv(rv) if rv not in ("", "0") else ctx.cache.revision

    encoder = _Encoder(rest, request, r)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    metrics_key = f"apiserver_registered_watchers|{{group=\"{r.group}\",kind=\"{r.kind}\"}}"
    ctx.metrics.gauges.setdefault(metrics_key, lambda: ctx.cache.watcher_count())

    watcher = ctx.cache.subscribe(r.storage_key, filt, after)
    try:
        if watcher is None:
            assert after is not None
            await _from_storage(rest, resp, encoder, r, filt, after, deadline, bookmarks)
        else:
            await _from_cache(rest, resp, encoder, watcher, deadline, bookmarks, initial and send_initial is not None)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if watcher is not None:
            ctx.cache.unsubscribe(r.storage_key, watcher)
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    return resp


async def _from_cache(rest: Rest, resp: web.StreamResponse, encoder: _Encoder, w: Watcher, deadline: float,
                      bookmarks: bool, initial_end_bookmark: bool) -> None:
    ctx = rest.ctx
    interval = ctx.config.bookmark_interval
    last_rev = w.last_revision
    if initial_end_bookmark:
        lines = []
        while w.pending:
            item = w.pending.popleft()
            if item is None:
                return
            lines.append(encoder.event(item[0], item[1]))
            last_rev = max(last_rev, item[1].revision)
        lines.append(encoder.bookmark(ctx.cache.revision, initial_end=True))
        await resp.write(b"".join(lines))
    next_bookmark = time.monotonic() + interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        if not await w.wait(min(deadline, next_bookmark if bookmarks else deadline) - now):
            if bookmarks and time.monotonic() >= next_bookmark:
                await resp.write(encoder.bookmark(max(ctx.cache.revision, last_rev)))
                next_bookmark = time.monotonic() + interval
            continue
        lines = []
        while w.pending and len(lines) < 512:
            item = w.pending.popleft()
            if item is None:
                if lines:
                    await resp.write(b"".join(lines))
                return
            lines.append(encoder.event(item[0], item[1]))
            last_rev = item[1].revision
        await resp.write(b"".join(lines))


async def _from_storage(rest: Rest, resp: web.StreamResponse, encoder: _Encoder, r: ResourceType, filt: Filter,
                        after: int, deadline: float, bookmarks: bool) -> None:
    stream: AsyncIterator[CacheEvent] = rest.ctx.cache.storage_events(r.storage_key, after)
    queue: asyncio.Queue[CacheEvent | None | BaseException] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for ev in stream:
                queue.put_nowait(ev)
        except BaseException as e:
            queue.put_nowait(e)

    task = asyncio.create_task(pump())
    interval = rest.ctx.config.bookmark_interval
    next_bookmark = time.monotonic() + interval
    last_rev = after
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline, next_bookmark if bookmarks else deadline) - now
            try:
                item = await asyncio.wait_for(queue.get(), max(wait, 0.001))
            except TimeoutError:
                if bookmarks:
                    await resp.write(encoder.bookmark(last_rev))
                    next_bookmark = time.monotonic() + interval
                continue
            if isinstance(item, Compacted):
                oldest = await rest.ctx.backend.compacted_revision()
                await resp.write(_gone(after, oldest))
                return
            if isinstance(item, BaseException):
                raise item
            if item is None:
                return
            last_rev = item.revision
            out = filt.classify(item)
            if out is not None:
                await resp.write(encoder.event(out[0], out[1]))
    finally:
        task.cancel()
