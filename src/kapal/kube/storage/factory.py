"""Pick a backend from a DSN: `sqlite:///path/state.db`, `memory://`, `etcd://host:2379` (a later issue)."""

from __future__ import annotations

from pathlib import Path

from kapal.errors import Invalid, Unsupported
from kapal.kube.storage.interface import Backend


def open_backend(dsn: str) -> Backend:
    if dsn.startswith("memory:"):
        from kapal.kube.storage.memory import MemoryBackend

        return MemoryBackend()
    if dsn.startswith("sqlite://"):
        from kapal.kube.storage.sqlite import SQLiteBackend

        path = dsn[len("sqlite://"):]
        if not path or path == "/":
            raise Invalid(f"storage DSN {dsn!r} names no file; use sqlite:///path/to/state.db")
        return SQLiteBackend(Path(path))
    if dsn.startswith(("etcd://", "http://", "https://")):
        raise Unsupported(f"the etcd storage backend ({dsn}) is not implemented yet; use sqlite:///path or memory://")
    raise Invalid(f"unknown storage DSN {dsn!r}; use sqlite:///path/to/state.db or memory://")
