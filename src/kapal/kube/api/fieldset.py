"""Sets of field paths over typed objects, as server-side apply and managedFields see them.

A *path* is a tuple of elements spelled as in FieldsV1: `f:<field or map key>`, `k:<json of the list-map keys>`,
`v:<json of a set value>`. A *set* is a Python set of paths; a path in the set is a *member* (the manager owns
that field itself; for list items and maps FieldsV1 writes it as `".": {}`).

The type of each node comes from the schemas: objects with properties are structs, `additionalProperties`
are maps (both granular unless `x-kubernetes-map-type: atomic`), arrays follow `x-kubernetes-list-type`
(map with `x-kubernetes-list-map-keys`, set, or atomic, the default), everything else is a leaf.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from kapal.kube.api import schemas

Path = tuple[str, ...]
FieldSet = set[Path]
Schema = dict[str, Any] | None

STRUCT, MAP, LIST_MAP, LIST_SET, LEAF = "struct", "map", "list-map", "list-set", "leaf"


class _Null:
    """A field that is present but null (Go writes nil slices and maps without omitempty that way)."""

    def __repr__(self) -> str:
        return "NULL"


NULL = _Null()
# List-map keys that upstream fills from the schema default when an item omits them.
_KEY_DEFAULTS = {"protocol": "TCP"}


def kind(schema: Schema) -> str:
    if schema is None:
        return LEAF
    node = schemas.resolve(schema)
    if node.get("x-kubernetes-map-type") == "atomic" or schema.get("x-kubernetes-map-type") == "atomic":
        return LEAF
    if node.get("properties"):
        return STRUCT
    if isinstance(node.get("additionalProperties"), dict):
        return MAP
    if isinstance(node.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type") or node.get("x-kubernetes-list-type")
        if list_type == "map" and (schema.get("x-kubernetes-list-map-keys") or node.get("x-kubernetes-list-map-keys")):
            return LIST_MAP
        if list_type == "set":
            return LIST_SET
    return LEAF


def child_schema(schema: Schema, element: str) -> Schema:
    """The schema below one path element."""
    if schema is None:
        return None
    node = schemas.resolve(schema)
    if element.startswith("f:"):
        props = node.get("properties") or {}
        if props:
            return props.get(element[2:])
        extra = node.get("additionalProperties")
        return extra if isinstance(extra, dict) else None
    item = node.get("items")
    return item if isinstance(item, dict) else None


def _map_keys(schema: Schema) -> list[str]:
    if schema is None:
        return []
    return list(schema.get("x-kubernetes-list-map-keys") or schemas.resolve(schema).get("x-kubernetes-list-map-keys")
                or [])


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def item_element(schema: Schema, item: Any) -> str:
    """The path element naming one item of an associative list."""
    if kind(schema) == LIST_SET:
        return "v:" + _json(item)
    keys = {}
    if isinstance(item, dict):
        for key in sorted(_map_keys(schema)):
            if item.get(key) is not None:
                keys[key] = item[key]
            elif key in _KEY_DEFAULTS:
                keys[key] = _KEY_DEFAULTS[key]
    return "k:" + _json(keys)


def _items(schema: Schema, value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, list):
        return []
    return [(item_element(schema, item), item) for item in value]


# --- sets from values -----------------------------------------------------------------------------------------


def field_set(value: Any, schema: Schema, prefix: Path = ()) -> FieldSet:
    """The fields an applied configuration sets (upstream's ToFieldSet)."""
    out: FieldSet = set()
    _to_set(value, schema, prefix, out)
    return out


def _to_set(value: Any, schema: Schema, path: Path, out: FieldSet) -> None:
    k = kind(schema)
    if k in (STRUCT, MAP):
        if not isinstance(value, dict):
            out.add(path)
            return
        is_struct = k == STRUCT
        for key, sub in value.items():
            p = (*path, "f:" + key)
            sub_schema = child_schema(schema, "f:" + key)
            _to_set(sub, sub_schema, p, out)
            if sub is None or (isinstance(sub, dict) and not sub) or not is_struct:
                out.add(p)
    elif k in (LIST_MAP, LIST_SET):
        item_schema = child_schema(schema, "k:")
        for element, item in _items(schema, value):
            p = (*path, element)
            if k == LIST_MAP:
                _to_set(item, item_schema, p, out)
            out.add(p)
    elif path:
        out.add(path)


def compare(old: Any, new: Any, schema: Schema) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, modified, removed) paths between two objects of one type (upstream's Compare)."""
    added: FieldSet = set()
    modified: FieldSet = set()
    removed: FieldSet = set()
    _compare(old, new, schema, (), added, modified, removed)
    return added, modified, removed


def _compare(lhs: Any, rhs: Any, schema: Schema, path: Path, added: FieldSet, modified: FieldSet,
             removed: FieldSet) -> None:
    if lhs is None and rhs is None:
        return
    k = kind(schema)
    shape = {STRUCT: dict, MAP: dict, LIST_MAP: list, LIST_SET: list}.get(k)
    present_null = lhs is NULL
    if present_null:
        lhs = shape() if shape else None
    if shape and (lhs is None or isinstance(lhs, shape)) and (rhs is None or isinstance(rhs, shape)):
        if k in (STRUCT, MAP):
            left, right = lhs or {}, rhs or {}
            for key in dict.fromkeys([*left, *right]):
                element = "f:" + key
                _compare(left.get(key), right.get(key), child_schema(schema, element), (*path, element), added,
                         modified, removed)
        else:
            item_schema = child_schema(schema, "k:")
            left = dict(_items(schema, lhs))
            right = dict(_items(schema, rhs))
            for element in dict.fromkeys([*left, *right]):
                p = (*path, element)
                if k == LIST_SET:
                    if element not in left:
                        added.add(p)
                    elif element not in right:
                        removed.add(p)
                else:
                    _compare(left.get(element), right.get(element), item_schema, p, added, modified, removed)
        if path:
            if lhs is None:
                added.add(path)
            elif rhs is None and not present_null:
                removed.add(path)
        return
    if not path or (present_null and rhs is None):
        return
    if lhs is None:
        added.add(path)
    elif rhs is None:
        removed.add(path)
    elif not _equal(lhs, rhs):
        modified.add(path)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


# --- merging and removing ------------------------------------------------------------------------------------


def merge(live: Any, config: Any, schema: Schema) -> Any:
    """Apply's merge: config wins for leaves, structs and maps merge, associative lists merge by key."""
    if config is None:
        return copy.deepcopy(live)
    if live is None:
        return copy.deepcopy(config)
    k = kind(schema)
    if k in (STRUCT, MAP) and isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for key, value in config.items():
            out[key] = merge(live.get(key), value, child_schema(schema, "f:" + key))
        return out
    if k in (LIST_MAP, LIST_SET) and isinstance(live, list) and isinstance(config, list):
        return _merge_list(live, config, schema, k)
    return copy.deepcopy(config)


def _merge_list(live: list[Any], config: list[Any], schema: Schema, k: str) -> list[Any]:
    """Items of both in config's order; live-only items keep their place between them (upstream's order)."""
    item_schema = child_schema(schema, "k:")
    lhs, rhs = _items(schema, live), _items(schema, config)
    left = dict(lhs)
    right = dict(rhs)
    shared = [e for e, _ in rhs if e in left]
    next_shared = shared.pop(0) if shared else None
    merged: set[str] = set()
    out: list[Any] = []

    def take(element: str, lchild: Any, rchild: Any) -> None:
        out.append(merge(lchild, rchild, item_schema) if k == LIST_MAP else copy.deepcopy(
            rchild if rchild is not None else lchild))

    li = ri = 0
    while li < len(lhs) or ri < len(rhs):
        if li < len(lhs) and ri < len(rhs):
            element = lhs[li][0]
            if element == rhs[ri][0]:
                merged.add(element)
                take(element, left.get(element), right.get(element))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if element in right and next_shared is not None and next_shared != element:
                li += 1
                continue
        if li < len(lhs):
            element = lhs[li][0]
            if element not in right:
                take(element, lhs[li][1], None)
                li += 1
                continue
            if element in merged:
                li += 1
                continue
        if ri < len(rhs):
            element = rhs[ri][0]
            merged.add(element)
            take(element, left.get(element), right.get(element))
            ri += 1
            if next_shared is not None and next_shared == element:
                next_shared = shared.pop(0) if shared else None
    return out


def remove(value: Any, paths: FieldSet, schema: Schema) -> Any:
    """`value` without the members of `paths` (a member field or item goes with all it holds)."""
    if not paths or value is None:
        return value
    k = kind(schema)
    if k in (STRUCT, MAP) and isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            element = "f:" + key
            if (element,) in paths:
                continue
            below = {p[1:] for p in paths if p[0] == element and len(p) > 1}
            out[key] = remove(sub, below, child_schema(schema, element)) if below else sub
        return out
    if k in (LIST_MAP, LIST_SET) and isinstance(value, list):
        item_schema = child_schema(schema, "k:")
        out_list = []
        for element, item in _items(schema, value):
            if (element,) in paths:
                continue
            below = {p[1:] for p in paths if p[0] == element and len(p) > 1}
            out_list.append(remove(item, below, item_schema) if below else item)
        return out_list
    return value


def ensure_named_fields(paths: Iterable[Path], schema: Schema) -> FieldSet:
    """`paths` plus every struct field that holds one of them (upstream's EnsureNamedFieldsAreMembers)."""
    out: FieldSet = set(paths)
    for path in list(out):
        node = schema
        for i, element in enumerate(path[:-1]):
            if element.startswith("f:") and kind(node) == STRUCT:
                out.add(path[:i + 1])
            node = child_schema(node, element)
    return out


def has_prefix(paths: FieldSet, prefix: Path) -> bool:
    n = len(prefix)
    return any(p[:n] == prefix for p in paths)


def without_prefix(paths: FieldSet, prefix: Path) -> FieldSet:
    n = len(prefix)
    return {p for p in paths if p[:n] != prefix}


def only_prefix(paths: FieldSet, prefix: Path) -> FieldSet:
    n = len(prefix)
    return {p for p in paths if p[:n] == prefix}


# --- FieldsV1 -------------------------------------------------------------------------------------------------

_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def to_fields_v1(paths: FieldSet) -> dict[str, Any]:
    """The FieldsV1 trie: `{}` for a member leaf, `".": {}` beside children for a member with children."""
    root: dict[str, Any] = {}
    members: dict[Path, bool] = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        members[path] = True

    def emit(node: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and members.get(path):
            out["."] = {}
        for element in sorted(node, key=lambda e: (_ORDER.get(e[:1], 9), e)):
            out[element] = emit(node[element], (*path, element))
        return out

    return emit(root, ())


def from_fields_v1(fields: Any) -> FieldSet:
    out: FieldSet = set()

    def walk(node: Any, path: Path) -> None:
        if not isinstance(node, dict):
            return
        if not node and path:
            out.add(path)
        for key, sub in node.items():
            if key == ".":
                if path:
                    out.add(path)
            else:
                walk(sub, (*path, key))

    walk(fields, ())
    return out


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflicts: `.spec.containers[name="nginx"].image`."""
    out = []
    for element in path:
        head, body = element[:2], element[2:]
        if head == "f:":
            out.append("." + body)
        elif head == "k:":
            keys = json.loads(body)
            out.append("[" + ",".join(f"{k}={_json(v)}" for k, v in keys.items()) + "]")
        elif head == "v:":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)
