"""The shape every controller has (sample-controller's): event handlers that only enqueue keys, a work queue,
N workers running a level-triggered `sync(key)` that reads the world from informer caches and converges it.

A controller gets a ControllerContext: its own API client (its service-account identity with
--use-service-account-credentials), the process-wide informer factory, an event recorder and a clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import Clock, RealClock
from kapal.kube.client.events import EventRecorder
from kapal.kube.client.informer import EventHandler, Informer, InformerFactory
from kapal.kube.client.store import Obj, object_key
from kapal.kube.client.workqueue import WorkQueue, run_worker


class Requeue(errors.Temporary):
    """Not done yet (waiting for the world to catch up): try again after the queue's backoff, quietly."""

    quiet = True


@dataclass
class ControllerContext:
    client: ApiClient
    informers: InformerFactory
    recorder: EventRecorder
    clock: Clock = field(default_factory=RealClock)
    options: dict[str, Any] = field(default_factory=dict)


class Controller:
    """Subclasses set `name`, register handlers in __init__ (via `watch`) and implement `sync`."""

    name = "controller"
    workers = 5
    max_retries = 0  # 0: retry forever with backoff

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.clock = ctx.clock
        self.queue = WorkQueue(self.name)
        self.log = logging.getLogger(f"kapal.kube.controllers.{self.name}")
        self._watched: list[tuple[Informer, EventHandler]] = []

    # --- wiring -----------------------------------------------------------------------------------------------------

    def informer(self, resource: Any, namespace: str | None = None, **kw: Any) -> Informer:
        return self.ctx.informers.informer(resource, namespace, **kw)

    def watch(self, informer: Informer, handler: EventHandler) -> None:
        self._watched.append((informer, handler))

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def enqueue_handler(self) -> EventHandler:
        """Handlers that enqueue the object itself on add, update and delete."""
        return EventHandler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n), on_delete=self.enqueue)

    # --- running ----------------------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def started(self) -> None:
        """Called once caches are synced, before the workers start."""

    async def run(self, workers: int | None = None) -> None:
        for informer, handler in self._watched:
            informer.add_handler(handler)
        try:
            self.ctx.informers.start()
            await self.ctx.informers.wait_for_sync(*{i for i, _ in self._watched})
            await self.started()
            n = workers or self.workers
            tasks = [asyncio.create_task(run_worker(self.queue, self.sync, max_retries=self.max_retries,
                                                    logger=self.log), name=f"{self.name}-worker-{i}")
                     for i in range(n)]
            self.log.debug("%s: started %d workers", self.name, n)
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.queue.shut_down()
            for informer, handler in self._watched:
                informer.remove_handler(handler)
