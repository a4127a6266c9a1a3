"""Informers: a reflector (list, then watch from the list's resourceVersion, re-list on 410) feeding an Indexer,
and handlers told about every add, update and delete (client-go's SharedIndexInformer, without the DeltaFIFO:
one asyncio loop applies each event to the cache and then calls the handlers, which only enqueue keys).

One `InformerFactory` per process shares one informer per (resource, namespace, selectors) among every component.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.status import ResourceExpired
from kapal.kube.client.store import Indexer, IndexFunc, Obj, object_key
from kapal.kube.meta.resources import ResourceType

log = logging.getLogger(__name__)


@dataclass(eq=False)
class EventHandler:
    """What a consumer wants to hear. Handlers must be quick and never modify the objects they are given."""

    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None
    resync_period: float = 0.0  # > 0: on_update(obj, obj) for every cached object this often


def strip_managed_fields(obj: Obj) -> Obj:
    """managedFields are big and no controller reads them: the cache does without (as kube-controller-manager)."""
    meta = obj.get("metadata")
    if meta is not None:
        meta.pop("managedFields", None)
    return obj


class Informer:
    def __init__(self, client: ApiClient, r: ResourceType, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None, page_size: int = 500,
                 transform: Callable[[Obj], Obj] | None = strip_managed_fields) -> None:
        self.client = client
        self.resource = r
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.transform = transform
        self.indexer = Indexer()
        self.handlers: list[EventHandler] = []
        self.resource_version = ""
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_tasks: list[asyncio.Task[None]] = []
        self.relists = 0

    def __repr__(self) -> str:
        return f"Informer({self.resource.plural}, ns={self.namespace}, fields={self.field_selector})"

    # --- consumers --------------------------------------------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        """Register; a late handler first hears an add for every object already cached (as upstream)."""
        self.handlers.append(handler)
        if self._synced.is_set() and handler.on_add is not None:
            for obj in list(self.indexer.items.values()):
                self._call(handler.on_add, obj)
        if handler.resync_period > 0 and self._task is not None:
            self._resync_tasks.append(asyncio.create_task(self._resync(handler)))

    def remove_handler(self, handler: EventHandler) -> None:
        if handler in self.handlers:
            self.handlers.remove(handler)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self.indexer.add_index(name, func)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # --- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")
            for h in self.handlers:
                if h.resync_period > 0:
                    self._resync_tasks.append(asyncio.create_task(self._resync(h)))

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._resync_tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._resync_tasks = []

    # --- the reflector ----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._list()
                backoff = 0.2
                await self._watch_until_expired()
            except asyncio.CancelledError:
                raise
            except ResourceExpired:
                continue
            except errors.KapalError as e:
                log.warning("%s: list/watch failed, retrying in %.1fs: %s", self, backoff, e)
            except Exception:
                log.exception("%s: list/watch failed, retrying in %.1fs", self, backoff)
            await asyncio.sleep(backoff * (1 + random.random() * 0.2))
            backoff = min(backoff * 2, 30.0)

    async def _list(self) -> None:
        items, rv = await self.client.list_all(self.resource, self.namespace, label_selector=self.label_selector,
                                               field_selector=self.field_selector, page_size=self.page_size)
        self._replace(items, rv)
        self.relists += 1
        self._synced.set()

    async def _watch_until_expired(self) -> None:
        failures = 0
        while True:
            try:
                async for ev in self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                                  label_selector=self.label_selector,
                                                  field_selector=self.field_selector,
                                                  timeout_seconds=random.randint(300, 600)):
                    failures = 0
                    self._apply(ev.type, ev.object)
            except ResourceExpired:
                log.info("%s: resourceVersion %s expired; listing again", self, self.resource_version)
                return
            except errors.Temporary as e:
                failures += 1
                if failures > 1:
                    log.warning("%s: watch interrupted (%s); resuming from %s", self, e, self.resource_version)
                await asyncio.sleep(min(0.2 * 2 ** failures, 10.0))

    def _apply(self, kind: str, obj: Obj) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if self.transform is not None:
            obj = self.transform(obj)
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        key = object_key(obj)
        if kind == "DELETED":
            old = self.indexer.remove(key)
            self._dispatch_delete(old if old is not None else obj)
        else:
            old = self.indexer.put(key, obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)
        if rv:
            self.resource_version = rv

    def _replace(self, items: list[Obj], rv: str) -> None:
        """A fresh list: adds and updates for what it holds, deletes for what vanished while we were not watching."""
        seen = set()
        for obj in items:
            if self.transform is not None:
                obj = self.transform(obj)
            key = object_key(obj)
            seen.add(key)
            old = self.indexer.put(key, obj)
            if old is None:
                self._dispatch_add(obj)
            elif (old.get("metadata") or {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._dispatch_update(old, obj)
        for key in [k for k in self.indexer.items if k not in seen]:
            old = self.indexer.remove(key)
            if old is not None:
                self._dispatch_delete(old)
        self.resource_version = rv

    def _dispatch_add(self, obj: Obj) -> None:
        for h in self.handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _dispatch_update(self, old: Obj, new: Obj) -> None:
        for h in self.handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in self.handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: event handler %r failed", self, fn)

    async def _resync(self, handler: EventHandler) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(handler.resync_period)
            if handler.on_update is not None:
                for obj in list(self.indexer.items.values()):
                    self._call(handler.on_update, obj, obj)


class InformerFactory:
    """One informer per (resource, namespace, label selector, field selector), shared by whoever asks."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._informers: dict[tuple[str, str, str, str, str], Informer] = {}
        self._started = False

    def informer(self, r: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        key = (r.group, r.plural, namespace or "", label_selector or "", field_selector or "")
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, r, namespace, label_selector=label_selector, field_selector=field_selector)
            self._informers[key] = inf
            if self._started:
                inf.start()
        return inf

    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer asked for so far, and any asked for later."""
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, *informers: Informer, timeout: float | None = None) -> None:
        targets = informers or tuple(self._informers.values())
        await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in targets)), timeout)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
        self._started = False
