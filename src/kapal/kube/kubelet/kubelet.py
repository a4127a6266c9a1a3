"""The kubelet: composition root of the node agent.

    kubelet = Kubelet(config)            # settings from flags (cli/kubelet.py) or from `kapal up`
    await kubelet.run(stop_event)        # until stop is set; pods keep running after it returns

Sources of pods: the API server (pods bound to this node, through an informer) and the static manifest
directory. One PodWorker per pod (pods.py) converges and reports. Around them: the runtime cache (what the
engine runs), the node agent (Node status and Lease), the sandbox, volume, cgroup and image managers, and
the HTTPS server the API server proxies logs, exec, attach and port-forward to (server.py).

A restarted kubelet adopts what runs: containers carry the pod UID and a hash of their spec in engine labels,
sandboxes are remembered on disk, so workers find running containers that already match and leave them be.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.client import ApiClient
from kapal.kube.client.events import EventRecorder
from kapal.kube.client.informer import EventHandler, Informer, InformerFactory
from kapal.kube.client.kinds import CONFIGMAPS, NODES, PODS, SECRETS, SERVICES

from . import qos as qosmod
from .backoff import Backoff
from .cgroups import PodCgroups
from .config import KUBELET_VERSION, KubeletConfig
from .engineapi import EngineApi
from .images import ImageManager
from .node import Machine, NodeAgent
from .pleg import RuntimeCache
from .podfiles import ClusterDns, host_resolv_conf
from .pods import PodWorker, pod_key
from .preflight import node_address, preflight
from .sandbox import SandboxManager, SandboxState
from .static import HASH_ANNOTATION, MIRROR_ANNOTATION, StaticPodSource, is_mirror, mirror_of
from .volumes import VolumeManager

log = logging.getLogger(__name__)

MIRROR_RECREATE_DELAY = 1.0


class _PodCgroups:
    """The stats provider's view of the node: each running pod's cgroup and its containers' (PodCgroupSource)."""

    def __init__(self, kl: Kubelet) -> None:
        self.kl = kl

    def pod_cgroups(self) -> list[Any]:
        from .stats import ContainerCgroup, PodCgroup

        out = []
        for w in list(self.kl.workers.values()):
            if w.cgroup_parent is None:
                continue
            meta = w.pod["metadata"]
            ctrs = tuple(ContainerCgroup(r.name, f"{w.cgroup_parent.rstrip('/')}/{r.id}",
                                         r.started_at.timestamp() if r.started_at else 0.0)
                         for r in self.kl.cache.pod_records(w.uid) if r.running and r.kind == "regular")
            started = min((c.start_time for c in ctrs if c.start_time), default=0.0)
            out.append(PodCgroup(meta.get("namespace") or "default", meta["name"], w.uid, w.cgroup_parent, ctrs,
                                 started))
        return out


class Kubelet:
    def __init__(self, config: KubeletConfig, client: ApiClient | None = None) -> None:
        self.config = config
        self.client = client
        self.engine = EngineApi(config.container_runtime_endpoint)
        self.node_ip = node_address(config)
        self.machine = Machine.probe(str(config.root_dir))
        self.memory_capacity = self.machine.memory
        self.oom_score_adj_floor = qosmod.oom_score_adj_floor()
        if self.oom_score_adj_floor > -1000:
            log.warning("this host's root lacks CAP_SYS_RESOURCE: containers get oom_score_adj >= %d (Guaranteed "
                        "pods would get -997)", self.oom_score_adj_floor)
        from .node import allocatable as allocatable_of

        self.allocatable = allocatable_of(self.machine, config.max_pods, config.system_reserved,
                                          config.eviction_hard_memory)
        dns = ClusterDns(tuple(config.cluster_dns), config.cluster_domain, host_resolv_conf(config.resolv_conf))
        self.sandboxes = SandboxManager(config.root_dir, None, dns, self.node_ip)
        self.cgroups = PodCgroups(config.cgroup_root)
        self.volumes = VolumeManager(config.pods_dir, client, allocatable=self.allocatable)
        self.images = ImageManager(self.engine, config.image_pull_backoff_max, config.serialize_image_pulls)
        self.crash_backoff = Backoff(config.crash_backoff_base, config.crash_backoff_max)
        self.cache = RuntimeCache(self.engine, config.node_name, self._runtime_changed)
        self.workers: dict[str, PodWorker] = {}
        self.static_pods: dict[str, dict[str, Any]] = {}
        self.recorder = EventRecorder(client, "kubelet", config.node_name) if client is not None else None
        self.informers: InformerFactory | None = InformerFactory(client) if client is not None else None
        self.pod_informer: Informer | None = None
        self.service_informer: Informer | None = None
        self.node_informer: Informer | None = None
        self.node_agent: NodeAgent | None = None
        self.pod_cidr: str | None = config.pod_cidr
        self.network_ready = False
        self.server: Any = None
        from .stats import ResourceStats

        self.stats: ResourceStats | None = ResourceStats(config.node_name, _PodCgroups(self),
                                                         root_dir=str(config.root_dir))
        self.port = config.port
        self._tasks: list[asyncio.Task[Any]] = []
        self._api_synced = asyncio.Event()
        self._static_synced = asyncio.Event()
        self._mirror_wake = asyncio.Event()
        self._status_wake = asyncio.Event()
        self._mirror_not_before: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.node_ready = asyncio.Event()  # this kubelet has posted Ready=True
        self._last_node_error = ""
        if config.pod_manifest_path is None:
            self._static_synced.set()
        if client is None:
            self._api_synced.set()

    # ---- events and API helpers --------------------------------------------------------------------------------

    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            log.info("pod %s: %s %s: %s", pod_key(pod), type_, reason, message)
            return
        target = pod
        if pod["metadata"].get("annotations", {}).get("kubernetes.io/config.source") == "file":
            mirror = self.mirror_pod(pod)
            if mirror is None:
                return
            target = mirror
        self.recorder.record({**target, "kind": "Pod", "apiVersion": "v1"}, type_, reason, message)

    async def get_config_object(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        if self.client is None:
            raise errors.FailedPrecondition(f"{kind} {namespace}/{name}: a standalone kubelet has no API server")
        try:
            return await self.client.get(SECRETS if kind == "secret" else CONFIGMAPS, name, namespace)
        except errors.NotFound:
            return None

    def services_for(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        if self.service_informer is None:
            return []
        ns = pod["metadata"].get("namespace") or "default"
        out = self.service_informer.indexer.list(ns)
        if ns != "default":
            master = self.service_informer.indexer.get("default/kubernetes")
            if master is not None:
                out = [*out, master]
        return out

    def mirror_pod(self, static_pod: dict[str, Any]) -> dict[str, Any] | None:
        if self.pod_informer is None:
            return None
        return self.pod_informer.indexer.get(pod_key(static_pod))

    async def send_pod_status(self, worker: PodWorker, status: dict[str, Any]) -> bool:
        """Write the status to the pod (a static pod's: to its mirror); False when there was nowhere to write it."""
        if self.client is None:
            return True
        target = worker.pod
        if worker.source == "file":
            target = self.mirror_pod(worker.pod) or {}
            if not target:
                return False
        meta = target["metadata"]
        old = target.get("status") or {}
        # a JSON patch that first tests the UID: a status never lands on a newer pod that took the same name
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]}]
        if not isinstance(target.get("status"), dict):
            ops.append({"op": "add", "path": "/status", "value": {}})
        ops += [{"op": "add", "path": f"/status/{key}", "value": value} for key, value in status.items()]
        ops += [{"op": "remove", "path": f"/status/{key}"} for key in ("reason", "message", "podIP", "podIPs")
                if key in old and key not in status]
        try:
            updated = await self.client.patch(PODS, meta["name"], ops, meta.get("namespace"), subresource="status",
                                              patch_type="json")
            if worker.source == "api":
                worker.pod = {**worker.pod, "status": updated.get("status") or status}
        except errors.NotFound:
            return False
        except errors.Invalid as e:  # the test op failed: another pod has the name now, or a field went away
            log.info("pod %s: status not written: %s", pod_key(target), e)
            return False
        return True

    async def delete_pod_object(self, pod: dict[str, Any]) -> None:
        if self.client is None:
            return
        meta = pod["metadata"]
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                     uid=meta["uid"])

    def admit(self, worker: PodWorker) -> tuple[str, str] | None:
        """Upstream's admission on the node: the pod count and the node's allocatable cpu and memory."""
        active = [w for w in self.workers.values() if w is not worker and w.rejected is None and not w.is_terminal()
                  and w.last_status is not None]
        if len(active) + 1 > self.config.max_pods:
            return "OutOfpods", (f"Node didn't have enough resource: pods, requested: 1, used: {len(active)}, "
                                 f"capacity: {self.config.max_pods}")
        from kapal.kube.meta.quantity import parse_quantity

        for res in ("cpu", "memory"):
            want = qosmod.effective_request(worker.pod, res)
            if want <= 0:
                continue
            used = sum((qosmod.effective_request(w.pod, res) for w in active), start=type(want)(0))
            cap = parse_quantity(self.allocatable[res])
            if used + want > cap:
                unit = (lambda q: f"{int(q * 1000)}") if res == "cpu" else (lambda q: f"{int(q)}")
                return f"OutOf{res}", (f"Node didn't have enough resource: {res}, requested: {unit(want)}, used: "
                                       f"{unit(used)}, capacity: {unit(cap)}")
        return None

    # ---- pod sources -------------------------------------------------------------------------------------------

    def _ensure_worker(self, pod: dict[str, Any], source: str) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            if pod["metadata"].get("deletionTimestamp") and source == "api" and not self.cache.pod_records(uid) \
                    and not os.path.isdir(self.sandboxes.pod_dir(uid)):
                self._spawn_delete(pod)  # never ran here: nothing to stop, just let it go
                return
            w = PodWorker(self, pod, source)
            self.workers[uid] = w
            w.start()
        else:
            w.update(pod)

    def _spawn_delete(self, pod: dict[str, Any]) -> None:
        self._tasks.append(asyncio.create_task(self.delete_pod_object(pod)))

    def _on_api_pod(self, pod: dict[str, Any]) -> None:
        if is_mirror(pod):
            self._mirror_wake.set()
            static = self.find_worker(pod["metadata"].get("namespace") or "default", pod["metadata"]["name"])
            if static is not None and static.source == "file" and not (pod.get("status") or {}).get("phase"):
                static.status_unsent = True  # a fresh mirror: give it the status at once
                static.wake()
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and pod["metadata"]["uid"] \
                not in self.workers and not self.cache.pod_records(pod["metadata"]["uid"]):
            if pod["metadata"].get("deletionTimestamp"):
                self._spawn_delete(pod)
            return  # finished before we (re)started and left nothing behind
        self._ensure_worker(pod, "api")

    def _on_api_pod_deleted(self, pod: dict[str, Any]) -> None:
        if is_mirror(pod):
            self._mirror_wake.set()
            return
        w = self.workers.get(pod["metadata"]["uid"])
        if w is not None:
            w.remove()

    def _runtime_changed(self, uid: str) -> None:
        w = self.workers.get(uid)
        if w is not None:
            w.wake()

    def worker_done(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        if worker.source == "file":
            self._mirror_wake.set()

    def find_worker(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            meta = w.pod["metadata"]
            if meta["name"] == name and (meta.get("namespace") or "default") == namespace:
                return w
        return None

    async def _watch_static(self) -> None:
        assert self.config.pod_manifest_path is not None
        source = StaticPodSource(Path(self.config.pod_manifest_path), self.config.node_name)
        while True:
            try:
                pods = await asyncio.to_thread(source.scan)
                for uid, pod in pods.items():
                    if uid not in self.static_pods:
                        log.info("static pod %s from %s", pod_key(pod), self.config.pod_manifest_path)
                    self.static_pods[uid] = pod
                    self._ensure_worker(pod, "file")
                for uid in [u for u in self.static_pods if u not in pods]:
                    gone = self.static_pods.pop(uid)
                    log.info("static pod %s: manifest removed", pod_key(gone))
                    w = self.workers.get(uid)
                    if w is not None:
                        w.remove()
                self._static_synced.set()
                self._mirror_wake.set()
            except Exception:
                log.exception("scanning static pod manifests")
            await asyncio.sleep(self.config.file_check_frequency)

    async def _sync_mirrors(self) -> None:
        """Every static pod has exactly one current mirror pod; no mirror outlives its static pod."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mirror_wake.wait(), 10)
            self._mirror_wake.clear()
            if self.client is None or self.pod_informer is None or not self.pod_informer.has_synced():
                continue
            try:
                await self._reconcile_mirrors()
            except errors.KapalError as e:
                log.warning("mirror pods: %s", e)
                await asyncio.sleep(1)
                self._mirror_wake.set()
            except Exception:
                log.exception("mirror pods")

    async def _reconcile_mirrors(self) -> None:
        assert self.client is not None and self.pod_informer is not None
        wanted = {pod_key(p): p for uid, p in self.static_pods.items() if uid in self.workers}
        node_uid = ((self.node_agent.node or {}).get("metadata") or {}).get("uid", "") if self.node_agent else ""
        for obj in list(self.pod_informer.indexer.items.values()):
            if not is_mirror(obj):
                continue
            key = pod_key(obj)
            static = wanted.get(key)
            mirror_hash = obj["metadata"]["annotations"].get(MIRROR_ANNOTATION)
            stale = static is None or mirror_hash != static["metadata"]["annotations"].get(HASH_ANNOTATION)
            if stale or obj["metadata"].get("deletionTimestamp"):  # deleted by a user: goes now, and comes back
                with contextlib.suppress(errors.NotFound, errors.Conflict):
                    await self.client.delete(PODS, obj["metadata"]["name"], obj["metadata"].get("namespace"),
                                             grace_period_seconds=0, uid=obj["metadata"]["uid"])
                log.info("mirror pod %s deleted", key)
                if not stale:
                    # back a moment later, not at once: `kubectl delete` lists after its GET and would otherwise
                    # find the new mirror under the old name and wait for ever for it to go
                    self._mirror_not_before[key] = time.monotonic() + MIRROR_RECREATE_DELAY
        for key, static in wanted.items():
            current = self.pod_informer.indexer.get(key)
            if current is not None and current["metadata"]["annotations"].get(MIRROR_ANNOTATION) == \
                    static["metadata"]["annotations"].get(HASH_ANNOTATION) and \
                    not current["metadata"].get("deletionTimestamp"):
                continue
            if current is not None:
                self._mirror_retry(0.1)  # being replaced: the delete above lands first, a later pass creates it
                continue
            wait = self._mirror_not_before.get(key, 0.0) - time.monotonic()
            if wait > 0:
                self._mirror_retry(wait)
                continue
            self._mirror_not_before.pop(key, None)
            try:
                await self.client.create(PODS, mirror_of(static, node_uid), static["metadata"]["namespace"])
                log.info("mirror pod %s created", key)
                w = self.workers.get(static["metadata"]["uid"])
                if w is not None:
                    w.status_unsent = True
                    w.wake()
            except errors.AlreadyExists:
                self._mirror_wake.set()
            except errors.KapalError as e:
                log.warning("mirror pod %s: %s", key, e)

    def _mirror_retry(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._mirror_wake.set)

    # ---- cleanup -----------------------------------------------------------------------------------------------

    async def cleanup_pod(self, uid: str, sandbox: SandboxState | None) -> None:
        """Everything a pod left on the node once its containers are gone: sandbox, volumes, cgroup, directory."""
        def work() -> None:
            sb = sandbox or self.sandboxes.load(uid)
            if sb is not None:
                self.sandboxes.destroy(sb)
            elif self.sandboxes.network is not None:
                with contextlib.suppress(errors.KapalError):
                    self.sandboxes.network.cleanup(f"pod-{uid}")
            self.volumes.unmount_all(uid)
            self.cgroups.destroy(uid)
            self.sandboxes.remove_pod_dir(uid)

        for attempt in range(10):
            try:
                await asyncio.to_thread(work)
                return
            except (errors.KapalError, OSError) as e:
                if attempt == 9:
                    log.warning("pod %s: cleanup incomplete: %s", uid, e)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _housekeeping(self) -> None:
        """Remove what belongs to pods that no source has any more (after a crash or while we were down)."""
        await self._api_synced.wait()
        await self._static_synced.wait()
        await self.cache.synced.wait()
        while True:
            try:
                await self._remove_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping")
            await asyncio.sleep(10)

    async def _remove_orphans(self) -> None:
        known = set(self.workers)
        for rec in list(self.cache.records.values()):
            if rec.pod_uid and rec.pod_uid not in known:
                log.info("removing orphaned container %s of pod %s", rec.id[:12], rec.pod_uid)
                with contextlib.suppress(errors.NotFound):
                    if rec.running:
                        await self.engine.stop_container(rec.id, 2)
                    await self.engine.remove_container(rec.id)
                self.cache.forget(rec.id)
        on_disk = set(await asyncio.to_thread(self.sandboxes.known))  # never other kubelets' cgroups
        for uid in on_disk - known - self.cache.pod_uids():
            log.info("cleaning up after pod %s (no longer known)", uid)
            await self.cleanup_pod(uid, None)

    # ---- node --------------------------------------------------------------------------------------------------

    def _set_pod_cidr(self, cidr: str | None) -> None:
        if not cidr or self.network_ready:
            return
        from kapal.network.bridge import BridgeNetwork

        net = ipaddress.ip_network(cidr, strict=False)
        exclude = self.config.non_masquerade_cidr or str(net.supernet(new_prefix=min(net.prefixlen, 16)))
        cni_dir = self.config.root_dir / "cni"
        self.sandboxes.network = BridgeNetwork("kubepods", self.config.pod_bridge, str(net), cni_dir,
                                               nat_exclude=[exclude])
        cni_dir.mkdir(parents=True, exist_ok=True)
        record = cni_dir / "network.json"
        record.with_suffix(".tmp").write_text(json.dumps({"bridge": self.config.pod_bridge, "subnet": str(net),
                                                          "nat_exclude": [exclude]}))
        record.with_suffix(".tmp").replace(record)
        self.pod_cidr = str(net)
        self.network_ready = True
        log.info("pod network: bridge %s on %s", self.config.pod_bridge, net)
        self._status_wake.set()
        for w in self.workers.values():
            w.wake()

    def _on_node(self, node: dict[str, Any]) -> None:
        if node["metadata"].get("name") != self.config.node_name:
            return
        if self.node_agent is not None:
            self.node_agent.node = node
        self._set_pod_cidr((node.get("spec") or {}).get("podCIDR"))

    async def _node_status_loop(self) -> None:
        assert self.node_agent is not None
        while True:
            try:
                images = await self.engine.list_images()
                reason = "" if self.network_ready else ("container runtime network not ready: NetworkReady=false "
                                                        "reason:NetworkPluginNotReady message:the node has no pod "
                                                        "CIDR yet")
                first_ready = self.network_ready and not self.node_ready.is_set()
                await self.node_agent.update_status(images, self.network_ready, reason, force=first_ready)
                if self.network_ready:
                    self.node_ready.set()
                self._last_node_error = ""
            except asyncio.CancelledError:
                raise
            except errors.KapalError as e:
                if str(e) != self._last_node_error:
                    log.warning("node status: %s", e)
                self._last_node_error = str(e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_wake.wait(), self.config.node_status_update_frequency)
            self._status_wake.clear()

    async def _lease_loop(self) -> None:
        assert self.node_agent is not None
        while True:
            try:
                await self.node_agent.renew_lease()
            except asyncio.CancelledError:
                raise
            except errors.KapalError as e:
                log.warning("node lease: %s", e)
            await asyncio.sleep(self.config.lease_renew_interval)

    async def _wait_engine(self, stop: asyncio.Event) -> str:
        delay = 0.1
        warned = False
        while not stop.is_set():
            try:
                v = await self.engine.version()
                return str(v.get("Version") or "")
            except errors.KapalError as e:
                if not warned:
                    log.warning("waiting for the container engine: %s", e)
                    warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 2.0)
        raise errors.Temporary("stopped before the engine answered")

    # ---- run ---------------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        runtime_version = await self._wait_engine(stop)
        await asyncio.to_thread(self.cgroups.setup)
        from .server import KubeletServer

        self.server = KubeletServer(self)
        self.port = await self.server.start()
        if self.config.healthz_port:
            await self.server.start_healthz(self.config.healthz_bind_address, self.config.healthz_port)
        self._set_pod_cidr(self.pod_cidr)
        await self.cache.relist()
        spawn = self._tasks.append
        spawn(asyncio.create_task(self.cache.run(self.config.relist_period), name="kubelet-pleg"))
        spawn(asyncio.create_task(self._housekeeping(), name="kubelet-housekeeping"))
        if self.stats is not None:
            spawn(asyncio.create_task(self.stats.run(stop), name="kubelet-stats"))
        if self.config.pod_manifest_path is not None:
            spawn(asyncio.create_task(self._watch_static(), name="kubelet-static-pods"))
        if self.client is not None:
            # in the background: with kubeadm the API server is one of our static pods, so it may not answer yet
            spawn(asyncio.create_task(self._connect(stop, runtime_version), name="kubelet-connect"))
        log.info("kubelet %s ready in %.2fs (node IP %s, port %d)", self.config.node_name, time.monotonic() - started,
                 self.node_ip, self.port)
        self.ready.set()
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def _connect(self, stop: asyncio.Event, runtime_version: str) -> None:
        """Register the Node (when asked to), then follow the API server: pods, services, our Node."""
        assert self.client is not None and self.informers is not None
        spawn = self._tasks.append
        if self.config.register_node:
            self.node_agent = NodeAgent(self.client, self.config, self.node_ip, socket.gethostname(), self.machine,
                                        self.port)
            self.node_agent.runtime_version = runtime_version
            await self._register(stop)
            self._set_pod_cidr(self.pod_cidr)
        self.pod_informer = self.informers.informer(PODS, field_selector=f"spec.nodeName={self.config.node_name}")
        self.pod_informer.add_handler(EventHandler(on_add=self._on_api_pod, on_update=lambda _o, n: self._on_api_pod(n),
                                                   on_delete=self._on_api_pod_deleted))
        self.service_informer = self.informers.informer(SERVICES)
        self.node_informer = self.informers.informer(NODES, field_selector=f"metadata.name={self.config.node_name}")
        self.node_informer.add_handler(EventHandler(on_add=self._on_node, on_update=lambda _o, n: self._on_node(n)))
        self.informers.start()
        spawn(asyncio.create_task(self._sync_mirrors(), name="kubelet-mirrors"))
        spawn(asyncio.create_task(self._mark_api_synced(), name="kubelet-api-sync"))
        if self.node_agent is not None:
            spawn(asyncio.create_task(self._node_status_loop(), name="kubelet-node-status"))
            spawn(asyncio.create_task(self._lease_loop(), name="kubelet-lease"))

    async def _mark_api_synced(self) -> None:
        assert self.informers is not None and self.pod_informer is not None
        await self.pod_informer.wait_synced()
        self._api_synced.set()

    async def _register(self, stop: asyncio.Event) -> None:
        assert self.node_agent is not None
        delay = 0.2
        failures = 0
        while not stop.is_set():
            try:
                node = await self.node_agent.register()
                if not self.pod_cidr:
                    self.pod_cidr = (node.get("spec") or {}).get("podCIDR")
                await self.node_agent.update_status([], self.network_ready or bool(self.pod_cidr),
                                                    "" if self.pod_cidr else "the node has no pod CIDR yet", force=True)
                if self.pod_cidr:
                    self.node_ready.set()
                await self.node_agent.renew_lease()
                return
            except errors.KapalError as e:
                failures += 1
                (log.warning if failures in (1, 30) or failures % 300 == 0 else log.debug)(
                    "registering node %s (attempt %d): %s", self.config.node_name, failures, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 2.0)  # kubeadm: the API server is a static pod coming up meanwhile

    async def shutdown(self) -> None:
        """Stop the agent; containers keep running (a new kubelet adopts them)."""
        for w in list(self.workers.values()):
            if w.task is not None:
                w.task.cancel()
            for p in w.probes.values():
                p.stop()
        tasks = [w.task for w in self.workers.values() if w.task is not None] + self._tasks
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.informers is not None:
            await self.informers.stop()
        if self.server is not None:
            await self.server.stop()
        if self.recorder is not None:
            await self.recorder.close(1.0)
        await self.engine.close()


async def run_kubelet(config: KubeletConfig, stop: asyncio.Event, *, client: ApiClient | None = None,
                      on_ready: Any = None) -> None:
    """Run a kubelet until `stop` is set: preflight, the API client from --kubeconfig, then Kubelet.run."""
    preflight(config)
    own = False
    if client is None and config.kubeconfig is not None:
        from kapal.kube.client.config import ClientConfig
        from kapal.kube.pki import load_kubeconfig

        client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(config.kubeconfig), user_agent=(
            f"kubelet/{KUBELET_VERSION} (linux) kapal")))
        own = True
    kubelet = Kubelet(config, client)
    waiter = None
    if on_ready is not None:
        async def announce() -> None:
            await kubelet.ready.wait()
            on_ready(kubelet)

        waiter = asyncio.create_task(announce())
    try:
        await kubelet.run(stop)
    finally:
        if waiter is not None:
            waiter.cancel()
        if own and client is not None:
            await client.close()
