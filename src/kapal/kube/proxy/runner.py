"""Run a function often enough but never too often (upstream's BoundedFrequencyRunner, on asyncio).

`request()` asks for a run. A run starts at once when the previous one started at least `min_interval` ago,
otherwise as soon as that much time has passed; requests arriving meanwhile coalesce into that one run.
Without requests the function still runs every `max_interval`. A failed run is retried after `retry`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class BoundedFrequencyRunner:
    def __init__(self, name: str, fn: Callable[[], Awaitable[None]], min_interval: float, max_interval: float,
                 retry: float = 1.0) -> None:
        self.name = name
        self.fn = fn
        self.min_interval = max(0.0, min_interval)
        self.max_interval = max(max_interval, self.min_interval, 0.001)
        self.retry = retry
        self._wake = asyncio.Event()
        self._last = float("-inf")
        self.runs = 0

    def request(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waiter = asyncio.ensure_future(self._wake.wait())
                deadline = self._last + self.max_interval - time.monotonic()
                await asyncio.wait({waiter, stopping}, timeout=max(0.0, deadline),
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if stop.is_set():
                    return
                wait = self._last + self.min_interval - time.monotonic()
                if wait > 0:
                    await asyncio.wait({stopping}, timeout=wait)
                    if stop.is_set():
                        return
                self._wake.clear()
                self._last = time.monotonic()
                self.runs += 1
                try:
                    await self.fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s failed; retrying in %.1fs", self.name, self.retry)
                    asyncio.get_running_loop().call_later(self.retry, self._wake.set)
        finally:
            stopping.cancel()
