"""The informer's local cache: objects by key, plus secondary indexes (client-go's thread-safe store + Indexer).

Keys are "namespace/name" (or "name" for cluster-scoped objects). The objects handed out are the cache's own:
callers must treat them as read-only and deep-copy (`copy_object`) before changing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)


def copy_object(obj: Obj) -> Obj:
    """A deep copy safe to modify (JSON round trip: faster than copy.deepcopy for plain JSON data)."""
    return json.loads(json.dumps(obj))


def namespace_index(obj: Obj) -> Iterable[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return (ns,) if ns else ()


def controller_uid_index(obj: Obj) -> Iterable[str]:
    """The UID of the object's managing controller (the ownerReference with controller: true)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return (ref["uid"],)
    return ()


CONTROLLER_INDEX = "controller-uid"
ORPHAN_INDEX = "orphans"


def orphan_namespace_index(obj: Obj) -> Iterable[str]:
    """The namespace of an object no controller owns (adoption candidates)."""
    meta = obj.get("metadata") or {}
    if any(ref.get("controller") for ref in meta.get("ownerReferences") or ()):
        return ()
    ns = meta.get("namespace")
    return (ns,) if ns else ()


class Indexer:
    def __init__(self) -> None:
        self.items: dict[str, Obj] = {}
        self._funcs: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index}
        self._indexes: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}

    def add_index(self, name: str, func: IndexFunc) -> None:
        if name in self._funcs:
            return
        self._funcs[name] = func
        index: dict[str, set[str]] = {}
        for key, obj in self.items.items():
            for value in func(obj):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def has_index(self, name: str) -> bool:
        return name in self._funcs

    # --- writes (the reflector's) ---------------------------------------------------------------------------------

    def put(self, key: str, obj: Obj) -> Obj | None:
        old = self.items.get(key)
        self.items[key] = obj
        for name, func in self._funcs.items():
            index = self._indexes[name]
            old_values = tuple(func(old)) if old is not None else ()
            new_values = tuple(func(obj))
            if old_values == new_values:
                continue
            for v in old_values:
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]
            for v in new_values:
                index.setdefault(v, set()).add(key)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self.items.pop(key, None)
        if old is None:
            return None
        for name, func in self._funcs.items():
            index = self._indexes[name]
            for v in func(old):
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]
        return old

    # --- reads ----------------------------------------------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self.items.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> Obj | None:
        return self.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self.items.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def keys(self) -> list[str]:
        return list(self.items)

    def by_index(self, name: str, value: str) -> list[Obj]:
        keys = self._indexes[name].get(value)
        if not keys:
            return []
        items = self.items
        return [items[k] for k in keys]

    def index_keys(self, name: str, value: str) -> list[str]:
        return list(self._indexes[name].get(value) or ())

    def index_values(self, name: str) -> list[str]:
        return list(self._indexes[name])

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key: str) -> bool:
        return key in self.items
