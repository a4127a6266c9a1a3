"""What runs on the node, as the engine reports it (upstream's PLEG and runtime cache).

Every `relist_period` the cache lists the engine's containers that carry this node's label, inspects the
new ones and those whose state moved, and tells the pod workers of the pods that changed. The kubelet's
own actions refresh single containers right away (`refresh`), so the relist only catches what happens
on its own: exits, OOM kills, containers removed behind our back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kapal import errors

from .containers import L_NODE, L_POD_UID, ContainerRecord
from .engineapi import EngineApi

log = logging.getLogger(__name__)


class RuntimeCache:
    def __init__(self, engine: EngineApi, node: str, on_change: Callable[[str], None]) -> None:
        self.engine = engine
        self.node = node
        self.on_change = on_change
        self.records: dict[str, ContainerRecord] = {}
        self._states: dict[str, str] = {}
        self.synced = asyncio.Event()
        self._lock = asyncio.Lock()

    def pod_records(self, uid: str) -> list[ContainerRecord]:
        return [r for r in self.records.values() if r.pod_uid == uid]

    def pod_uids(self) -> set[str]:
        return {r.pod_uid for r in self.records.values()}

    async def refresh(self, cid: str) -> ContainerRecord | None:
        try:
            doc = await self.engine.inspect_container(cid)
        except errors.NotFound:
            self.forget(cid)
            return None
        rec = ContainerRecord.from_inspect(doc)
        known = self._states.get(cid)
        self.records[cid] = rec
        self._states[cid] = rec.state
        if rec.exited and rec.state != known and rec.pod_uid:
            # A container that ended by the time its own start refreshed it: the relist will see no change,
            # so its pod's worker is told here (restart, back-off or status), as upstream's PLEG reports it.
            self.on_change(rec.pod_uid)
        return rec

    def forget(self, cid: str) -> None:
        self.records.pop(cid, None)
        self._states.pop(cid, None)

    async def relist(self) -> None:
        async with self._lock:
            summaries = await self.engine.list_containers([f"{L_NODE}={self.node}"])
            seen = set()
            changed_pods: set[str] = set()
            for s in summaries:
                cid = s["Id"]
                seen.add(cid)
                state = s.get("State") or ""
                if cid in self.records and self._states.get(cid) == state:
                    continue
                rec = await self.refresh(cid)
                if rec is not None:
                    changed_pods.add(rec.pod_uid or (s.get("Labels") or {}).get(L_POD_UID, ""))
            for cid in [c for c in self.records if c not in seen]:
                changed_pods.add(self.records[cid].pod_uid)
                self.forget(cid)
        self.synced.set()
        for uid in changed_pods:
            if uid:
                self.on_change(uid)

    async def run(self, period: float) -> None:
        failures = 0
        while True:
            try:
                await self.relist()
                failures = 0
            except asyncio.CancelledError:
                raise
            except errors.KapalError as e:
                failures += 1
                if failures in (1, 10) or failures % 60 == 0:
                    log.warning("relisting the engine's containers failed (%d times): %s", failures, e)
            except Exception:
                log.exception("relist failed")
            await asyncio.sleep(period)
