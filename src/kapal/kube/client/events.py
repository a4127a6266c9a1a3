"""Events about objects (client-go's EventRecorder): posted in the background, repeats folded into a count.

`record(obj, "Warning", "FailedScheduling", msg)` never blocks or fails the caller: events are best effort,
queued (at most `max_pending`; more are dropped) and sent by a few background tasks. An event equal to one sent
in the last ten minutes (same object, type, reason and message) bumps that event's count instead of adding one,
as upstream's EventCorrelator does, so a pod retried a hundred times shows one line "x100".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import format_time
from kapal.kube.client.kinds import EVENTS

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0
SPAM_BURST = 25
SPAM_REFILL = 1 / 300.0  # one more event per object every five minutes once the burst is spent


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
           "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "", *, instance: str = "",
                 max_pending: int = 2000, senders: int = 4) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.instance = instance or component
        self._pending: asyncio.Queue[tuple[dict[str, Any], str, str, str]] | None = None
        self._max_pending = max_pending
        self._senders_wanted = senders
        self._senders: list[asyncio.Task[None]] = []
        self._seen: OrderedDict[tuple[str, str, str, str], tuple[str, str, int, float]] = OrderedDict()
        self._budget: OrderedDict[str, tuple[float, float]] = OrderedDict()  # object -> (tokens, stamp)
        self.dropped = 0

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if not self._allow(obj):
            self.dropped += 1
            return
        if self._pending is None:
            self._pending = asyncio.Queue(self._max_pending)
            self._senders = [asyncio.create_task(self._send_loop(), name=f"events-{self.component}")
                             for _ in range(self._senders_wanted)]
        try:
            self._pending.put_nowait((obj, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    def _allow(self, obj: dict[str, Any]) -> bool:
        """Upstream's spam filter: a burst of 25 events per object, then one every five minutes."""
        meta = obj.get("metadata") or {}
        key = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        now = time.monotonic()
        tokens, stamp = self._budget.get(key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - stamp) * SPAM_REFILL)
        if tokens < 1:
            return False
        self._budget[key] = (tokens - 1, now)
        self._budget.move_to_end(key)
        while len(self._budget) > 4096:
            self._budget.popitem(last=False)
        return True

    async def close(self, drain_timeout: float = 2.0) -> None:
        if self._pending is not None:
            try:
                await asyncio.wait_for(self._drain(), drain_timeout)
            except TimeoutError:
                pass
        for t in self._senders:
            t.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders = []
        self._pending = None

    async def _drain(self) -> None:
        assert self._pending is not None
        await self._pending.join()

    async def _send_loop(self) -> None:
        assert self._pending is not None
        while True:
            item = await self._pending.get()
            try:
                await self._send(*item)
            except asyncio.CancelledError:
                raise
            except errors.KapalError as e:
                log.debug("event %s for %s not recorded: %s", item[2], object_reference(item[0]).get("name"), e)
            except Exception:
                log.exception("event not recorded")
            finally:
                self._pending.task_done()

    async def _send(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC)
        key = (ref["uid"] or f"{namespace}/{ref['name']}", type_, reason, message)
        seen = self._seen.get(key)
        mono = time.monotonic()
        if seen is not None and mono - seen[3] < AGGREGATE_WINDOW:
            name, ns, count, _ = seen
            try:
                await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": format_time(now)}, ns)
                self._remember(key, (name, ns, count + 1, mono))
                return
            except errors.NotFound:
                pass
        name = f"{ref['name']}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": format_time(now), "lastTimestamp": format_time(now), "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.instance,
        }
        await self.client.create(EVENTS, body, namespace)
        self._remember(key, (name, namespace, 1, mono))

    def _remember(self, key: tuple[str, str, str, str], value: tuple[str, str, int, float]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > 4096:
            self._seen.popitem(last=False)
