"""One generic REST machinery for every kind: get, list, create, update, patch, delete, deletecollection.

Driven by the resource registry; kind-specific behaviour lives in data
(objects.py), admission and the pure modules, never in a handler per kind.
Write path: decode → field validation → defaults → server-owned metadata →
admission → validation → managedFields → storage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kapal import errors
from kapal.kube.api import codec, objects, pure, status
from kapal.kube.api.authn import UserInfo
from kapal.kube.api.cache import Entry, Filter
from kapal.kube.api.context import ApiContext
from kapal.kube.api.requestinfo import RequestInfo
from kapal.kube.api.status import Cause
from kapal.kube.api.store import resource_version
from kapal.kube.meta.resources import COMPUTED_GROUPS, RESOURCES, REVIEW_KINDS, ResourceType
from kapal.kube.meta.selectors import parse_field_selector, parse_label_selector
from kapal.kube.storage import Compacted

log = logging.getLogger(__name__)

# Kinds whose PUT creates a missing object (upstream's AllowCreateOnUpdate).
CREATE_ON_UPDATE = frozenset({("", "endpoints"), ("", "events"), ("coordination.k8s.io", "leases"),
                              ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "clusterroles"),
                              ("rbac.authorization.k8s.io", "rolebindings"),
                              ("rbac.authorization.k8s.io", "clusterrolebindings"),
                              ("discovery.k8s.io", "endpointslices")})
# Kinds whose DELETE answers with the deleted object rather than a Status.
RETURNS_DELETED_OBJECT = frozenset({("", "pods"), ("", "services"), ("", "namespaces")})
VALIDATION_MODES = ("Ignore", "Warn", "Strict")
BODY_READ_TIMEOUT = 60.0


def storage_resource(r: ResourceType) -> ResourceType:
    """The registry row whose shape the stored objects have (HPA v2, core/v1 Event)."""
    group, plural = r.storage_key
    for cand in RESOURCES:
        if cand.group == group and cand.plural == plural and cand.storage_group is None:
            if group != "autoscaling" or cand.version == "v2":
                return cand
    return r


def json_response(code: int, body: bytes | dict[str, Any], warnings: list[str] | None = None,
                  yaml: bool = False) -> web.Response:
    if yaml and not isinstance(body, bytes):
        import yaml as _yaml

        resp = web.Response(body=_yaml.safe_dump(body, sort_keys=False).encode(), status=code,
                            content_type="application/yaml")
    else:
        resp = web.Response(body=body if isinstance(body, bytes) else codec.dumps(body), status=code,
                            content_type="application/json")
    for w in warnings or ():
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise errors.Invalid("continue key is not valid: the continue token is malformed") from None


class Rest:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    # --- request options --------------------------------------------------------------------------------------

    @staticmethod
    def dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.Invalid(f'Invalid dryRun value "{v}": valid values are "All"')
        return bool(values)

    @staticmethod
    def validation_mode(request: web.Request) -> str:
        mode = request.query.get("fieldValidation", "") or "Warn"
        if mode not in VALIDATION_MODES:
            raise errors.Invalid(f'fieldValidation "{mode}" is not valid: valid values are Ignore, Warn, Strict')
        return mode

    @staticmethod
    def field_manager(request: web.Request, required: bool = False) -> str:
        manager = request.query.get("fieldManager", "")
        if not manager:
            if required:
                raise errors.Invalid('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                     "is required for apply patch")
            ua = request.headers.get("User-Agent", "")
            manager = ua.split("/", 1)[0] if ua else "unknown"
        if len(manager) > 128:
            raise errors.Invalid(f'fieldManager: Too long: may not be longer than 128, got "{manager[:20]}..."')
        return manager

    async def read_body(self, request: web.Request) -> bytes:
        limit = self.ctx.config.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            raise status.RequestEntityTooLarge(f"Request entity too large: limit is {limit}")
        chunks, size = [], 0
        while True:
            try:
                chunk = await asyncio.wait_for(request.content.read(65536), BODY_READ_TIMEOUT)
            except TimeoutError:
                raise status.ServerTimeout("Timeout: request did not complete within the allowed duration: the "
                                           "client stopped sending its body") from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise status.RequestEntityTooLarge(f"Request entity too large: limit is {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_object(self, request: web.Request, r: ResourceType, mode: str, warnings: list[str],
                          *, check_kind: bool = True) -> dict[str, Any]:
        data = await self.read_body(request)
        if not data.strip():
            raise errors.Invalid("the request body is empty; send the object as JSON, YAML or protobuf")
        decoded = codec.decode_body(request.headers.get("Content-Type"), data)
        obj = codec.require_object(decoded.body)
        if check_kind:
            self.check_kind(r, obj)
        self.field_validation(r, obj, mode, decoded.duplicates, warnings)
        return obj

    @staticmethod
    def check_kind(r: ResourceType, obj: dict[str, Any]) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, (str, type(None))) or not isinstance(kind, (str, type(None))):
            raise errors.Invalid("apiVersion and kind must be strings")
        if kind and kind != r.kind:
            raise errors.Invalid(f'{kind} in version "{(api_version or r.api_version).split("/")[-1]}" cannot be '
                                 f"handled as a {r.kind}: the kind in the data ({kind}) does not match the expected "
                                 f"kind ({r.kind})")
        if api_version and api_version != r.api_version:
            raise errors.Invalid(f"the API version in the data ({api_version}) does not match the expected API "
                                 f"version ({r.api_version})")
        obj["apiVersion"], obj["kind"] = r.api_version, r.kind
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise errors.Invalid(f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: '
                                 "metadata must be an object")

    @staticmethod
    def field_validation(r: ResourceType, obj: dict[str, Any], mode: str, duplicates: list[str],
                         warnings: list[str]) -> None:
        unknown = pure.unknown_fields(obj, r)
        if mode == "Strict" and (unknown or duplicates):
            raise errors.Invalid(pure.strict_decoding_message(r, unknown, duplicates))
        if mode == "Warn":
            warnings.extend(pure.unknown_field_warnings(unknown))
            warnings.extend(f'duplicate field "{d.lstrip(".")}"' for d in duplicates)
        objects.prune(obj, unknown)
        problem = pure.type_error(obj, r)
        if problem:
            raise errors.Invalid(f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: {problem}')

    # --- responses ------------------------------------------------------------------------------------------------

    def render_object(self, request: web.Request, r: ResourceType, obj: dict[str, Any] | Entry, code: int = 200,
                      warnings: list[str] | None = None) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        entry = obj if isinstance(obj, Entry) else None
        data = entry.obj if entry is not None else obj
        srs = storage_resource(r)
        if srs is not r and data.get("apiVersion") != r.api_version:
            data = pure.convert(data, srs, r)
            entry = None
        if accept.as_kind == "Table":
            return json_response(code, self.table(request, r, [data], {}), warnings)
        if accept.as_kind.startswith("PartialObjectMetadata"):
            return json_response(code, partial(data), warnings)
        if accept.yaml:
            return json_response(code, data, warnings, yaml=True)
        return json_response(code, entry.json() if entry is not None else codec.dumps(data), warnings)

    def table(self, request: web.Request, r: ResourceType, objs: list[dict[str, Any]],
              list_meta: dict[str, Any]) -> dict[str, Any]:
        t = pure.table(r, objs, objects.now())
        t["metadata"] = dict(list_meta)
        include = request.query.get("includeObject", "Metadata")
        if include not in ("None", "Metadata", "Object"):
            raise errors.Invalid(f'includeObject "{include}" is not valid: use None, Metadata or Object')
        for row, obj in zip(t.get("rows") or [], objs):
            if include == "Object":
                row["object"] = obj
            elif include == "Metadata":
                row["object"] = partial(obj)
            else:
                row.pop("object", None)
        return t

    # --- get and list ---------------------------------------------------------------------------------------------

    async def get(self, request: web.Request, info: RequestInfo) -> web.Response:
        r = info.resource
        assert r is not None and info.name
        if request.query.get("resourceVersion") == "0":
            entry = self.ctx.store.cached(r, info.namespace, info.name)
            if entry is None:
                raise status.not_found(r, info.name)
            return self.render_object(request, r, entry)
        obj = await self.ctx.store.get(r, info.namespace, info.name)
        return self.render_object(request, r, obj)

    def list_filter(self, request: web.Request, r: ResourceType, namespace: str | None) -> Filter:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), r.storage_key)
        name = fields.exact("metadata.name")
        ns = namespace
        fns = fields.exact("metadata.namespace")
        if r.namespaced and ns is None and fns is not None:
            ns = fns
        return Filter(ns if r.namespaced else None, name, labels, fields)

    @staticmethod
    def limit(request: web.Request) -> int:
        raw = request.query.get("limit", "")
        if not raw:
            return 0
        try:
            n = int(raw)
        except ValueError:
            raise errors.Invalid(f'invalid value for limit: "{raw}"') from None
        return max(n, 0)

    async def list(self, request: web.Request, info: RequestInfo) -> web.Response:
        r = info.resource
        assert r is not None
        filt = self.list_filter(request, r, info.namespace)
        limit = self.limit(request)
        token = request.query.get("continue", "")
        rv_param = request.query.get("resourceVersion", "")
        rv_match = request.query.get("resourceVersionMatch", "")
        if rv_match and rv_match not in ("Exact", "NotOlderThan"):
            raise errors.Invalid(f'resourceVersionMatch "{rv_match}" is not valid: use Exact or NotOlderThan')
        if rv_match and not rv_param:
            raise errors.Invalid("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if token and rv_param:
            raise errors.Invalid("specifying resource version is not allowed when using continue")
        if token:
            rev, start = decode_continue(token)
            entries, next_start, list_rev = await self.list_storage(r, filt, rev, start, limit)
        elif rv_match == "Exact":
            rev = self.parse_rv(rv_param)
            entries, next_start, list_rev = await self.list_storage(r, filt, rev, "", limit)
        else:
            await self.wait_for_rv(rv_param)
            cache = self.ctx.cache
            entries, next_key = cache.list(r.storage_key, filt, limit=limit if rv_param != "0" else 0)
            list_rev = cache.revision
            next_start = next_key + "\x00" if next_key else None
        list_meta: dict[str, Any] = {"resourceVersion": str(list_rev)}
        if next_start:
            list_meta["continue"] = encode_continue(list_rev, next_start)
        return self.render_list(request, r, entries, list_meta)

    @staticmethod
    def parse_rv(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise errors.Invalid(f'invalid resource version "{raw}"') from None
        if value < 0:
            raise errors.Invalid(f'invalid resource version "{raw}"')
        return value

    async def wait_for_rv(self, rv_param: str) -> None:
        cache = self.ctx.cache
        if rv_param == "0":
            return
        if not rv_param:
            if not await cache.fresh():
                raise status.ServerTimeout("Timeout: the watch cache did not catch up with storage in time")
            return
        want = self.parse_rv(rv_param)
        if not await cache.wait_for(want):
            err = status.ServerTimeout(f"Too large resource version: {want}, current: {cache.revision}")
            err.causes = [Cause("", "ResourceVersionTooLarge", "Too large resource version")]  # type: ignore[attr-defined]
            err.retry_after = 1  # type: ignore[attr-defined]
            raise err

    async def list_storage(self, r: ResourceType, filt: Filter, revision: int, start: str,
                           limit: int) -> tuple[list[Entry], str | None, int]:
        from kapal.kube.api.cache import resource_prefix

        prefix = resource_prefix(r.storage_key) + (f"{filt.namespace}/" if filt.namespace else "")
        out: list[Entry] = []
        cursor = start
        page = max(limit, 100) if limit else 0
        try:
            while True:
                res = await self.ctx.backend.list(prefix, revision=revision, limit=page, start=cursor)
                revision = res.revision
                for kv in res.items:
                    entry = Entry.from_kv(kv)
                    if filt.matches(entry):
                        if limit and len(out) >= limit:
                            return out, out[-1].key + "\x00", revision
                        out.append(entry)
                if not res.more:
                    return out, None, revision
                cursor = res.items[-1].key + "\x00"
        except Compacted:
            raise status.Gone("The provided continue parameter is too old to display a consistent list result. You "
                              "can start a new list without the continue parameter.") from None
        except errors.Conflict:
            raise status.ServerTimeout(f"Too large resource version: {revision}") from None

    def render_list(self, request: web.Request, r: ResourceType, entries: list[Entry],
                    list_meta: dict[str, Any]) -> web.Response:
        accept = codec.negotiate(request.headers.get("Accept"))
        srs = storage_resource(r)
        convert = srs is not r
        if accept.as_kind == "Table":
            objs = [pure.convert(e.obj, srs, r) if convert else e.obj for e in entries]
            return json_response(200, self.table(request, r, objs, list_meta))
        if accept.as_kind.startswith("PartialObjectMetadata"):
            return json_response(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                       "metadata": list_meta, "items": [partial(e.obj) for e in entries]})
        if accept.yaml or convert:
            body = {"kind": r.list_kind, "apiVersion": r.api_version, "metadata": list_meta,
                    "items": [pure.convert(e.obj, srs, r) if convert else e.obj for e in entries]}
            return json_response(200, body, yaml=accept.yaml)
        head = codec.dumps({"kind": r.list_kind, "apiVersion": r.api_version, "metadata": list_meta})
        body = head[:-1] + b',"items":[' + b",".join(e.json() for e in entries) + b"]}"
        return json_response(200, body)

    # --- create ---------------------------------------------------------------------------------------------------

    async def create(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
        r = info.resource
        assert r is not None
        if r.kind in REVIEW_KINDS:
            from kapal.kube.api import reviews

            return await reviews.handle(self, request, info, user)
        if r.namespaced and not info.namespace:
            raise status.MethodNotAllowed(f"the server does not allow this method on the requested resource: "
                                          f"create {r.plural} needs a namespace in the path")
        dry = self.dry_run(request)
        mode = self.validation_mode(request)
        manager = self.field_manager(request)
        warnings: list[str] = []
        obj = await self.read_object(request, r, mode, warnings)
        srs = storage_resource(r)
        if srs is not r:
            obj = pure.convert(obj, r, srs)
        created = await self.create_object(srs, obj, info.namespace, manager, dry, "Update", user)
        return self.render_object(request, r, created, 201, warnings)

    async def create_object(self, r: ResourceType, obj: dict[str, Any], namespace: str | None, manager: str,
                            dry_run: bool, operation: str, user: UserInfo | None = None) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        body_ns = meta.get("namespace")
        if r.namespaced and body_ns and namespace and body_ns != namespace:
            raise errors.Invalid("the namespace of the provided object does not match the namespace sent on the "
                                 "request")
        causes = objects.prepare_create(r, obj, namespace)
        name = meta.get("name") or meta.get("generateName") or ""
        if causes:
            raise status.invalid(r, name, causes)
        pure.apply_defaults(r, obj)
        await self.ctx.admission.create(r, obj, dry_run, user)
        try:
            causes = pure.validate(r, obj, None)
            if causes:
                raise status.invalid(r, meta.get("name", ""), causes)
            if operation == "Update":
                obj = pure.track_update(None, obj, r, manager, "Update")
            if dry_run:
                return obj
            created = await self.ctx.store.create(r, obj)
        except BaseException:
            if not dry_run:
                self.ctx.admission.undo_create(r, obj)
            raise
        for hook in self.ctx.after_create:
            await hook(r, created)
        return created

    # --- update ---------------------------------------------------------------------------------------------------

    async def update(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
        r = info.resource
        assert r is not None and info.name
        dry = self.dry_run(request)
        mode = self.validation_mode(request)
        manager = self.field_manager(request)
        warnings: list[str] = []
        sub = info.subresource
        obj = await self.read_object(request, r, mode, warnings)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != info.name:
            raise errors.Invalid(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                 f"({info.name})")
        meta["name"] = info.name
        if r.namespaced and meta.get("namespace") and meta["namespace"] != info.namespace:
            raise errors.Invalid("the namespace of the provided object does not match the namespace sent on the "
                                 "request")
        srs = storage_resource(r)
        if srs is not r:
            obj = pure.convert(obj, r, srs)
        expected = resource_version(obj)
        current = await self.ctx.store.find(srs, info.namespace, info.name)
        if current is None:
            if sub or srs.storage_key not in CREATE_ON_UPDATE:
                raise status.not_found(r, info.name)
            created = await self.create_object(srs, obj, info.namespace, manager, dry, "Update", user)
            return self.render_object(request, r, created, 201, warnings)
        if expected and expected != resource_version(current):
            raise status.conflict(r, info.name, status.STALE)
        result = await self.update_object(srs, current, obj, manager, dry, sub)
        return self.render_object(request, r, result, 200, warnings)

    async def update_object(self, r: ResourceType, current: dict[str, Any], new: dict[str, Any], manager: str,
                            dry_run: bool, subresource: str = "", operation: str = "Update",
                            managed: bool = True) -> dict[str, Any]:
        """Validate and store `new` over `current` (compare-and-swap on current's resourceVersion)."""
        rev = resource_version(current)
        new.setdefault("metadata", {})["resourceVersion"] = str(rev)
        new["apiVersion"], new["kind"] = r.api_version, r.kind
        if not subresource:
            pure.apply_defaults(r, new)
        objects.prepare_update(r, current, new, subresource)
        if current.get("metadata", {}).get("namespace"):
            new["metadata"]["namespace"] = current["metadata"]["namespace"]
        new["metadata"]["name"] = current["metadata"]["name"]
        await self.ctx.admission.update(r, current, new, dry_run)
        causes = pure.validate(r, new, current)
        if causes:
            raise status.invalid(r, new["metadata"]["name"], causes)
        if managed:
            new = pure.track_update(current, new, r, manager, operation, subresource)
        if same_object(current, new):
            return current
        if dry_run:
            return new
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (
                r.storage_key == ("", "namespaces") and (new.get("spec") or {}).get("finalizers")) and \
                not _graceful_pending(r, new):
            await self.ctx.store.delete(r, meta.get("namespace"), meta["name"], rev)
            return new
        return await self.ctx.store.update(r, new, rev)

    # --- patch ----------------------------------------------------------------------------------------------------

    async def patch(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
        r = info.resource
        assert r is not None and info.name
        ctype = codec.media_type(request.headers.get("Content-Type"))
        data = await self.read_body(request)
        decoded = codec.decode_body(ctype, data, patch=True)
        patch = decoded.body
        apply = ctype == codec.APPLY_PATCH
        dry = self.dry_run(request)
        mode = self.validation_mode(request)
        manager = self.field_manager(request, required=apply)
        force = request.query.get("force", "").lower() in ("1", "true")
        if request.query.get("force") and not apply:
            raise errors.Invalid("force is only allowed for apply patches")
        warnings: list[str] = []
        srs = storage_resource(r)
        sub = info.subresource
        if ctype == codec.JSON_PATCH:
            if not isinstance(patch, list):
                raise errors.Invalid("json patch must be a JSON array of operations")
        else:
            codec.require_object(patch, "object (patch)")
        if apply:
            self.check_kind(r, patch)
            meta = patch.get("metadata") or {}
            if meta.get("name") and meta["name"] != info.name:
                raise errors.Invalid(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({info.name})")
            unknown = pure.unknown_fields(patch, r)
            if unknown and mode != "Ignore":
                raise errors.Invalid(f"failed to create typed patch object ({r.api_version}, Kind={r.kind}): "
                                     + pure.field_not_declared_message(unknown))
            objects.prune(patch, unknown)
        precondition = 0
        if isinstance(patch, dict):
            precondition = resource_version(patch) if isinstance(patch.get("metadata"), dict) else 0

        async def change(current: dict[str, Any]) -> dict[str, Any]:
            if precondition and precondition != resource_version(current):
                raise status.conflict(r, info.name, status.STALE)
            live = pure.convert(current, srs, r) if srs is not r else current
            if apply:
                new = pure.server_side_apply(live, patch, r, manager, force, sub)
            elif ctype == codec.JSON_PATCH:
                new = pure.json_patch(live, patch)
            elif ctype == codec.MERGE_PATCH:
                new = pure.merge_patch(live, patch)
            else:
                new = pure.strategic_merge_patch(live, patch, r)
            new = codec.require_object(new, "object after the patch")
            if not apply:
                self.field_validation(r, new, mode, decoded.duplicates, warnings)
            nmeta = new.get("metadata")
            if not isinstance(nmeta, dict):
                raise errors.Invalid("metadata must be an object")
            if nmeta.get("name", info.name) != info.name:
                raise errors.Invalid(f"the name of the object ({nmeta.get('name')}) does not match the name on the "
                                     f"URL ({info.name})")
            if srs is not r:
                new = pure.convert(new, r, srs)
            return await self.update_object(srs, current, new, manager, dry, sub,
                                            operation="Apply" if apply else "Update", managed=not apply)

        try:
            if precondition:
                result = await change(await self.ctx.store.get(srs, info.namespace, info.name))
            else:
                result = await self.ctx.store.guaranteed_update(srs, info.namespace, info.name, change)
        except errors.NotFound:
            if not apply or sub:
                raise
            live_missing = await self.ctx.store.find(srs, info.namespace, info.name)
            if live_missing is not None:
                raise
            obj = pure.server_side_apply(None, patch, r, manager, force)
            obj.setdefault("metadata", {})["name"] = info.name
            if srs is not r:
                obj = pure.convert(obj, r, srs)
            created = await self.create_object(srs, obj, info.namespace, manager, dry, "Apply", user)
            return self.render_object(request, r, created, 201, warnings)
        return self.render_object(request, r, result, 200, warnings)

    # --- delete ---------------------------------------------------------------------------------------------------

    async def delete_options(self, request: web.Request) -> dict[str, Any]:
        data = await self.read_body(request)
        opts: dict[str, Any] = {}
        if data.strip():
            body = codec.decode_body(request.headers.get("Content-Type"), data).body
            opts = dict(codec.require_object(body, "DeleteOptions object"))
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise errors.Invalid(f'invalid gracePeriodSeconds "{q["gracePeriodSeconds"]}"') from None
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = q["orphanDependents"].lower() in ("1", "true")
        if q.getall("dryRun", []):
            opts["dryRun"] = q.getall("dryRun")
        for v in opts.get("dryRun") or []:
            if v != "All":
                raise errors.Invalid(f'Invalid dryRun value "{v}": valid values are "All"')
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.Invalid(f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
                                 f'"{policy}": supported values: "Foreground", "Background", "Orphan", "nil"')
        if opts.get("orphanDependents") is not None and policy is not None:
            raise errors.Invalid('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
                                 f'"{policy}": orphanDependents and deletionPropagation cannot be both set')
        return opts

    async def delete(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
        r = info.resource
        assert r is not None and info.name
        opts = await self.delete_options(request)
        srs = storage_resource(r)
        obj, deleted_now = await self.delete_object(srs, info.namespace, info.name, opts)
        if deleted_now and srs.storage_key not in RETURNS_DELETED_OBJECT:
            return json_response(200, status.success(r, info.name, obj["metadata"].get("uid", "")))
        return self.render_object(request, r, obj, 200)

    async def delete_object(self, r: ResourceType, namespace: str | None, name: str,
                            opts: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Delete now, or mark for graceful/finalizer deletion; returns (object, deleted right away)."""
        store = self.ctx.store
        dry = bool(opts.get("dryRun"))
        for _ in range(10):
            current = await store.get(r, namespace, name)
            meta = current["metadata"]
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise status.conflict(r, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                                               f"object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise status.conflict(r, name, f"Precondition failed: ResourceVersion in precondition: "
                                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                               f"{meta.get('resourceVersion')}")
            self.ctx.admission.delete(r, current)
            rev = resource_version(current)
            new = self.deletion_state(r, current, opts)
            if dry:
                return new or current, new is None
            try:
                if new is None:
                    gone = await store.delete(r, namespace, name, rev)
                    return gone, True
                if same_object(current, new):
                    return current, False
                return await store.update(r, new, rev), False
            except status.StaleRevision:
                continue
        raise status.conflict(r, name, "too many concurrent updates; try again")

    def deletion_state(self, r: ResourceType, current: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any] | None:
        """The object marked for deletion, or None when it can go now."""
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        now = objects.now()
        grace = opts.get("gracePeriodSeconds")
        new = json.loads(json.dumps(current))
        nmeta = new["metadata"]
        key = r.storage_key
        if key == ("", "namespaces"):
            nmeta.setdefault("deletionTimestamp", objects.timestamp(now))
            nmeta.setdefault("deletionGracePeriodSeconds", 0)
            new.setdefault("status", {})["phase"] = "Terminating"
            if not (new.get("spec") or {}).get("finalizers") and not finalizers:
                return None
            return new
        if key == ("", "pods"):
            spec = current.get("spec") or {}
            phase = (current.get("status") or {}).get("phase")
            if grace is None:
                grace = int(spec.get("terminationGracePeriodSeconds", 30) or 0)
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
            if grace > 0:
                existing = meta.get("deletionGracePeriodSeconds")
                if meta.get("deletionTimestamp") and existing is not None and existing <= grace:
                    return current
                nmeta["deletionTimestamp"] = objects.timestamp(now + dt.timedelta(seconds=grace))
                nmeta["deletionGracePeriodSeconds"] = grace
                self._add_propagation_finalizer(nmeta, policy)
                return new
        if policy in ("Foreground", "Orphan"):
            self._add_propagation_finalizer(nmeta, policy)
            finalizers = nmeta.get("finalizers") or []
        if finalizers:
            nmeta.setdefault("deletionTimestamp", objects.timestamp(now))
            nmeta.setdefault("deletionGracePeriodSeconds", 0)
            return new
        return None

    @staticmethod
    def _add_propagation_finalizer(meta: dict[str, Any], policy: str | None) -> None:
        finalizer = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
        if finalizer and finalizer not in (meta.get("finalizers") or []):
            meta.setdefault("finalizers", []).append(finalizer)

    async def delete_collection(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.Response:
        r = info.resource
        assert r is not None
        opts = await self.delete_options(request)
        srs = storage_resource(r)
        filt = self.list_filter(request, r, info.namespace)
        await self.ctx.cache.fresh()
        entries, _ = self.ctx.cache.list(srs.storage_key, filt)
        items = []
        for e in entries:
            meta = e.obj["metadata"]
            try:
                obj, _ = await self.delete_object(srs, meta.get("namespace"), meta["name"], opts)
                items.append(obj)
            except errors.NotFound:
                continue
        body = {"kind": r.list_kind, "apiVersion": r.api_version,
                "metadata": {"resourceVersion": str(self.ctx.cache.revision)}, "items": items}
        return json_response(200, body)

    # --- dispatch -------------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        r = info.resource
        assert r is not None
        if r.group in COMPUTED_GROUPS:
            from kapal.kube.api import resourcemetrics

            return await resourcemetrics.handle(self, request, info, user)
        if info.subresource:
            from kapal.kube.api import subresources

            return await subresources.handle(self, request, info, user)
        verb = info.verb
        if not info.name and verb in ("update", "patch") or info.name and verb == "create":
            raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
        if verb not in r.verbs and not (verb == "watch" and "list" in r.verbs and "watch" in r.verbs):
            raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
        handlers: dict[str, Callable[..., Awaitable[web.StreamResponse]]] = {
            "create": self.create, "update": self.update, "patch": self.patch, "delete": self.delete,
            "deletecollection": self.delete_collection,
        }
        if verb == "get":
            return await self.get(request, info)
        if verb == "list":
            return await self.list(request, info)
        if verb == "watch":
            from kapal.kube.api import watch

            return await watch.serve(self, request, info)
        handler = handlers.get(verb)
        if handler is None:
            raise status.MethodNotAllowed("the server does not allow this method on the requested resource")
        return await handler(request, info, user)


def _graceful_pending(r: ResourceType, obj: dict[str, Any]) -> bool:
    return r.storage_key == ("", "pods") and bool((obj["metadata"].get("deletionGracePeriodSeconds") or 0) > 0)


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    return {**obj, "metadata": meta}


def same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for resourceVersion and managedFields: such an update writes nothing (and keeps the version)."""
    return _strip(a) == _strip(b)
