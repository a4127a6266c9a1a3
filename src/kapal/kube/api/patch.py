"""The three PATCH bodies the API accepts besides apply: JSON patch, JSON merge patch, strategic merge patch.

Strategic merge follows upstream's apimachinery semantics, with the field metadata read from the schemas:
`x-kubernetes-patch-strategy` (merge, replace, retainKeys, or a comma list) and `x-kubernetes-patch-merge-key`.
Lists without a merge strategy are replaced; maps are merged unless their strategy is `replace`. Directives:

- `$patch: replace|delete` in a map (replace it / drop it), or as a list element (`replace` the whole list,
  `delete` the element with that merge key);
- `$retainKeys: [...]` clears keys of the live map that are not listed;
- `$deleteFromPrimitiveList/<field>: [...]` removes values from a primitive merge list (finalizers);
- `$setElementOrder/<field>: [...]` orders the merged list as the client's manifest does.

Failures raise errors.Invalid (bad patch format, 400) or UnprocessablePatch (a JSON patch that does not apply,
422), with upstream's wording where a client might look at it.
"""

from __future__ import annotations

import copy
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api import schemas
from kapal.kube.meta.resources import ResourceType

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"
MAX_JSON_PATCH_OPERATIONS = 10000


class UnprocessablePatch(Invalid):
    """422: a well-formed patch that cannot be applied to this object (a failed `test`, a missing path)."""

    http_status = 422
    reason = "Invalid"


# --- RFC 7386 JSON merge patch ------------------------------------------------------------------------------


def merge_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """`application/merge-patch+json`: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        raise Invalid("a merge patch must be a JSON object")
    return _merge(obj, patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


# --- RFC 6902 JSON patch ------------------------------------------------------------------------------------


def json_patch(obj: dict[str, Any], ops: Any) -> dict[str, Any]:
    """`application/json-patch+json`: a list of add/remove/replace/move/copy/test operations."""
    if not isinstance(ops, list):
        raise Invalid("a JSON patch must be a JSON array of operations")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise Invalid(f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                      f"got {len(ops)}")
    doc: Any = copy.deepcopy(obj)
    for op in ops:
        if not isinstance(op, dict):
            raise Invalid("each JSON patch operation must be a JSON object")
        kind = op.get("op")
        path = _op_path(op, "path")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(_op_value(op)), "add")
        elif kind == "remove":
            doc, _ = _remove(doc, path, "remove")
        elif kind == "replace":
            doc = _replace(doc, path, copy.deepcopy(_op_value(op)))
        elif kind == "move":
            source = _op_path(op, "from")
            if path[:len(source)] == source and len(path) > len(source):
                raise UnprocessablePatch(f"move operation does not apply: cannot move {_pointer(source)} into "
                                         f"its own child {_pointer(path)}")
            doc, value = _remove(doc, source, "move")
            doc = _add(doc, path, value, "move")
        elif kind == "copy":
            value = _get(doc, _op_path(op, "from"), "copy")
            doc = _add(doc, path, copy.deepcopy(value), "copy")
        elif kind == "test":
            value = _get(doc, path, "test", missing_ok=True)
            if not _json_equal(value, _op_value(op)):
                raise UnprocessablePatch(f"testing value {_pointer(path)} failed: test failed")
        else:
            raise Invalid(f"Unexpected kind: {kind}")
    if not isinstance(doc, dict):
        raise UnprocessablePatch("the JSON patch must leave a JSON object")
    return doc


_MISSING = object()


def _op_value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise Invalid(f"{op.get('op')} operation has no value")
    return op["value"]


def _op_path(op: dict[str, Any], key: str) -> list[str]:
    pointer = op.get(key)
    if not isinstance(pointer, str):
        raise Invalid(f"{op.get('op')} operation is missing {key!r}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise Invalid(f"JSON pointer {pointer!r} must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _missing(op: str, tokens: list[str]) -> UnprocessablePatch:
    return UnprocessablePatch(f'{op} operation does not apply: doc is missing path: "{_pointer(tokens)}": '
                              "missing value")


def _index(container: list[Any], token: str, op: str, tokens: list[str], allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise _missing(op, tokens)
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise UnprocessablePatch(f"{op} operation does not apply: index {i} out of bounds at {_pointer(tokens)}")
    return i


def _parent(doc: Any, tokens: list[str], op: str) -> Any:
    node = doc
    for depth, token in enumerate(tokens[:-1]):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, op, tokens[:depth + 1], allow_end=False)]
        else:
            raise _missing(op, tokens)
    return node


def _get(doc: Any, tokens: list[str], op: str, missing_ok: bool = False) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    if missing_ok:
        return _MISSING
    raise _missing(op, tokens)


def _add(doc: Any, tokens: list[str], value: Any, op: str) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, op)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], op, tokens, allow_end=True), value)
    else:
        raise _missing(op, tokens)
    return doc


def _remove(doc: Any, tokens: list[str], op: str) -> tuple[Any, Any]:
    if not tokens:
        raise UnprocessablePatch(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, tokens, op)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, op, tokens, allow_end=False))
    raise _missing(op, tokens)


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, "replace")
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(parent, last, "replace", tokens, allow_end=False)] = value
    else:
        raise UnprocessablePatch(f'replace operation does not apply: doc is missing key: {_pointer(tokens)}: '
                                 "missing value")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    if a is _MISSING:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (isinstance(a, int | float) and isinstance(b, int | float) and a == b)


# --- strategic merge patch ------------------------------------------------------------------------------------


def strategic_merge_patch(obj: dict[str, Any], patch: Any, r: ResourceType) -> dict[str, Any]:
    """`application/strategic-merge-patch+json` against a built-in kind (custom resources get 415 upstream)."""
    return strategic_merge_patch_with_schema(obj, patch, schemas.for_resource(r))


def strategic_merge_patch_with_schema(obj: dict[str, Any], patch: Any,
                                      schema: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise Invalid("a strategic merge patch must be a JSON object")
    return _merge_map(copy.deepcopy(obj), copy.deepcopy(patch), schema)


def _field_meta(schema: dict[str, Any] | None, key: str) -> tuple[dict[str, Any] | None, tuple[str, ...], str]:
    """(schema of the field's value, patch strategies, merge key) for field `key` of an object node."""
    if schema is None:
        return None, (), ""
    node = schemas.resolve(schema)
    prop = (node.get("properties") or {}).get(key)
    if prop is not None:
        strategy = prop.get("x-kubernetes-patch-strategy", "")
        return prop, tuple(s for s in strategy.split(",") if s), prop.get("x-kubernetes-patch-merge-key", "")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra, (), ""
    return None, (), ""


def _strategy(strategies: tuple[str, ...]) -> str:
    """The non-retainKeys strategy of a field ("" when none)."""
    others = [s for s in strategies if s != "retainKeys"]
    if len(others) > 1 or len(strategies) > 2:
        raise Invalid(f"unexpected patch strategy: {list(strategies)}")
    return others[0] if others else ""


def _items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    item = schemas.resolve(schema).get("items")
    return item if isinstance(item, dict) else None


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any],
               schema: dict[str, Any] | None) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _strip_directives(patch)
        if directive == "delete":
            return {}
        raise Invalid(f"unknown patch type: {directive} in map: {_go_map(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, schema)
    for key, patch_value in list(patch.items()):
        delete_list = False
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            key = _directive_key(key, DELETE_FROM_PRIMITIVE_LIST, "invalid patch format of primitive list")
            delete_list = True
        if patch_value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not delete_list:
                original[key] = _strip_directives(patch_value)
                if original[key] is _DROP:
                    del original[key]
            continue
        current = original[key]
        if not _same_json_type(current, patch_value):
            if not delete_list:
                stripped = _strip_directives(patch_value)
                if stripped is _DROP:
                    del original[key]
                else:
                    original[key] = stripped
            continue
        sub, strategies, merge_key = _field_meta(schema, key)
        strategy = _strategy(strategies)
        if isinstance(current, dict):
            if strategy == "replace":
                original[key] = _strip_directives(patch_value)
            else:
                original[key] = _merge_map(current, patch_value, sub)
        elif isinstance(current, list):
            if strategy == "merge" or delete_list:
                original[key] = _merge_list(current, patch_value, _items(sub), merge_key, delete_list)
            else:
                original[key] = _strip_directives(patch_value)
        else:
            stripped = _strip_directives(patch_value)
            if stripped is _DROP:
                del original[key]
            else:
                original[key] = stripped
    return original


def _same_json_type(a: Any, b: Any) -> bool:
    """Go compares reflect types of decoded JSON: maps, slices, strings, bools and float64 numbers."""
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int | float):
            return "number"
        return type(v).__name__
    return kind(a) == kind(b)


def _directive_key(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise Invalid(error)
    return rest


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise Invalid("invalid patch format of retainKeys")
    keep = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith(DELETE_FROM_PRIMITIVE_LIST) or key.startswith(SET_ELEMENT_ORDER):
            continue
        if key not in keep:
            raise Invalid("invalid patch format of retainKeys")
    for key in list(original):
        if key not in keep:
            del original[key]


def _apply_set_element_order(original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any] | None) -> None:
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise Invalid("invalid patch format of setElementOrder list")
        field = _directive_key(key, SET_ELEMENT_ORDER, "invalid patch format of setElementOrder list")
        in_original, in_patch = field in original, field in patch
        original_list = original.get(field) if in_original else None
        patch_list = patch.get(field) if in_patch else None
        if in_original and not isinstance(original_list, list):
            raise Invalid(f"expected a []interface {{}}, but received a {_go_type_name(original_list)}")
        if in_patch and not isinstance(patch_list, list):
            raise Invalid(f"expected a []interface {{}}, but received a {_go_type_name(patch_list)}")
        sub, strategies, merge_key = _field_meta(schema, field)
        strategy = _strategy(strategies)
        _validate_set_order(patch_list or [], order, merge_key)
        if in_original and not in_patch:
            merged = original_list
        elif in_patch and not in_original:
            merged = _strip_directives(patch_list)
        elif in_original and in_patch:
            if strategy == "merge":
                merged = _merge_list(original_list, patch_list, _items(sub), merge_key, False)
            else:
                merged = _strip_directives(patch_list)
        else:
            continue
        items_in_patch, server_only = _partition(merged, order, merge_key)
        if not (original_list or patch_list):
            original[field] = merged
        else:
            original[field] = _normalize_order(items_in_patch, server_only, order, original_list or [], merge_key)
        patch.pop(field, None)


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    items = [p for p in patch_list if not (isinstance(p, dict) and p.get(DIRECTIVE) == "delete")] \
        if merge_key else patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _key_equal(items[pi], order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise Invalid(f"The order in patch list:\n{items}\n doesn't match {SET_ELEMENT_ORDER} list:\n{order}\n")


def _key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return left == right
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise Invalid(f"expected a map[string]interface {{}}, but received a {_go_type_name(left)}")
    for m in (left, right):
        if merge_key not in m:
            raise Invalid(f"map: {_go_map(m)} does not contain declared merge key: {merge_key}")
    return left[merge_key] == right[merge_key]


def _merge_list(original: list[Any], patch: list[Any], item_schema: dict[str, Any] | None, merge_key: str,
                delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    element = _element_kind(original, patch)
    if element != "dict":
        if delete_list:
            drop = list(patch)
            return [v for v in original if v not in drop]
        merged: list[Any] = []
        for v in original + patch:
            if v not in merged:
                merged.append(v)
    else:
        if not merge_key:
            raise Invalid("cannot merge lists without merge key")
        original, patch = _special_elements(original, patch, merge_key)
        merged = list(original)
        for item in patch:
            if merge_key not in item:
                raise Invalid(f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
            index = _find(merged, merge_key, item[merge_key])
            if index is None:
                merged.append(_strip_directives(item))
            else:
                merged[index] = _merge_map(merged[index], item, item_schema)
    items_in_patch, server_only = _partition(merged, patch, merge_key if element == "dict" else "")
    return _normalize_order(items_in_patch, server_only, patch, original, merge_key if element == "dict" else "")


def _element_kind(*lists: list[Any]) -> str:
    kind = None
    for lst in lists:
        for v in lst:
            k = "dict" if isinstance(v, dict) else "list" if isinstance(v, list) else \
                "bool" if isinstance(v, bool) else "number" if isinstance(v, int | float) else type(v).__name__
            if k == "list":
                raise Invalid("lists of lists are not supported")
            if kind is None:
                kind = k
            elif kind != k:
                raise Invalid(f"list element types are not identical: {lists}")
    if kind is None:
        raise Invalid("no elements in any of the given slices")
    return kind


def _special_elements(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise Invalid(f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
            original = [o for o in original if not (isinstance(o, dict) and o.get(merge_key) == item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise Invalid("merging lists cannot yet be specified in the patch")
        else:
            raise Invalid(f"unknown patch type: {directive} in map: {_go_map(item)}")
    if replace:
        return [_strip_directives(p) for p in plain], []
    return original, plain


def _find(items: list[Any], merge_key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"value for key {i} is not a map")
        if item.get(merge_key, _MISSING) == value:
            return i
    return None


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for v in merged:
        if merge_key:
            if not isinstance(v, dict) or merge_key not in v:
                raise Invalid(f"map: {_go_map(v)} does not contain declared merge key: {merge_key}")
            found = _find(by, merge_key, v[merge_key]) is not None
        else:
            found = v in by
        (in_patch if found else server_only).append(v)
    return in_patch, server_only


def _position(order: list[Any], item: Any, merge_key: str) -> int:
    value = item.get(merge_key) if merge_key and isinstance(item, dict) else item
    for i, o in enumerate(order):
        other = o.get(merge_key) if merge_key and isinstance(o, dict) else o
        if value == other:
            return i
    return -1


def _sort_by(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    """Stable sort by position in `order`; items missing from it keep their place relative to the rest."""
    deletes = [i for i in items if merge_key and isinstance(i, dict) and i.get(DIRECTIVE) == "delete"]
    rest = [i for i in items if not (merge_key and isinstance(i, dict) and i.get(DIRECTIVE) == "delete")]
    known = [i for i in rest if _position(order, i, merge_key) >= 0]
    known.sort(key=lambda i: _position(order, i, merge_key))
    out: list[Any] = []
    it = iter(known)
    for i in rest:
        out.append(next(it) if _position(order, i, merge_key) >= 0 else i)
    return out + deletes


def _normalize_order(in_patch: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any],
                     merge_key: str) -> list[Any]:
    """Patch items in the patch's order, server-only items in the live order, interleaved by the live order."""
    right = _sort_by(in_patch, patch_order, merge_key)
    left = _sort_by(server_only, server_order, merge_key)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = _position(server_order, left[i], merge_key), _position(server_order, right[j], merge_key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


_DROP = object()


def _strip_directives(value: Any) -> Any:
    """A patch value as plain data: maps carrying `$patch` vanish, other directive keys are removed."""
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return _DROP
        out = {}
        for k, v in value.items():
            if k == RETAIN_KEYS or k.startswith(SET_ELEMENT_ORDER) or k.startswith(DELETE_FROM_PRIMITIVE_LIST):
                continue
            if v is None:
                continue
            stripped = _strip_directives(v)
            if stripped is not _DROP:
                out[k] = stripped
        return out
    if isinstance(value, list):
        return [s for s in (_strip_directives(v) for v in value) if s is not _DROP]
    return value


def _go_type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "<nil>"


def _go_map(value: Any) -> str:
    """Go's %v of a decoded JSON map, as upstream's error messages print it."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_map(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_map(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
