"""A complete in-memory backend: per-key history in plain dicts, nothing on disk.

For tests of the layers above and for throwaway clusters (`memory://`).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import AsyncIterator

from kapal.errors import AlreadyExists, Conflict, NotFound
from kapal.kube.storage.hub import WatchHub
from kapal.kube.storage.interface import Compacted, Event, KeyValue, ListResult, prefix_end

log = logging.getLogger(__name__)

# One write in a key's history: (revision, value or None for a deletion, create_revision).
_Entry = tuple[int, "bytes | None", int]


class MemoryBackend:
    def __init__(self) -> None:
        self._revision = 0
        self._compacted = 0
        self._history: dict[str, list[_Entry]] = {}
        self._keys: list[str] = []  # sorted, every key with history
        self._events: list[Event] = []  # revision order, for watch replay
        self._hub = WatchHub()

    def _latest(self, key: str) -> KeyValue | None:
        entries = self._history.get(key)
        if not entries or entries[-1][1] is None:
            return None
        rev, value, created = entries[-1]
        return KeyValue(key, value, created, rev)  # type: ignore[arg-type]

    def _append(self, key: str, value: bytes | None, create_revision: int, event_type: str,
                prev: KeyValue | None) -> KeyValue:
        self._revision += 1
        rev = self._revision
        if key not in self._history:
            self._history[key] = []
            bisect.insort(self._keys, key)
        self._history[key].append((rev, value, create_revision or rev))
        kv = KeyValue(key, value if value is not None else prev.value, create_revision or rev, rev)  # type: ignore[union-attr]
        event = Event(event_type, kv, prev)
        self._events.append(event)
        self._hub.publish(event)
        log.debug("memory %s %s rev=%d", event_type, key, rev)
        return kv

    async def get(self, key: str) -> KeyValue | None:
        return self._latest(key)

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        if revision and revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision > self._revision:
            raise Conflict(f"revision {revision} is in the future (current: {self._revision})")
        at = revision or self._revision
        lo = bisect.bisect_left(self._keys, max(prefix, start))
        hi = bisect.bisect_left(self._keys, prefix_end(prefix))
        items: list[KeyValue] = []
        more = False
        for key in self._keys[lo:hi]:
            entries = self._history[key]
            i = bisect.bisect_right(entries, at, key=lambda e: e[0]) - 1
            if i < 0 or entries[i][1] is None:
                continue
            if limit and len(items) >= limit:
                more = True
                break
            rev, value, created = entries[i]
            items.append(KeyValue(key, value, created, rev))  # type: ignore[arg-type]
        return ListResult(items, at, more)

    async def count(self, prefix: str) -> int:
        return len((await self.list(prefix)).items)

    async def create(self, key: str, value: bytes) -> KeyValue:
        if self._latest(key) is not None:
            raise AlreadyExists(f"key {key} already exists")
        return self._append(key, value, 0, "ADDED", None)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        current = self._latest(key)
        if current is None:
            raise NotFound(f"key {key} not found")
        if current.mod_revision != expected_revision:
            raise Conflict(f"key {key} is at revision {current.mod_revision}, not {expected_revision}")
        return self._append(key, value, current.create_revision, "MODIFIED", current)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        current = self._latest(key)
        if current is None:
            raise NotFound(f"key {key} not found")
        if expected_revision and current.mod_revision != expected_revision:
            raise Conflict(f"key {key} is at revision {current.mod_revision}, not {expected_revision}")
        return self._append(key, None, current.create_revision, "DELETED", current)

    def _replay(self, prefix: str, after: int) -> list[Event]:
        if after < self._compacted:
            raise Compacted(after, self._compacted)
        i = bisect.bisect_right(self._events, after, key=lambda e: e.kv.mod_revision)
        return [e for e in self._events[i:] if e.kv.key.startswith(prefix)]

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        return self._hub.watch(prefix, after, self._replay)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        for key in list(self._history):
            entries = self._history[key]
            keep_from = bisect.bisect_right(entries, revision, key=lambda e: e[0]) - 1
            if keep_from < 0:
                continue
            kept = entries[keep_from:]
            if kept[0][1] is None:
                kept = kept[1:]
            if kept:
                self._history[key] = kept
            else:
                del self._history[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))
        i = bisect.bisect_right(self._events, revision, key=lambda e: e.kv.mod_revision)
        del self._events[:i]
        self._compacted = revision

    async def current_revision(self) -> int:
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    async def close(self) -> None:
        return None
