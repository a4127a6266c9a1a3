"""Controller expectations (upstream's ControllerExpectations): after asking for N creations or deletions, a
controller waits until its informer has seen them before it counts pods again, so that a stale cache never
makes it create or delete twice. Expectations expire after 5 minutes in case an event was missed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

EXPECTATIONS_TTL = 300.0


@dataclass
class Expectation:
    adds: int = 0
    dels: int = 0
    del_keys: set[str] = field(default_factory=set)
    stamp: float = field(default_factory=time.monotonic)


class Expectations:
    def __init__(self) -> None:
        self._by_key: dict[str, Expectation] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        if e.adds <= 0 and e.dels <= 0:
            return True
        return time.monotonic() - e.stamp > EXPECTATIONS_TTL

    def expect(self, key: str, creations: int, deletions: list[str]) -> None:
        self._by_key[key] = Expectation(adds=creations, dels=len(deletions), del_keys=set(deletions))

    def expect_creations(self, key: str, n: int) -> None:
        self._by_key[key] = Expectation(adds=n)

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._by_key[key] = Expectation(dels=len(pod_keys), del_keys=set(pod_keys))

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def creations_skipped(self, key: str, n: int) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= n

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None and pod_key in e.del_keys:
            e.del_keys.discard(pod_key)
            e.dels -= 1

    def deletion_skipped(self, key: str, pod_key: str) -> None:
        self.deletion_observed(key, pod_key)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)
