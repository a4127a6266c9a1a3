"""Server-side apply and managedFields, following upstream's field manager.

- `apply(live, applied, r, manager, force)`: merges the applied configuration into the live object by the
  schema's list/map semantics, records what the manager applied (operation Apply), prunes fields it applied
  last time and no longer applies (unless someone else owns them), and refuses to change fields other
  managers own (409 with FieldManagerConflict causes) unless `force`.
- For manager `kubectl` (what `kubectl apply --server-side` sends), conflicts on fields the client-side apply
  annotation vouches for are no conflicts, and that annotation is kept in step, as upstream does when users
  move from client-side to server-side apply.
- `track_update(old, new, r, manager, operation, subresource)`: records ordinary create/update/patch
  (operation Update): the updater takes the fields it added or changed, other managers lose them and lose
  what was removed.

Entries are kept in `metadata.managedFields` (FieldsV1), sorted as upstream sorts them (Apply first, then by
time). Fields the API server owns (name, uid, resourceVersion, ...) are never tracked; `status` is tracked
only through the status subresource for kinds that have one.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from kapal.errors import Conflict, Invalid
from kapal.kube.api import fieldset, schemas
from kapal.kube.api.fieldset import FieldSet, Path
from kapal.kube.meta.resources import ResourceType

Obj = dict[str, Any]
BEFORE_FIRST_APPLY = "before-first-apply"
KUBECTL = "kubectl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_SERVER_METADATA = ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                    "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds")
_STRIPPED: frozenset[Path] = frozenset(
    [("f:apiVersion",), ("f:kind",), ("f:metadata",)] + [("f:metadata", "f:" + k) for k in _SERVER_METADATA])
_STATUS: Path = ("f:status",)


class ApplyConflict(Conflict):
    """409: the apply would change fields other managers own. `causes` lists them as upstream does."""

    def __init__(self, message: str, causes: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.causes = causes


@dataclass
class Manager:
    manager: str
    operation: str
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Upstream's identifier: appliers are one manager across versions, updaters one per version."""
        ident: dict[str, Any] = {"manager": self.manager, "operation": self.operation}
        if self.operation != "Apply":
            ident["apiVersion"] = self.api_version
        if self.subresource:
            ident["subresource"] = self.subresource
        return json.dumps(ident, sort_keys=True)

    def printable(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def entry(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = fieldset.to_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decode_managers(entries: Any) -> dict[str, Manager]:
    out: dict[str, Manager] = {}
    if not isinstance(entries, list):
        return out
    for e in entries:
        if not isinstance(e, dict) or not e.get("manager") and e.get("manager") != "":
            continue
        m = Manager(str(e.get("manager", "")), str(e.get("operation", "Update")), str(e.get("apiVersion", "")),
                    fieldset.from_fields_v1(e.get("fieldsV1") or {}), e.get("time"), str(e.get("subresource") or ""))
        out[m.identity] = m
    return out


def encode_managers(managers: dict[str, Manager]) -> list[Obj]:
    ordered = sorted(managers.values(), key=lambda m: (m.operation, m.time or "", m.manager, m.api_version,
                                                       m.subresource))
    return [m.entry() for m in ordered if m.fields]


@functools.cache
def _zero_json(definition: str) -> str:
    """Go's zero value of a type as JSON: value structs present and empty, nil lists and maps written as null."""
    from kapal.kube.api.protobuf import always_written_fields, value_fields

    out: Obj = {}
    props = schemas.properties(schemas.definition(definition))
    for name in sorted(always_written_fields(definition)):
        prop = props.get(name)
        if prop is not None and fieldset.kind(prop) in (fieldset.MAP, fieldset.LIST_MAP, fieldset.LIST_SET) \
                or prop is not None and "array" in schemas.types(prop):
            out[name] = None
    for name in sorted(value_fields(definition)):
        prop = props.get(name)
        child = schemas.ref_name(prop) if prop else None
        if child and schemas.properties(schemas.definition(child)):
            out[name] = json.loads(_zero_json(child))
    return json.dumps(out)


def empty_object(r: ResourceType) -> Obj:
    """The zero object of a kind without its null fields (what apply merges into when nothing is live)."""
    return _without_nulls(json.loads(_zero_json(r.schema_name)))


def zero_object(r: ResourceType) -> Obj:
    """The zero object of a kind as upstream's field manager compares against on create (nulls as NULL)."""
    return _nulls_marked(json.loads(_zero_json(r.schema_name)))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _nulls_marked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: fieldset.NULL if v is None else _nulls_marked(v) for k, v in value.items()}
    return value


def _tracked(paths: FieldSet, r: ResourceType, subresource: str) -> FieldSet:
    """The paths a manager may own for this request (server-owned metadata and reset fields removed)."""
    out = {p for p in paths if p not in _STRIPPED}
    if "status" in r.subresources:
        if subresource == "status":
            out = fieldset.only_prefix(out, _STATUS)
        elif subresource == "":
            out = fieldset.without_prefix(out, _STATUS)
    return out


# --- apply ----------------------------------------------------------------------------------------------------


def apply(live: Obj | None, applied: Obj, r: ResourceType, manager: str, force: bool = False,
          subresource: str = "", now: str | None = None) -> Obj:
    """The object after `manager` applies `applied` (an `application/apply-patch+yaml` body, decoded)."""
    if not isinstance(applied, dict):
        raise Invalid("an apply patch must be a YAML or JSON object")
    if not manager:
        raise Invalid("fieldManager is required for apply requests")
    _check_type(applied, r)
    unknown = schemas.unknown_fields(applied, r)
    wrong_type = schemas.type_error(applied, r)
    if unknown or wrong_type:
        meta = applied.get("metadata") if isinstance(applied.get("metadata"), dict) else {}
        ident = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x)
        gvk = f"{r.api_version}, Kind={r.kind}"
        detail = schemas.field_not_declared_message(unknown) if unknown else wrong_type
        raise Invalid(f"failed to create typed patch object ({ident}; {gvk}): {detail}")
    schema = schemas.for_resource(r)
    config = copy.deepcopy(applied)
    if "status" in r.subresources and subresource == "":
        config.pop("status", None)
    live_obj = copy.deepcopy(live) if live is not None else empty_object(r)
    managers = decode_managers((live_obj.get("metadata") or {}).get("managedFields"))
    if live is not None and not managers:
        managers = _before_first_apply(live_obj, r, schema)
    _strip_managed_fields(live_obj)

    me = Manager(manager, "Apply", r.api_version, set(), now or _now(), subresource)
    previous = managers.get(me.identity)
    me.fields = _tracked(fieldset.field_set(config, schema), r, subresource)
    managers[me.identity] = me
    merged = fieldset.merge(live_obj, _without_server_metadata(config), schema)

    if previous is not None and previous.fields:
        owned: FieldSet = set()
        for m in managers.values():
            owned |= m.fields
        gone = fieldset.ensure_named_fields(previous.fields, schema) - fieldset.ensure_named_fields(owned, schema)
        merged = fieldset.remove(merged, gone, schema)

    baseline = zero_object(r) if live is None else live_obj
    added, modified, removed = fieldset.compare(baseline, merged, schema)
    changed = _tracked(added | modified, r, subresource)
    conflicts: list[tuple[Manager, Path]] = []
    for ident, other in managers.items():
        if ident == me.identity:
            continue
        for path in sorted(other.fields & changed):
            conflicts.append((other, path))
    if conflicts and not force and manager == KUBECTL and live is not None:
        allowed = _last_applied_fields(live_obj, live, r, schema)
        conflicts = [(m, p) for m, p in conflicts if p not in allowed]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for ident, other in list(managers.items()):
        if ident == me.identity:
            continue
        other.fields -= changed
        other.fields -= removed
        if not other.fields:
            del managers[ident]
    _drop_nulls(merged)
    meta = merged.setdefault("metadata", {})
    if manager == KUBECTL and LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"][LAST_APPLIED] = _last_applied_value(applied)
    meta["managedFields"] = encode_managers(managers)
    return merged


def _last_applied_fields(live_obj: Obj, live: Obj, r: ResourceType, schema: dict[str, Any]) -> FieldSet:
    """Fields kubectl's client-side apply annotation vouches for: moving them to server-side apply is no conflict.

    Only when the annotation still describes the live object (merging it changes nothing), as upstream checks.
    """
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return set()
    try:
        last = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(last, dict):
        return set()
    added, modified, _ = fieldset.compare(live_obj, fieldset.merge(live_obj, last, schema), schema)
    if added or modified:
        return set()
    return _tracked(fieldset.field_set(last, schema), r, "")


def _last_applied_value(applied: Obj) -> str:
    """The client-side apply annotation kubectl would write for this configuration (kept in sync for downgrades)."""
    config = copy.deepcopy(applied)
    annotations = (config.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
    return json.dumps(config, sort_keys=True, separators=(",", ":")) + "\n"


def _check_type(applied: Obj, r: ResourceType) -> None:
    api_version, kind = applied.get("apiVersion"), applied.get("kind")
    if not api_version or not kind:
        raise Invalid("apiVersion and kind must be set in an apply patch")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    if kind != r.kind or group != r.group:
        raise Invalid(f"the apply patch is a {kind} of {api_version}, but the request is for {r.kind} of "
                      f"{r.api_version}")


def _without_server_metadata(config: Obj) -> Obj:
    meta = config.get("metadata")
    if isinstance(meta, dict):
        config = dict(config)
        config["metadata"] = {k: v for k, v in meta.items()
                              if k not in _SERVER_METADATA or k in ("name", "namespace")}
    return config


def _strip_managed_fields(obj: Obj) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


def _before_first_apply(live: Obj, r: ResourceType, schema: dict[str, Any]) -> dict[str, Manager]:
    """Objects that never had managedFields: their current fields belong to `before-first-apply`."""
    added, modified, _ = fieldset.compare(empty_object(r), live, schema)
    fields = _tracked(added | modified, r, "")
    m = Manager(BEFORE_FIRST_APPLY, "Update", r.api_version, fields)
    return {m.identity: m} if fields else {}


def _conflict_error(conflicts: list[tuple[Manager, Path]]) -> ApplyConflict:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m.printable()}",
               "field": fieldset.path_string(p)} for m, p in conflicts]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.printable()}: {fieldset.path_string(p)}"
    else:
        by_manager: dict[str, list[str]] = {}
        printable: dict[str, str] = {}
        for m, p in conflicts:
            by_manager.setdefault(m.identity, []).append(fieldset.path_string(p))
            printable[m.identity] = m.printable()
        lines = []
        for ident in sorted(by_manager):
            lines.append(f"conflicts with {printable[ident]}:")
            lines += [f"- {p}" for p in by_manager[ident]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApplyConflict(message, causes)


def _drop_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for v in value.values():
            _drop_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _drop_nulls(v)


# --- ordinary writes ------------------------------------------------------------------------------------------


def track_update(old: Obj | None, new: Obj, r: ResourceType, manager: str, operation: str = "Update",
                 subresource: str = "", now: str | None = None) -> Obj:
    """`new` with managedFields that record `manager` writing it over `old` (None on create).

    managedFields sent by the client replace the stored ones (an empty list resets them); absent, the
    stored ones carry over.
    """
    schema = schemas.for_resource(r)
    out = copy.deepcopy(new)
    meta = out.setdefault("metadata", {})
    sent = meta.get("managedFields")
    if old is None:
        managers = decode_managers(sent) if sent else {}
    elif sent is None:
        managers = decode_managers((old.get("metadata") or {}).get("managedFields"))
    else:
        managers = decode_managers(sent)
    before = copy.deepcopy(old) if old is not None else zero_object(r)
    _strip_managed_fields(before)
    after = copy.deepcopy(out)
    _strip_managed_fields(after)
    added, modified, removed = fieldset.compare(before, after, schema)
    added, modified = _tracked(added, r, subresource), _tracked(modified, r, subresource)
    removed = _tracked(removed, r, subresource)
    me = Manager(manager or "unknown", operation, r.api_version, set(), now or _now(), subresource)
    for ident, other in list(managers.items()):
        if ident == me.identity:
            continue
        other.fields -= added | modified | removed
        if not other.fields:
            del managers[ident]
    mine = managers.get(me.identity)
    fields = (mine.fields - removed) if mine else set()
    me.fields = fields | added | modified
    managers[me.identity] = me
    if not me.fields:
        del managers[me.identity]
    meta["managedFields"] = encode_managers(managers)
    if not meta["managedFields"]:
        del meta["managedFields"]
    return out
