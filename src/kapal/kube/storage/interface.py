"""The storage seam: a revisioned key-value log the API server keeps its objects in.

Glossary: a *key* is a path such as `/registry/core/pods/default/web`; a
*revision* is a cluster-wide, strictly increasing integer that every write
gets (resourceVersion is its decimal string); *mod_revision* is the revision
of a key's last write and *create_revision* that of the write that created
it. A *watch* yields every write after a revision, in revision order, with
no gaps and no duplicates, until compaction removes the history it would
need (then `Compacted`, which the API server turns into 410 Gone).

The verbs are sized to the API server (kine's lesson): create, update with an
expected revision (compare-and-swap), delete, get, list a prefix at a
revision, watch a prefix from a revision, compact, current revision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kapal.errors import KapalError


class Compacted(KapalError):
    """The requested revision is older than the oldest history kept."""

    http_status = 410
    reason = "Expired"

    def __init__(self, revision: int, compacted: int) -> None:
        super().__init__(f"required revision {revision} has been compacted (oldest kept: {compacted})")
        self.revision = revision
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One write. For DELETED, `kv.value` is the last value and `kv.mod_revision` the deletion's revision."""

    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    revision: int
    more: bool = False


@runtime_checkable
class Backend(Protocol):
    """Every backend (memory, sqlite, etcd) passes tests/conformance/test_storage.py."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        """Live keys under prefix as of revision (0: now), in key order, from `start` on; `more` if limited."""
        ...

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises AlreadyExists when the key is live."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        """Compare-and-swap; raises Conflict if the key moved on, NotFound if it is gone."""
        ...

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        """Returns the deleted value with the deletion's revision; NotFound, or Conflict if expected moved on."""
        ...

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        """Events for keys under prefix with revision > after; raises Compacted when history is gone."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history up to and including revision (live values stay)."""
        ...

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def close(self) -> None: ...


def prefix_end(prefix: str) -> str:
    """The first key after every key that starts with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"
