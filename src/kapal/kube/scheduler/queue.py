"""The scheduling queue (upstream's PriorityQueue): pods wait in one of three places.

- *active*: ready to try, highest priority first, then oldest first;
- *backoff*: failed recently, back in active after 1 s, 2 s, 4 s … at most 10 s per attempt;
- *unschedulable*: no node fitted; they move (through backoff) when the cluster changes in a way that may
  help (a node added or changed, a pod removed) and at the latest after 5 minutes.

The queue holds pod keys; the scheduler reads the current pod from its informer when it pops one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE_WAIT = 300.0


@dataclass
class QueuedPod:
    key: str
    priority: int
    added: float  # when it first entered the queue (monotonic)
    attempts: int = 0
    backoff_until: float = 0.0


class SchedulingQueue:
    def __init__(self) -> None:
        self.pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []
        self._in_active: set[str] = set()
        self._backoff: list[tuple[float, int, str]] = []
        self._unschedulable: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.moves_requested = False  # a cluster event arrived while pods were being scheduled

    # --- adding -----------------------------------------------------------------------------------------------------

    def add(self, key: str, priority: int, failed: bool = False) -> None:
        """A new or changed pending pod: try it now (unless it is backing off, or `failed` to bind just now)."""
        q = self.pods.get(key)
        if q is None:
            q = self.pods[key] = QueuedPod(key, priority, time.monotonic())
        else:
            q.priority = priority
        if failed:
            q.attempts += 1
            q.backoff_until = time.monotonic() + self._backoff_for(q)
        if key in self._in_flight:
            return
        self._unschedulable.pop(key, None)
        if q.backoff_until > time.monotonic():
            self._push_backoff(q)
        else:
            self._push_active(q)

    def delete(self, key: str) -> None:
        self.pods.pop(key, None)
        self._unschedulable.pop(key, None)
        self._in_active.discard(key)  # stale heap entries are skipped on pop

    def __contains__(self, key: str) -> bool:
        return key in self.pods

    def _push_active(self, q: QueuedPod) -> None:
        if q.key in self._in_active:
            return
        self._in_active.add(q.key)
        heapq.heappush(self._active, (-q.priority, q.added, next(self._seq), q.key))
        self._ready.set()

    def _push_backoff(self, q: QueuedPod) -> None:
        heapq.heappush(self._backoff, (q.backoff_until, next(self._seq), q.key))
        self._arm()

    def _arm(self) -> None:
        if not self._backoff:
            return
        loop = asyncio.get_running_loop()
        at = self._backoff[0][0]
        delay = max(0.0, at - time.monotonic())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._flush_backoff)

    def _flush_backoff(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            q = self.pods.get(key)
            if q is None or key in self._in_flight or key in self._unschedulable or q.backoff_until > now:
                continue
            self._push_active(q)
        self._arm()

    # --- taking -----------------------------------------------------------------------------------------------------

    async def pop(self) -> QueuedPod | None:
        """The next pod to schedule (now in flight until `done`/`unschedulable`/`retry`), or None once closed."""
        while True:
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                if key not in self._in_active:
                    continue
                self._in_active.discard(key)
                q = self.pods.get(key)
                if q is None:
                    continue
                self._in_flight.add(key)
                q.attempts += 1
                return q
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: str) -> None:
        """Scheduled (or gone): forget it."""
        self._in_flight.discard(key)
        self.pods.pop(key, None)

    def _backoff_for(self, q: QueuedPod) -> float:
        return min(INITIAL_BACKOFF * 2 ** max(0, q.attempts - 1), MAX_BACKOFF)

    def unschedulable(self, key: str) -> None:
        """No node fits: park it until the cluster changes (or a cluster event came meanwhile: back off)."""
        self._in_flight.discard(key)
        q = self.pods.get(key)
        if q is None:
            return
        q.backoff_until = time.monotonic() + self._backoff_for(q)
        if self.moves_requested:
            self._push_backoff(q)
        else:
            self._unschedulable[key] = time.monotonic()

    def retry(self, key: str) -> None:
        """A transient error (binding failed): try again after the pod's backoff."""
        self._in_flight.discard(key)
        q = self.pods.get(key)
        if q is None:
            return
        q.backoff_until = time.monotonic() + self._backoff_for(q)
        self._push_backoff(q)

    def move_all_to_active_or_backoff(self) -> None:
        """A cluster event that may make parked pods fit: give every parked pod another try."""
        self.moves_requested = True
        now = time.monotonic()
        for key in list(self._unschedulable):
            del self._unschedulable[key]
            q = self.pods.get(key)
            if q is None:
                continue
            if q.backoff_until > now:
                self._push_backoff(q)
            else:
                self._push_active(q)

    def flush_unschedulable_leftovers(self) -> None:
        now = time.monotonic()
        for key, since in list(self._unschedulable.items()):
            if now - since >= MAX_UNSCHEDULABLE_WAIT:
                del self._unschedulable[key]
                q = self.pods.get(key)
                if q is not None:
                    self._push_active(q)

    def cycle_started(self) -> None:
        self.moves_requested = False

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._ready.set()

    def stats(self) -> dict[str, int]:
        return {"active": len(self._in_active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable), "in_flight": len(self._in_flight)}
