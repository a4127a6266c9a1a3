"""Work queues of keys (client-go's util/workqueue): dedup, never one key in two workers, delays, rate-limited retries.

Lifecycle of a key: `add` marks it dirty and queues it (once, however often it is added); `get` hands it to one
worker and marks it processing; an `add` meanwhile only marks it dirty, and `done` queues it again. On failure the
worker calls `add_rate_limited` (retried after the limiter's delay), on success `forget` (its failure count resets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from kapal import errors

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def when(self, item: str) -> float: ...
    def forget(self, item: str) -> None: ...
    def retries(self, item: str) -> int: ...


class ItemExponentialLimiter:
    """base * 2^failures per item, capped (client-go: 5 ms → 1000 s)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base, self.cap = base, cap
        self.failures: dict[str, int] = {}

    def when(self, item: str) -> float:
        n = self.failures.get(item, 0)
        self.failures[item] = n + 1
        return min(self.base * (2 ** min(n, 62)), self.cap)

    def forget(self, item: str) -> None:
        self.failures.pop(item, None)

    def retries(self, item: str) -> int:
        return self.failures.get(item, 0)


class BucketLimiter:
    """An overall token bucket (client-go: 10 qps, burst 100) so a storm of failures cannot flood the server."""

    def __init__(self, qps: float = 10.0, burst: int = 100) -> None:
        self.qps, self.burst = qps, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def when(self, item: str) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps

    def forget(self, item: str) -> None:
        pass

    def retries(self, item: str) -> int:
        return 0


class MaxOfLimiter:
    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: str) -> float:
        return max(lim.when(item) for lim in self.limiters)

    def forget(self, item: str) -> None:
        for lim in self.limiters:
            lim.forget(item)

    def retries(self, item: str) -> int:
        return max(lim.retries(item) for lim in self.limiters)


def default_rate_limiter() -> RateLimiter:
    return MaxOfLimiter(ItemExponentialLimiter(0.005, 1000.0), BucketLimiter(10.0, 100))


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


class WorkQueue:
    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.limiter = rate_limiter or default_rate_limiter()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._ready = asyncio.Event()
        self._shutting_down = False
        self.adds = 0

    # --- adding -----------------------------------------------------------------------------------------------------

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        """Add once `delay` seconds have passed; an earlier pending add of the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= at:
                return
            pending[1].cancel()
        self._waiting[key] = (at, loop.call_at(at, self._fire, key))

    def _fire(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.limiter.when(key))

    def forget(self, key: str) -> None:
        self.limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.limiter.retries(key)

    # --- taking -----------------------------------------------------------------------------------------------------

    async def get(self) -> str:
        """The next key, now owned by the caller until `done`; raises ShutDown once the queue is shut down."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def shut_down(self) -> None:
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)


async def run_worker(queue: WorkQueue, sync: Callable[[str], Awaitable[None]], *, max_retries: int = 0,
                     logger: logging.Logger | None = None) -> None:
    """sample-controller's processNextWorkItem loop: get, sync, forget on success, retry with backoff on failure.

    `max_retries` > 0 drops a key after that many failures (it comes back with its next event)."""
    lg = logger or log
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            await sync(key)
            queue.forget(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            retries = queue.num_requeues(key)
            if max_retries and retries >= max_retries:
                lg.warning("%s: dropping %s after %d retries: %s", queue.name, key, retries, e)
                queue.forget(key)
            else:
                if isinstance(e, errors.KapalError):
                    quiet = isinstance(e, (errors.Conflict, errors.NotFound)) or getattr(e, "quiet", False)
                    level = logging.DEBUG if quiet else logging.INFO
                    lg.log(level, "%s: syncing %s failed (will retry): %s", queue.name, key, e)
                else:
                    lg.exception("%s: syncing %s failed (will retry)", queue.name, key)
                delay = queue.limiter.when(key)
                if isinstance(e, errors.Temporary):
                    delay = max(delay, min(e.delay, 5.0))
                queue.add_after(key, delay)
        finally:
            queue.done(key)
