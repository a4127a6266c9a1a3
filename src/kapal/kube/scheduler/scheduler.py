"""The scheduler: pending pods from the queue, one at a time through filter and score, bound asynchronously.

A scheduling cycle is synchronous code over the cache (so it is a consistent snapshot); the chosen node is
*assumed* at once and the binding (POST pods/NAME/binding) runs as its own task, like upstream's binding
cycle, so the next pod is scheduled while the API server answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import format_time
from kapal.kube.client.events import EventRecorder
from kapal.kube.client.informer import EventHandler, InformerFactory
from kapal.kube.client.kinds import NAMESPACES, NODES, PODS
from kapal.kube.client.store import object_key
from kapal.kube.scheduler.cache import SchedulerCache
from kapal.kube.scheduler.fiterror import NO_NODES, fit_error_message, preemption_reasons
from kapal.kube.scheduler.framework import CycleState, FilterPlugin, ScorePlugin, Status
from kapal.kube.scheduler.nodeinfo import NodeInfo, PodInfo, pod_info
from kapal.kube.scheduler.plugins.basic import NodeName, NodePorts, NodeUnschedulable
from kapal.kube.scheduler.plugins.interpodaffinity import InterPodAffinity
from kapal.kube.scheduler.plugins.nodeaffinity import NodeAffinity
from kapal.kube.scheduler.plugins.noderesources import NodeResourcesBalancedAllocation, NodeResourcesFit
from kapal.kube.scheduler.plugins.tainttoleration import TaintToleration
from kapal.kube.scheduler.plugins.topologyspread import PodTopologySpread
from kapal.kube.scheduler.preemption import find_candidate
from kapal.kube.scheduler.queue import SchedulingQueue

log = logging.getLogger(__name__)

MIN_FEASIBLE_NODES = 100
BASE_PERCENTAGE = 50


@dataclass
class SchedulerSettings:
    scheduler_name: str = "default-scheduler"
    percentage_of_nodes_to_score: int = 0  # 0: adaptive, as upstream
    parallel_binds: int = 64
    preemption: bool = True


@dataclass
class ScheduleResult:
    node: str | None
    message: str = ""
    statuses: dict[str, Status] = field(default_factory=dict)
    evaluated: int = 0
    feasible: int = 0


class FitError(Exception):
    def __init__(self, message: str, statuses: dict[str, Status], state: CycleState | None) -> None:
        super().__init__(message)
        self.statuses = statuses
        self.state = state


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    if num_nodes < MIN_FEASIBLE_NODES:
        return num_nodes
    if percentage <= 0:
        percentage = max(5, BASE_PERCENTAGE - num_nodes // 125)
    return max(MIN_FEASIBLE_NODES, num_nodes * percentage // 100)


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(self, client: ApiClient, informers: InformerFactory, settings: SchedulerSettings | None = None,
                 recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.informers = informers
        self.settings = settings or SchedulerSettings()
        self.recorder = recorder or EventRecorder(client, self.settings.scheduler_name)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue()
        ipa = InterPodAffinity(self.cache)
        taints, affinity, fit = TaintToleration(), NodeAffinity(), NodeResourcesFit()
        self.fit = fit
        spread = PodTopologySpread(self.cache)
        self.filters: list[FilterPlugin] = [NodeUnschedulable(), NodeName(), taints, affinity, NodePorts(), fit,
                                            spread, ipa]
        self.scorers: list[ScorePlugin] = [taints, affinity, fit, spread, ipa, NodeResourcesBalancedAllocation()]
        self.pods = informers.informer(PODS)
        self.nodes = informers.informer(NODES)
        self.namespaces = informers.informer(NAMESPACES)
        self._next_start = 0
        self._binds = asyncio.Semaphore(self.settings.parallel_binds)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: list[tuple[Any, EventHandler]] = []
        self.scheduled = 0
        self.attempts = 0
        self.timing = {"cycle": 0.0, "bind": 0.0}

    # --- informer handlers ------------------------------------------------------------------------------------------

    def _responsible(self, pod: dict[str, Any]) -> bool:
        return (pod.get("spec") or {}).get("schedulerName", "default-scheduler") == self.settings.scheduler_name

    def on_pod(self, pod: dict[str, Any]) -> None:
        key = object_key(pod)
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            self.queue.delete(key)
            if is_terminal(pod):
                if self.cache.remove_pod(key) is not None:
                    self.queue.move_all_to_active_or_backoff()
                return
            current = self.cache.pods.get(key)
            if current is not None and current.node_name == spec["nodeName"] and current.uid == pod["metadata"].get(
                    "uid") and not self.cache.is_assumed(key) and current.pod.get("spec") == spec:
                current.pod = pod
                return
            self.cache.add_pod(pod_info(pod, key))
            return
        if is_terminal(pod) or pod["metadata"].get("deletionTimestamp") or not self._responsible(pod):
            self.queue.delete(key)
            return
        if self.cache.is_assumed(key):
            return
        self.queue.add(key, int(spec.get("priority") or 0))

    def on_pod_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """A pending pod whose status alone changed (our own PodScheduled condition) is not retried for it."""
        if not (new.get("spec") or {}).get("nodeName") and object_key(new) in self.queue and \
                old.get("spec") == new.get("spec") and not new["metadata"].get("deletionTimestamp") and \
                (old.get("metadata") or {}).get("labels") == new["metadata"].get("labels") and \
                (old.get("metadata") or {}).get("annotations") == new["metadata"].get("annotations"):
            return
        self.on_pod(new)

    def on_pod_delete(self, pod: dict[str, Any]) -> None:
        key = object_key(pod)
        self.queue.delete(key)
        if self.cache.remove_pod(key) is not None:
            self.queue.move_all_to_active_or_backoff()

    def on_node(self, node: dict[str, Any]) -> None:
        _, changed = self.cache.set_node(node)
        if changed:
            self.queue.move_all_to_active_or_backoff()

    def on_node_delete(self, node: dict[str, Any]) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    def on_namespace(self, ns: dict[str, Any]) -> None:
        self.cache.set_namespace(ns["metadata"]["name"], (ns.get("metadata") or {}).get("labels") or {})

    # --- one scheduling cycle ---------------------------------------------------------------------------------------

    def find_node(self, p: PodInfo) -> ScheduleResult:
        nodes = self.cache.node_infos()
        if not nodes:
            raise FitError(f"0/0 nodes are available: {NO_NODES}.", {}, None)
        state = CycleState()
        for f in self.filters:
            st = f.pre_filter(state, p, self.cache)
            if st is not None:
                raise FitError(fit_error_message(len(nodes), {}, st), {}, state)
        statuses: dict[str, Status] = {}
        only = state.data.get("NodeAffinity/nodes")
        candidates = nodes
        if only is not None:
            wanted = set(only)
            candidates = [n for n in nodes if n.name in wanted]
            for n in nodes:
                if n.name not in wanted:
                    statuses[n.name] = NodeAffinity.mismatch
        excluded = state.data.get("InterPodAffinity/excluded")
        if excluded:
            candidates = [n for n in candidates if n.name not in excluded]
        active = [f for f in self.filters if f.name not in state.skip_filters]
        filters = [f.filter for f in active]
        n = len(candidates)
        to_find = num_feasible_nodes_to_find(len(nodes), self.settings.percentage_of_nodes_to_score)
        feasible: list[NodeInfo] = []
        start = self._next_start % n if n else 0
        processed = 0
        order = candidates[start:] + candidates[:start] if start else candidates
        if len(active) == 1 and active[0] is self.fit:
            feasible, processed = self.fit.filter_batch(state, p, order, to_find, statuses)
        elif len(filters) == 1:
            fn = filters[0]
            for node in order:
                processed += 1
                st = fn(state, p, node)
                if st is not None:
                    statuses[node.name] = st
                    continue
                feasible.append(node)
                if len(feasible) >= to_find:
                    break
        else:
            for node in order:
                processed += 1
                for fn in filters:
                    st = fn(state, p, node)
                    if st is not None:
                        statuses[node.name] = st
                        break
                else:
                    feasible.append(node)
                    if len(feasible) >= to_find:
                        break
        if only is None:
            self._next_start = (start + processed) % max(n, 1)
        if not feasible:
            if excluded:
                # the nodes skipped up front get their reasons from the full filter chain, in upstream's order
                state.skip_filters.discard("InterPodAffinity")
                chain = [f.filter for f in self.filters if f.name not in state.skip_filters]
                for node in nodes:
                    if node.name in excluded:
                        for fn in chain:
                            st = fn(state, p, node)
                            if st is not None:
                                statuses[node.name] = st
                                break
            raise FitError(fit_error_message(len(nodes), statuses), statuses, state)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated=processed, feasible=1)
        return ScheduleResult(self._select(state, p, feasible), evaluated=processed, feasible=len(feasible))

    def _select(self, state: CycleState, p: PodInfo, feasible: list[NodeInfo]) -> str:
        totals = [0] * len(feasible)
        for plugin in self.scorers:
            if not plugin.pre_score(state, p, feasible, self.cache):
                continue
            scores = plugin.score_nodes(state, p, feasible)
            plugin.normalize(state, scores)
            w = plugin.weight
            totals = [t + s * w for t, s in zip(totals, scores)]
        best = max(totals)
        ties = [i for i, t in enumerate(totals) if t == best]
        return feasible[ties[0] if len(ties) == 1 else random.choice(ties)].name

    def schedule_one(self, key: str) -> None:
        pod = self.pods.indexer.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp") \
                or is_terminal(pod) or not self._responsible(pod):
            self.queue.done(key)
            return
        self.attempts += 1
        started = time.perf_counter()
        p = pod_info(pod, key)
        try:
            result = self.find_node(p)
        except FitError as e:
            self.timing["cycle"] += time.perf_counter() - started
            self._failed(pod, p, e)
            return
        self.timing["cycle"] += time.perf_counter() - started
        assert result.node is not None
        self.cache.assume(p, result.node)
        self.queue.done(key)
        task = asyncio.create_task(self._bind(pod, p, result.node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _failed(self, pod: dict[str, Any], p: PodInfo, e: FitError) -> None:
        message = str(e)
        spec = pod.get("spec") or {}
        if e.state is not None and e.statuses and self.settings.preemption:
            if spec.get("preemptionPolicy") == "Never":
                message += " preemption: not eligible due to preemptionPolicy=Never."
            else:
                candidate, has_victims = find_candidate(self.filters, e.state, p, self.cache.node_infos(), e.statuses)
                if candidate is not None:
                    self._spawn(self._preempt(pod, candidate.node, candidate.victims))
                    message = fit_error_message(len(self.cache.node_infos()), e.statuses)
                else:
                    message = fit_error_message(len(self.cache.node_infos()), e.statuses,
                                                preemption=preemption_reasons(e.statuses, has_victims))
        self.queue.unschedulable(p.key)
        self.recorder.record(pod, "Warning", "FailedScheduling", message)
        self._spawn(self._mark_unschedulable(pod, message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        """The PodScheduled=False condition kubectl describe shows (written only when it changes)."""
        for c in (pod.get("status") or {}).get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message") == message:
                return
        meta = pod["metadata"]
        patch = {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": message, "lastProbeTime": None,
                                            "lastTransitionTime": format_time(dt.datetime.now(dt.UTC))}]}}
        try:
            await self.client.patch(PODS, meta["name"], patch, meta["namespace"], patch_type="strategic",
                                    subresource="status")
        except errors.KapalError as e:
            log.debug("could not record PodScheduled=False on %s/%s: %s", meta["namespace"], meta["name"], e)

    async def _preempt(self, pod: dict[str, Any], node: str, victims: list[PodInfo]) -> None:
        meta = pod["metadata"]
        for v in victims:
            self.recorder.record(v.pod, "Normal", "Preempted", f"Preempted by pod {meta.get('uid')} on node {node}")
            try:
                await self.client.delete(PODS, v.name, v.namespace, uid=v.uid)
            except errors.NotFound:
                pass
            except errors.KapalError as e:
                log.warning("preempting %s/%s failed: %s", v.namespace, v.name, e)
        try:
            await self.client.patch(PODS, meta["name"], {"status": {"nominatedNodeName": node}}, meta["namespace"],
                                    subresource="status")
        except errors.KapalError as e:
            log.debug("could not nominate %s for %s/%s: %s", node, meta["namespace"], meta["name"], e)

    async def _bind(self, pod: dict[str, Any], p: PodInfo, node: str) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        async with self._binds:
            started = time.perf_counter()
            try:
                await self.client.create(PODS, body, meta["namespace"], name=meta["name"], subresource="binding")
            except errors.KapalError as e:
                self.timing["bind"] += time.perf_counter() - started
                self.cache.forget(p.key)
                if isinstance(e, errors.NotFound):
                    return
                current = self.pods.indexer.get(p.key)
                if current is not None and (current.get("spec") or {}).get("nodeName"):
                    return
                log.info("binding %s to %s failed: %s", p.key, node, e)
                self.recorder.record(pod, "Warning", "FailedScheduling", f"Binding rejected: {e}")
                self.queue.add(p.key, p.priority, failed=True)
                return
            self.timing["bind"] += time.perf_counter() - started
        self.cache.finish_binding(p.key)
        self.scheduled += 1
        self.recorder.record(pod, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} "
                                                         f"to {node}")

    # --- running ----------------------------------------------------------------------------------------------------

    def register_handlers(self) -> None:
        self._handlers = [
            (self.nodes, EventHandler(on_add=self.on_node, on_update=lambda _o, n: self.on_node(n),
                                      on_delete=self.on_node_delete)),
            (self.namespaces, EventHandler(on_add=self.on_namespace, on_update=lambda _o, n: self.on_namespace(n))),
            (self.pods, EventHandler(on_add=self.on_pod, on_update=self.on_pod_update,
                                     on_delete=self.on_pod_delete)),
        ]
        for informer, handler in self._handlers:
            informer.add_handler(handler)

    def unregister_handlers(self) -> None:
        for informer, handler in self._handlers:
            informer.remove_handler(handler)
        self._handlers = []

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Schedule until cancelled (or `stop` is set)."""
        self.register_handlers()
        housekeeping: asyncio.Task[None] | None = None
        pop: asyncio.Future[Any] | None = None
        stopper = asyncio.create_task(stop.wait()) if stop is not None else None
        try:
            self.informers.start()
            await self.informers.wait_for_sync(self.nodes, self.pods, self.namespaces)
            log.info("scheduler %s: caches synced (%d nodes, %d pods)", self.settings.scheduler_name,
                     len(self.nodes.indexer), len(self.pods.indexer))
            housekeeping = asyncio.create_task(self._housekeeping())
            count = 0
            while True:
                pop = asyncio.ensure_future(self.queue.pop())
                if stopper is not None:
                    done, _ = await asyncio.wait({pop, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if stopper in done:
                        pop.cancel()
                        return
                q = await pop
                if q is None:
                    return
                self.queue.cycle_started()
                self.schedule_one(q.key)
                count += 1
                if count % 8 == 0:
                    await asyncio.sleep(0)
        finally:
            self.unregister_handlers()
            self.queue.close()
            others = [t for t in (housekeeping, stopper, pop) if t is not None]
            for t in [*others, *self._tasks]:
                t.cancel()
            await asyncio.gather(*others, *self._tasks, return_exceptions=True)
            await self.recorder.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for key in self.cache.expire_assumed():
                pod = self.pods.indexer.get(key)
                if pod is not None and not (pod.get("spec") or {}).get("nodeName"):
                    self.queue.add(key, int((pod.get("spec") or {}).get("priority") or 0))
            self.queue.flush_unschedulable_leftovers()

