"""Hollow nodes: N simulated kubelets in one process, kubemark-style, with no containers behind them.

Each node registers Ready (capacity cpu 4 / memory 16Gi / pods 110 by default, no taints), renews its Lease in
kube-node-lease every 10 s and reports its status every 5 minutes. Pods bound to any of them are watched
through one pod informer (`spec.nodeName!=`) and reported Running at once, with a pod IP, Ready and
ContainersReady true and ready container statuses. A pod annotated `kapal.dev/hollow-exit: "<seconds>[:<code>]"`
ends after that long, honouring restartPolicy (Succeeded for 0, else Failed; restarts with CrashLoopBackOff
delays for Always/OnFailure). A pod with a deletionTimestamp is deleted at once (grace period 0).

All nodes share the one identity of the kubeconfig they are started with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.clock import format_micro_time
from kapal.kube.client.informer import EventHandler, InformerFactory
from kapal.kube.client.kinds import LEASES, NODES, PODS
from kapal.kube.client.store import object_key
from kapal.kube.client.workqueue import ItemExponentialLimiter, WorkQueue, run_worker
from kapal.kube.hollow.ipam import PodAddresses
from kapal.kube.hollow.podstatus import PodRun, pod_status, same_status, ts

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.33.0-kapal-hollow"
NODE_IP_BASE = ipaddress.ip_address("10.255.0.0")


@dataclass
class HollowConfig:
    count: int = 3
    name_prefix: str = "hollow-node-"
    start_index: int = 0
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    lease_interval: float = 10.0
    lease_duration: int = 40
    status_interval: float = 300.0
    workers: int = 16


@dataclass
class HollowNode:
    name: str
    index: int
    ip: str
    addresses: PodAddresses
    lease_rv: str = ""


class HollowNodes:
    def __init__(self, client: ApiClient, config: HollowConfig, informers: InformerFactory | None = None) -> None:
        self.client = client
        self.config = config
        self.informers = informers or InformerFactory(client)
        self._own_factory = informers is None
        self.nodes: dict[str, HollowNode] = {}
        for i in range(config.start_index, config.start_index + config.count):
            name = f"{config.name_prefix}{i}"
            self.nodes[name] = HollowNode(name, i, str(NODE_IP_BASE + i + 1), PodAddresses(i))
        self.runs: dict[str, PodRun] = {}  # pod uid -> its simulated life
        self.run_keys: dict[str, str] = {}  # pod key -> uid
        self.queue = WorkQueue("hollow-pods", ItemExponentialLimiter(0.05, 30.0))
        self.pods = self.informers.informer(PODS, field_selector="spec.nodeName!=")
        self.node_informer = self.informers.informer(NODES)
        self.registered = asyncio.Event()

    # --- the node objects -------------------------------------------------------------------------------------------

    def node_object(self, node: HollowNode) -> dict[str, Any]:
        cfg = self.config
        now = ts(dt.datetime.now(dt.UTC))
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "kapal.dev/hollow": "true",
                  **cfg.labels}
        resources = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.pods),
                     "ephemeral-storage": cfg.ephemeral_storage, "hugepages-2Mi": "0"}

        def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}

        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": {"taints": list(cfg.taints)} if cfg.taints else {},
            "status": {
                "capacity": resources, "allocatable": dict(resources),
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                         "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": f"hollow{node.index:026d}", "systemUUID": f"hollow-{node.index}",
                             "bootID": f"hollow-boot-{node.index}", "kernelVersion": "6.1.0-hollow",
                             "osImage": "kapal hollow node", "containerRuntimeVersion": "hollow://1.0.0",
                             "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                             "operatingSystem": "linux", "architecture": "amd64"},
            },
        }

    async def register(self, node: HollowNode) -> None:
        obj = self.node_object(node)
        try:
            await self.client.create(NODES, obj)
            return
        except errors.AlreadyExists:
            pass
        current = await self.client.get(NODES, node.name)
        current["status"] = obj["status"]
        await self.client.replace(NODES, current, subresource="status")

    async def report_status(self, node: HollowNode) -> None:
        current = self.node_informer.indexer.get(node.name)
        if current is None:
            await self.register(node)
            return
        now = ts(dt.datetime.now(dt.UTC))
        status = {**(current.get("status") or {})}
        status["conditions"] = [{**c, "lastHeartbeatTime": now} for c in status.get("conditions") or []]
        await self.client.replace(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": node.name, "resourceVersion": current["metadata"]["resourceVersion"]}, "status": status},
            subresource="status")

    async def renew_lease(self, node: HollowNode) -> None:
        now = format_micro_time(dt.datetime.now(dt.UTC))
        spec = {"holderIdentity": node.name, "leaseDurationSeconds": self.config.lease_duration, "renewTime": now}
        if node.lease_rv:
            try:
                lease = await self.client.replace(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node.name, "namespace": "kube-node-lease", "resourceVersion": node.lease_rv},
                    "spec": spec})
                node.lease_rv = lease["metadata"]["resourceVersion"]
                return
            except (errors.Conflict, errors.NotFound):
                node.lease_rv = ""
        try:
            current = await self.client.get(LEASES, node.name, "kube-node-lease")
            current["spec"] = spec
            lease = await self.client.replace(LEASES, current)
        except errors.NotFound:
            owner = self.node_informer.indexer.get(node.name)
            meta: dict[str, Any] = {"name": node.name, "namespace": "kube-node-lease"}
            if owner is not None:
                meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                            "uid": owner["metadata"]["uid"]}]
            lease = await self.client.create(LEASES, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                      "metadata": meta, "spec": spec})
        node.lease_rv = lease["metadata"]["resourceVersion"]

    async def _heartbeat(self, node: HollowNode) -> None:
        await asyncio.sleep(random.random() * self.config.lease_interval)
        next_status = asyncio.get_running_loop().time() + self.config.status_interval
        while True:
            try:
                await self.renew_lease(node)
                if asyncio.get_running_loop().time() >= next_status:
                    await self.report_status(node)
                    next_status += self.config.status_interval
            except errors.KapalError as e:
                log.warning("hollow node %s: heartbeat failed: %s", node.name, e)
            await asyncio.sleep(self.config.lease_interval)

    # --- pods -------------------------------------------------------------------------------------------------------

    def _enqueue(self, pod: dict[str, Any]) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self.nodes:
            self.queue.add(object_key(pod))

    def _on_node(self, node: dict[str, Any]) -> None:
        mine = self.nodes.get(node["metadata"]["name"])
        if mine is not None:
            mine.addresses.set_cidr((node.get("spec") or {}).get("podCIDR"))

    async def sync_pod(self, key: str) -> None:
        pod = self.pods.indexer.get(key)
        if pod is None:
            self._forget(key)
            return
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = self.nodes.get(spec.get("nodeName", ""))
        if node is None:
            return
        uid = meta["uid"]
        if self.run_keys.get(key, uid) != uid:
            self._forget(key)
        if meta.get("deletionTimestamp"):
            try:
                await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0, uid=uid)
            except errors.NotFound:
                pass
            except errors.Conflict:
                pass  # a precondition failed: another pod took the name; its own event follows
            self._forget(key)
            return
        status = pod.get("status") or {}
        run = self.runs.get(uid)
        now = dt.datetime.now(dt.UTC)
        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                return
            run = self._adopt(pod, node, now)
        delay = run.advance(pod, now)
        desired = pod_status(pod, run, node.ip, now)
        if not same_status(status, desired):
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": uid,
                "resourceVersion": meta["resourceVersion"]}, "status": {**status, **desired}}
            try:
                await self.client.replace(PODS, body, subresource="status")
            except errors.NotFound:
                self._forget(key)
                return
        if delay is not None:
            self.queue.add_after(key, delay + 0.01)

    def _adopt(self, pod: dict[str, Any], node: HollowNode, now: dt.datetime) -> PodRun:
        """A new run, or the run a previous hollow-nodes process started (its IP and start time are kept)."""
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        key = object_key(pod)
        started = now
        if status.get("startTime") and status.get("podIP"):
            started = dt.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
            ip = status["podIP"]
            node.addresses.used.add(ip)
            node.addresses.by_owner[uid] = ip
        elif (pod.get("spec") or {}).get("hostNetwork"):
            ip = node.ip
        else:
            ip = node.addresses.allocate(uid)
        run = PodRun(uid=uid, ip=ip, started=started, run_started=started)
        self.runs[uid] = run
        self.run_keys[key] = uid
        return run

    def _forget(self, key: str) -> None:
        uid = self.run_keys.pop(key, None)
        if uid is None:
            return
        self.runs.pop(uid, None)
        for node in self.nodes.values():
            if uid in node.addresses.by_owner:
                node.addresses.release(uid)
                break

    # --- running ----------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.node_informer.add_handler(EventHandler(on_add=self._on_node, on_update=lambda _o, n: self._on_node(n)))
        self.pods.add_handler(EventHandler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
                                           on_delete=lambda o: self.queue.add(object_key(o))))
        self.informers.start()
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.informers.wait_for_sync(self.node_informer)
            sem = asyncio.Semaphore(32)

            async def register(node: HollowNode) -> None:
                async with sem:
                    await self.register(node)

            await asyncio.gather(*(register(n) for n in self.nodes.values()))
            log.info("registered %d hollow nodes", len(self.nodes))
            await self.informers.wait_for_sync(self.pods)
            self.registered.set()
            tasks += [asyncio.create_task(self._heartbeat(n)) for n in self.nodes.values()]
            tasks += [asyncio.create_task(run_worker(self.queue, self.sync_pod, logger=log))
                      for _ in range(self.config.workers)]
            await stop.wait()
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._own_factory:
                await self.informers.stop()
