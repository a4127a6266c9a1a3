"""Per-key exponential backoff (client-go's flowcontrol.Backoff): crash loops and image pulls.

`next(key)` doubles the key's delay (base first, capped at max); `remaining(key, since)` is how much of
the current delay is left counting from `since` (a container's finish time, a failed pull); an entry
untouched for twice the cap starts over from base.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class Backoff:
    def __init__(self, base: float, cap: float, clock: Callable[[], float] = time.time) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, float]] = {}  # key -> (delay, last update)

    def _fresh(self, key: Hashable, now: float) -> tuple[float, float] | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry[1] > 2 * self.cap:
            del self._entries[key]
            return None
        return entry

    def next(self, key: Hashable) -> float:
        now = self.clock()
        entry = self._fresh(key, now)
        delay = self.base if entry is None else min(entry[0] * 2, self.cap)
        self._entries[key] = (delay, now)
        return delay

    def delay(self, key: Hashable) -> float:
        entry = self._fresh(key, self.clock())
        return entry[0] if entry else 0.0

    def remaining(self, key: Hashable, since: float) -> float:
        now = self.clock()
        entry = self._fresh(key, now)
        if entry is None:
            return 0.0
        return max(0.0, since + entry[0] - now)

    def reset(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if isinstance(k, tuple) and k and k[0] == prefix]:
            del self._entries[key]
