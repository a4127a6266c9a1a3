"""The watch cache: every object in memory, a ring of recent events per resource, and the watchers.

One storage watch on `/registry/` feeds it, so N watchers cost one storage
subscription. Objects in the cache are shared and must never be mutated:
callers that want to change one take `entry.copy()`.

Revisions: `revision` is the last storage revision applied. A resource's
`floor` is the revision after which its ring holds every event; a watch
from an older revision is served by a direct storage watch (exact, until
compaction), never by guessing.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kapal.kube.meta.resources import RESOURCES
from kapal.kube.meta.selectors import FieldSelector, LabelSelector
from kapal.kube.storage import Backend, Compacted, Event, KeyValue

log = logging.getLogger(__name__)

ROOT = "/registry/"


def resource_prefix(storage_key: tuple[str, str]) -> str:
    group, plural = storage_key
    return f"{ROOT}{group or 'core'}/{plural}/"


def object_key(storage_key: tuple[str, str], namespace: str | None, name: str) -> str:
    return resource_prefix(storage_key) + (f"{namespace}/{name}" if namespace else name)


def split_key(key: str) -> tuple[tuple[str, str], str | None, str] | None:
    """(storage_key, namespace, name) of a storage key, or None for a key no resource owns."""
    parts = key[len(ROOT):].split("/")
    if len(parts) == 3:
        group, plural, name = parts
        ns = None
    elif len(parts) == 4:
        group, plural, ns, name = parts
    else:
        return None
    return ("" if group == "core" else group, plural), ns, name


class Entry:
    """One object version as the cache holds it: the decoded object (read-only) and its JSON, made once."""

    __slots__ = ("key", "obj", "revision", "_json")

    def __init__(self, key: str, obj: dict[str, Any], revision: int, raw: bytes | None = None) -> None:
        self.key = key
        self.obj = obj
        self.revision = revision
        self._json = raw

    @classmethod
    def from_kv(cls, kv: KeyValue, revision: int | None = None) -> Entry:
        obj = json.loads(kv.value)
        rev = kv.mod_revision if revision is None else revision
        obj.setdefault("metadata", {})["resourceVersion"] = str(rev)
        return cls(kv.key, obj, rev)

    def json(self) -> bytes:
        if self._json is None:
            self._json = json.dumps(self.obj, separators=(",", ":"), ensure_ascii=False).encode()
        return self._json

    def copy(self) -> dict[str, Any]:
        """A private, mutable copy of the object."""
        return json.loads(self.json())

    def at_revision(self, revision: int) -> Entry:
        obj = self.copy()
        obj["metadata"]["resourceVersion"] = str(revision)
        return Entry(self.key, obj, revision)


@dataclass(slots=True)
class CacheEvent:
    type: str
    entry: Entry
    prev: Entry | None
    revision: int


@dataclass(frozen=True)
class Filter:
    """Which objects a list or watch wants: a namespace, a name, label and field selectors."""

    namespace: str | None = None
    name: str | None = None
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    def matches(self, entry: Entry) -> bool:
        meta = entry.obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.labels is not None and not self.labels.empty and not self.labels.matches(meta.get("labels")):
            return False
        if self.fields is not None and not self.fields.empty and not self.fields.matches(entry.obj):
            return False
        return True

    def classify(self, ev: CacheEvent) -> tuple[str, Entry] | None:
        """What this watcher sees of an event: upstream turns selector transitions into ADDED/DELETED."""
        if ev.type == "MODIFIED" and ev.prev is not None:
            now, before = self.matches(ev.entry), self.matches(ev.prev)
            if now and before:
                return "MODIFIED", ev.entry
            if now:
                return "ADDED", ev.entry
            if before:
                return "DELETED", ev.prev.at_revision(ev.revision)
            return None
        if self.matches(ev.entry):
            return ev.type, ev.entry
        return None


class Watcher:
    """A subscription: the cache pushes classified events into a bounded buffer; overflow ends the watch.

    A deque and one future per wait (rather than an asyncio.Queue and wait_for) keep the fan-out of one
    event to thousands of watchers cheap.
    """

    __slots__ = ("filter", "pending", "maxsize", "overflowed", "last_revision", "_waiter")

    def __init__(self, filt: Filter, maxsize: int) -> None:
        self.filter = filt
        self.pending: deque[tuple[str, Entry] | None] = deque()
        self.maxsize = maxsize
        self.overflowed = False
        self.last_revision = 0
        self._waiter: asyncio.Future[None] | None = None

    def _put(self, item: tuple[str, Entry] | None) -> None:
        if item is not None and len(self.pending) >= self.maxsize:
            self.overflowed = True
            self.pending.clear()
            item = None
        self.pending.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, ev: CacheEvent) -> None:
        out = self.filter.classify(ev)
        if out is not None:
            self._put(out)

    def close(self) -> None:
        self._put(None)

    async def wait(self, timeout: float) -> bool:
        """Wait up to timeout seconds for something to read; True when there is."""
        if self.pending:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        handle = loop.call_later(max(timeout, 0.0), _wake, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waiter = None
        return bool(self.pending)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ResourceCache:
    def __init__(self, storage_key: tuple[str, str], capacity: int, floor: int) -> None:
        self.storage_key = storage_key
        self.prefix = resource_prefix(storage_key)
        self.items: dict[str, Entry] = {}
        self.events: deque[CacheEvent] = deque(maxlen=capacity)
        self.floor = floor
        self.watchers: set[Watcher] = set()
        self.last_revision = 0
        self._sorted: list[str] | None = None

    def apply(self, ev: CacheEvent, live: bool) -> None:
        if live:
            if ev.type == "DELETED":
                self.items.pop(ev.entry.key, None)
                self._sorted = None
            else:
                if ev.entry.key not in self.items:
                    self._sorted = None
                self.items[ev.entry.key] = ev.entry
            self.last_revision = ev.revision
        if len(self.events) == self.events.maxlen:
            self.floor = self.events[0].revision
        self.events.append(ev)
        if live:
            for w in self.watchers:
                w.push(ev)

    def sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.items)
        return self._sorted

    def since(self, revision: int) -> list[CacheEvent]:
        i = bisect.bisect_right(self.events, revision, key=lambda e: e.revision)
        return list(self.events)[i:] if i < len(self.events) else []


class WatchCache:
    def __init__(self, backend: Backend, capacity: int = 1000, watcher_queue: int = 10000) -> None:
        self.backend = backend
        self.capacity = capacity
        self.watcher_queue = watcher_queue
        self.revision = 0
        self._resources: dict[tuple[str, str], ResourceCache] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[tuple[str, str], CacheEvent], None]] = []
        self._floor = 0
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None

    def resource(self, storage_key: tuple[str, str]) -> ResourceCache:
        rc = self._resources.get(storage_key)
        if rc is None:
            rc = self._resources[storage_key] = ResourceCache(storage_key, self.capacity, self._floor)
        return rc

    def add_listener(self, fn: Callable[[tuple[str, str], CacheEvent], None]) -> None:
        """Called synchronously for every live event (indexes such as RBAC and allocators hang off this)."""
        self._listeners.append(fn)

    async def start(self, history: int = 10000) -> None:
        listing = await self.backend.list(ROOT)
        for kv in listing.items:
            where = split_key(kv.key)
            if where is None:
                continue
            rc = self.resource(where[0])
            rc.items[kv.key] = Entry.from_kv(kv)
        self.revision = listing.revision
        compacted = await self.backend.compacted_revision()
        self._floor = max(compacted, listing.revision - history)
        for storage_key in {r.storage_key for r in RESOURCES}:
            self.resource(storage_key)
        for rc in self._resources.values():
            rc.floor = self._floor
        stream = self.backend.watch(ROOT, self._floor)
        self._task = asyncio.create_task(self._run(stream, listing.revision), name="watch-cache")
        if self._floor == listing.revision:
            self.ready.set()

    async def _run(self, stream: AsyncIterator[Event], listed_at: int) -> None:
        try:
            async for ev in stream:
                live = ev.kv.mod_revision > listed_at
                self._apply(ev, live)
                if not live and ev.kv.mod_revision == listed_at:
                    self.ready.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.failed = e
            log.exception("watch cache stopped")
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(e)
            raise

    def _apply(self, ev: Event, live: bool) -> None:
        where = split_key(ev.kv.key)
        if where is None:
            return
        storage_key = where[0]
        entry = Entry.from_kv(ev.kv)
        prev = Entry.from_kv(ev.prev) if ev.prev is not None else None
        cev = CacheEvent(ev.type, entry, prev, ev.kv.mod_revision)
        rc = self.resource(storage_key)
        rc.apply(cev, live)
        if not live:
            return
        self.revision = ev.kv.mod_revision
        for fn in self._listeners:
            try:
                fn(storage_key, cev)
            except Exception:
                log.exception("watch cache listener failed")
        if self._waiters:
            still = []
            for rev, fut in self._waiters:
                if rev <= self.revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((rev, fut))
            self._waiters = still

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has applied `revision`; False on timeout."""
        if self.failed is not None:
            raise self.failed
        if revision <= self.revision:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False

    async def fresh(self, timeout: float = 3.0) -> bool:
        """Catch up with storage (a consistent read): wait for the storage's current revision."""
        return await self.wait_for(await self.backend.current_revision(), timeout)

    # --- reads ---------------------------------------------------------------------------------------------------

    def get(self, storage_key: tuple[str, str], namespace: str | None, name: str) -> Entry | None:
        return self.resource(storage_key).items.get(object_key(storage_key, namespace, name))

    def list(self, storage_key: tuple[str, str], filt: Filter, start: str = "",
             limit: int = 0) -> tuple[list[Entry], str | None]:
        """Matching entries in key order from `start`; with a limit, also the key to continue after."""
        rc = self.resource(storage_key)
        keys = rc.sorted_keys()
        prefix = rc.prefix + (f"{filt.namespace}/" if filt.namespace else "")
        lo = bisect.bisect_left(keys, max(prefix, start))
        out: list[Entry] = []
        items = rc.items
        for i in range(lo, len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            entry = items[key]
            if filt.matches(entry):
                if limit and len(out) >= limit:
                    return out, out[-1].key
                out.append(entry)
        return out, None

    def count(self, storage_key: tuple[str, str]) -> int:
        return len(self.resource(storage_key).items)

    # --- watch ---------------------------------------------------------------------------------------------------

    def subscribe(self, storage_key: tuple[str, str], filt: Filter, after: int | None) -> Watcher | None:
        """A watcher fed from the cache: initial state (after=None) or events after a revision.

        Returns None when the ring no longer reaches back to `after` (the caller watches storage instead).
        """
        rc = self.resource(storage_key)
        w = Watcher(filt, self.watcher_queue)
        if after is None:
            for key in rc.sorted_keys():
                entry = rc.items[key]
                if filt.matches(entry):
                    w.pending.append(("ADDED", entry))
            w.last_revision = self.revision
        else:
            if after < rc.floor:
                return None
            for ev in rc.since(after):
                w.push(ev)
            w.last_revision = after
        rc.watchers.add(w)
        return w

    def unsubscribe(self, storage_key: tuple[str, str], w: Watcher) -> None:
        self.resource(storage_key).watchers.discard(w)

    async def storage_events(self, storage_key: tuple[str, str], after: int) -> AsyncIterator[CacheEvent]:
        """Events straight from storage (for resumes older than the ring); raises Compacted."""
        async for ev in self.backend.watch(resource_prefix(storage_key), after):
            entry = Entry.from_kv(ev.kv)
            prev = Entry.from_kv(ev.prev) if ev.prev is not None else None
            yield CacheEvent(ev.type, entry, prev, ev.kv.mod_revision)

    def watcher_count(self) -> int:
        return sum(len(rc.watchers) for rc in self._resources.values())

    async def stop(self) -> None:
        for rc in self._resources.values():
            for w in list(rc.watchers):
                w.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Compacted, Exception):
                pass
