"""Owner references: building them, finding an object's controller, and claiming objects the way upstream's
ControllerRefManager does — keep what is ours and still matches, adopt matching orphans, release what no
longer matches. Adoption and release are strategic-merge patches of metadata.ownerReferences keyed by uid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.meta.resources import ResourceType
from kapal.kube.meta.selectors import LabelSelector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def owner_reference(owner: Obj, block: bool = True, controller: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    ref = {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""), "name": meta["name"],
           "uid": meta["uid"]}
    if controller:
        ref["controller"] = True
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def controller_of(obj: Obj) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def is_deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def candidates(informer: Any, owner: Obj) -> list[Obj]:
    """What `owner` might control: the objects it controls already plus the orphans in its namespace, found
    through two indexes instead of a walk over the namespace."""
    from kapal.kube.client.store import CONTROLLER_INDEX, ORPHAN_INDEX, controller_uid_index, orphan_namespace_index

    informer.add_index(CONTROLLER_INDEX, controller_uid_index)
    informer.add_index(ORPHAN_INDEX, orphan_namespace_index)
    meta = owner["metadata"]
    return informer.indexer.by_index(CONTROLLER_INDEX, meta["uid"]) + informer.indexer.by_index(
        ORPHAN_INDEX, meta.get("namespace", ""))


async def claim(client: ApiClient, resource: ResourceType, owner: Obj, selector: LabelSelector, objs: list[Obj],
                can_adopt: Callable[[], Any] | None = None) -> list[Obj]:
    """The objects `owner` controls after adopting matching orphans and releasing non-matching children."""
    owner_uid = owner["metadata"]["uid"]
    owned: list[Obj] = []
    for obj in objs:
        meta = obj["metadata"]
        ref = controller_of(obj)
        matches = selector.matches(meta.get("labels"))
        if ref is not None:
            if ref.get("uid") != owner_uid:
                continue
            if matches:
                owned.append(obj)
            elif not is_deleting(owner):
                await _patch_refs(client, resource, obj, [{"$patch": "delete", "uid": owner_uid}])
            continue
        if not matches or is_deleting(owner) or is_deleting(obj):
            continue
        if can_adopt is not None:
            await can_adopt()
        try:
            adopted = await _patch_refs(client, resource, obj, [owner_reference(owner)])
        except errors.KapalError as e:
            log.debug("adopting %s/%s failed: %s", meta.get("namespace"), meta["name"], e)
            continue
        if adopted is not None:
            owned.append(adopted)
    return owned


async def _patch_refs(client: ApiClient, resource: ResourceType, obj: Obj, refs: list[dict[str, Any]]) -> Obj | None:
    meta = obj["metadata"]
    try:
        return await client.patch(resource, meta["name"], {"metadata": {"ownerReferences": refs, "uid": meta["uid"]}},
                                  meta.get("namespace"), patch_type="strategic")
    except errors.NotFound:
        return None
