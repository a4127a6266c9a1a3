"""Objects in storage: keys, encoding, resourceVersion, and the upstream error for each storage failure.

Reads of single objects go to storage (always current); lists and watches
go to the watch cache. Values are stored without resourceVersion: it is the
storage revision, set on the way out.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from kapal import errors
from kapal.kube.api import status
from kapal.kube.api.cache import Entry, WatchCache, object_key
from kapal.kube.meta.resources import ResourceType
from kapal.kube.storage import Backend, KeyValue

MAX_UPDATE_RETRIES = 10


def encode(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata")
    if meta is not None and "resourceVersion" in meta:
        meta = dict(meta)
        meta.pop("resourceVersion", None)
        meta.pop("selfLink", None)
        obj = {**obj, "metadata": meta}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode(kv: KeyValue) -> dict[str, Any]:
    obj = json.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def resource_version(obj: dict[str, Any]) -> int:
    rv = (obj.get("metadata") or {}).get("resourceVersion") or ""
    if not rv:
        return 0
    try:
        value = int(rv)
    except ValueError:
        raise errors.Invalid(f'invalid resource version "{rv}": a resource version is a decimal integer') from None
    if value < 0:
        raise errors.Invalid(f'invalid resource version "{rv}"')
    return value


class ObjectStore:
    def __init__(self, backend: Backend, cache: WatchCache) -> None:
        self.backend = backend
        self.cache = cache

    @staticmethod
    def key(r: ResourceType, namespace: str | None, name: str) -> str:
        return object_key(r.storage_key, namespace if r.namespaced else None, name)

    async def get(self, r: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        kv = await self.backend.get(self.key(r, namespace, name))
        if kv is None:
            raise status.not_found(r, name)
        return decode(kv)

    async def find(self, r: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        kv = await self.backend.get(self.key(r, namespace, name))
        return decode(kv) if kv is not None else None

    def cached(self, r: ResourceType, namespace: str | None, name: str) -> Entry | None:
        return self.cache.get(r.storage_key, namespace if r.namespaced else None, name)

    async def create(self, r: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        try:
            kv = await self.backend.create(self.key(r, meta.get("namespace"), meta["name"]), encode(obj))
        except errors.AlreadyExists:
            raise status.already_exists(r, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def update(self, r: ResourceType, obj: dict[str, Any], expected: int) -> dict[str, Any]:
        meta = obj["metadata"]
        try:
            kv = await self.backend.update(self.key(r, meta.get("namespace"), meta["name"]), encode(obj), expected)
        except errors.Conflict:
            raise status.conflict(r, meta["name"], status.STALE, status.StaleRevision) from None
        except errors.NotFound:
            raise status.not_found(r, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def delete(self, r: ResourceType, namespace: str | None, name: str, expected: int = 0) -> dict[str, Any]:
        try:
            kv = await self.backend.delete(self.key(r, namespace, name), expected)
        except errors.Conflict:
            raise status.conflict(r, name, status.STALE, status.StaleRevision) from None
        except errors.NotFound:
            raise status.not_found(r, name) from None
        return decode(kv)

    async def guaranteed_update(self, r: ResourceType, namespace: str | None, name: str,
                                change: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Read, then `change` (which writes with the revision it read); retried when that write loses a race."""
        for _ in range(MAX_UPDATE_RETRIES):
            current = await self.get(r, namespace, name)
            try:
                return await change(current)
            except status.StaleRevision:
                continue
        raise status.conflict(r, name, "too many concurrent updates; try again")
