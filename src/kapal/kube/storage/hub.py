"""In-process watch fan-out shared by the embedded backends (memory, sqlite).

Every write in this process is published here right after it commits, so a
watch needs no polling: it subscribes first, then replays history after its
revision, then follows the live queue, dropping what the replay already
covered. That order is what makes "no gaps, no duplicates" hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from kapal.kube.storage.interface import Event


@dataclass(eq=False)
class _Subscriber:
    prefix: str
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class WatchHub:
    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()

    def publish(self, event: Event) -> None:
        for sub in self._subscribers:
            if event.kv.key.startswith(sub.prefix):
                sub.queue.put_nowait(event)

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    async def watch(self, prefix: str, after: int, history: Callable[[str, int], list[Event]]) -> AsyncIterator[Event]:
        sub = _Subscriber(prefix)
        self._subscribers.add(sub)
        try:
            last = after
            for event in history(prefix, after):
                yield event
                last = event.kv.mod_revision
            while True:
                event = await sub.queue.get()
                if event.kv.mod_revision <= last:
                    continue
                yield event
                last = event.kv.mod_revision
        finally:
            self._subscribers.discard(sub)
