"""One worker per pod: converge what runs on the node to the pod's spec, then report its status.

A worker is an asyncio task woken by spec changes, container events (the runtime cache), probe results
and its own timers (backoffs, volume refresh, resync). Each pass of `sync`:

  1. the pod cgroup (QoS class, pod-level limits)
  2. the sandbox (namespaces, IP, /etc files) - recreated with all containers when its namespaces vanished
  3. volumes (mounted once, API-backed ones re-projected every volume_refresh_period)
  4. init containers one at a time, then the containers: start what is missing, restart what exited as the
     restartPolicy says (CrashLoopBackOff between tries), kill what failed liveness or changed its spec
  5. the status, patched to the API server when it changed

When the pod is deleted (or its static manifest removed) the worker terminates it: preStop hooks and
SIGTERM within the grace period, then SIGKILL, containers removed, sandbox, volumes and cgroup torn down,
and the API object deleted for good (grace period 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from kapal import errors

from . import qos as qosmod
from .containers import (
    L_PRESTOP,
    L_TERMINATION_FILE,
    ContainerRecord,
    Placement,
    container_hash,
    create_body,
    engine_name,
    labels_for,
)
from .envvars import ConfigError, build_env
from .execsync import exec_sync
from .images import ImageError
from .probes import LIVENESS, READINESS, STARTUP, ProbeWorker, http_get, resolve_port
from .sandbox import SandboxState
from .status import ContainerView, SandboxView, pod_status, ts
from .volumes import MountedVolume

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

MIN_KILL_GRACE = 2
TERMINATION_MESSAGE_MAX = 4096
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace') or 'default'}/{meta['name']}"


def _describe(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta.get('namespace') or 'default'}({meta['uid']})"


class PodWorker:
    def __init__(self, kl: Kubelet, pod: dict[str, Any], source: str) -> None:
        self.kl = kl
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.source = source  # "api" | "file"
        self._wake = asyncio.Event()
        self._next_wake: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.sandbox: SandboxState | None = None
        self.volumes: dict[str, MountedVolume] | None = None
        self.cgroup_parent: str | None = None
        self.waiting: dict[str, tuple[str, str]] = {}
        self.probes: dict[tuple[str, str], ProbeWorker] = {}
        self.kill_requests: dict[str, str] = {}
        self.last_status: dict[str, Any] | None = None
        self.status_unsent = False
        self.status_sent_at = 0.0
        self.start_time: str = (pod.get("status") or {}).get("startTime") or ts(dt.datetime.now(dt.UTC)) or ""
        self.removed = False  # gone from its source: terminate
        self.rejected: tuple[str, str] | None = None
        self.terminal_cleaned = False
        self.last_volume_refresh = 0.0
        self.qos = qosmod.qos_class(pod)
        self.sandbox_warning: str | None = None
        self._retries: dict[str, int] = {}
        self.adopted_ready = {c.get("name"): bool(c.get("ready"))
                              for c in (pod.get("status") or {}).get("containerStatuses") or []}

    # ---- scheduling --------------------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return pod_key(self.pod)

    def start(self) -> None:
        self._wake.set()
        self.task = asyncio.create_task(self._run(), name=f"pod-{self.key}")

    def wake(self) -> None:
        self._wake.set()

    def after(self, seconds: float) -> None:
        at = time.monotonic() + max(0.0, seconds)
        if self._next_wake is None or at < self._next_wake:
            self._next_wake = at

    def update(self, pod: dict[str, Any]) -> None:
        old = self.pod
        self.pod = pod
        if (old.get("spec") != pod.get("spec") or old["metadata"].get("deletionTimestamp") !=
                pod["metadata"].get("deletionTimestamp") or old["metadata"].get("labels") !=
                pod["metadata"].get("labels") or old["metadata"].get("annotations") !=
                pod["metadata"].get("annotations")):
            self.wake()

    def remove(self) -> None:
        self.removed = True
        self.wake()

    @property
    def terminating(self) -> bool:
        return self.removed or bool(self.pod["metadata"].get("deletionTimestamp"))

    async def _run(self) -> None:
        failures = 0
        while True:
            timeout = self.kl.config.sync_frequency
            if self._next_wake is not None:
                timeout = min(timeout, max(0.0, self._next_wake - time.monotonic()))
            if not self._wake.is_set() and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            self._next_wake = None
            try:
                if self.terminating:
                    await self.terminate()
                    return
                await self.sync()
                failures = 0
            except asyncio.CancelledError:
                raise
            except errors.KapalError as e:
                failures += 1
                log.warning("pod %s: sync failed: %s", self.key, e)
                self.after(min(2.0 * failures, 30.0))
            except Exception:
                failures += 1
                log.exception("pod %s: sync failed", self.key)
                self.after(min(2.0 * failures, 30.0))

    # ---- sync --------------------------------------------------------------------------------------------------

    def records(self, name: str, kind: str) -> list[ContainerRecord]:
        recs = [r for r in self.kl.cache.pod_records(self.uid) if r.name == name and r.kind == kind]
        recs.sort(key=lambda r: (r.restart_count, r.created or dt.datetime.min.replace(tzinfo=dt.UTC)), reverse=True)
        return recs

    def is_terminal(self) -> bool:
        return (self.last_status or {}).get("phase") in ("Succeeded", "Failed") or \
            (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    async def sync(self) -> None:
        if self.rejected is None and self.last_status is None:
            self.rejected = self.kl.admit(self)
        if self.rejected is not None:
            await self._report(reason=self.rejected[0], message=self.rejected[1], phase="Failed")
            return
        if self.is_terminal():
            await self._finish_terminal()
            await self._report()
            return
        spec = self.pod.get("spec") or {}
        if not await self._ensure_cgroup() or not await self._ensure_sandbox() or not await self._ensure_volumes():
            await self._report()
            return
        if time.monotonic() - self.last_volume_refresh > self.kl.config.volume_refresh_period:
            self.last_volume_refresh = time.monotonic()
            changed = await self.kl.volumes.refresh(self.pod)
            if changed:
                log.info("pod %s: updated volumes %s", self.key, ", ".join(changed))
        self.after(self.kl.config.volume_refresh_period)
        if await self._sync_init_containers(spec):
            for c in spec.get("containers") or []:
                await self._sync_container(c, "regular")
        self._gc_probes()
        await self._report()

    async def _ensure_cgroup(self) -> bool:
        if self.cgroup_parent is not None:
            return True
        res = qosmod.pod_resources(self.pod)
        try:
            self.cgroup_parent = await asyncio.to_thread(self.kl.cgroups.ensure, self.qos, self.uid, res)
        except (errors.KapalError, OSError) as e:
            self._all_waiting("ContainerCreating", "")
            self.kl.event(self.pod, "Warning", "FailedCreatePodContainer", f"unable to ensure pod container: {e}")
            self.after(5)
            return False
        return True

    async def _ensure_sandbox(self) -> bool:
        if self.sandbox is None:
            self.sandbox = await asyncio.to_thread(self.kl.sandboxes.load, self.uid)
        sb = self.sandbox
        if sb is not None and sb.network_ready and await asyncio.to_thread(self.kl.sandboxes.alive, sb):
            return True
        if sb is not None:
            self.kl.event(self.pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and "
                                                                "re-created.")
            await self._kill_all(MIN_KILL_GRACE, "sandbox changed")
            await asyncio.to_thread(self.kl.sandboxes.destroy, sb)
            self.sandbox = None
        try:
            sb, warning = await asyncio.to_thread(self.kl.sandboxes.create, self.pod)
        except (errors.KapalError, OSError) as e:
            self._all_waiting("ContainerCreating", "")
            self.kl.event(self.pod, "Warning", "FailedCreatePodSandBox",
                          f"Failed to create pod sandbox: {e}")
            self.after(5)
            return False
        if warning and warning != self.sandbox_warning:
            self.kl.event(self.pod, "Warning", "MissingClusterDNS", warning)
        self.sandbox_warning = warning
        self.sandbox = sb
        return True

    async def _ensure_volumes(self) -> bool:
        if self.volumes is not None:
            return True
        try:
            self.volumes = await self.kl.volumes.mount_all(self.pod)
            self.last_volume_refresh = time.monotonic()
        except (errors.KapalError, OSError) as e:
            msg = str(e)
            self.kl.event(self.pod, "Warning", "FailedMount", msg)
            self._all_waiting("ContainerCreating", "")
            self.after(self._retry_delay("volumes"))
            return False
        self._retries.pop("volumes", None)
        return True

    def _retry_delay(self, what: str) -> float:
        n = self._retries.get(what, 0) + 1
        self._retries[what] = n
        return min(2.0 * 2 ** (n - 1), 60.0)

    def _all_waiting(self, reason: str, message: str) -> None:
        spec = self.pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if not self.records(c["name"], "init" if c in (spec.get("initContainers") or []) else "regular"):
                self.waiting.setdefault(c["name"], (reason, message))

    def _restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy") or "Always"

    async def _sync_init_containers(self, spec: dict[str, Any]) -> bool:
        """True when the init containers are done (or running, for sidecars) and the containers may start."""
        for c in spec.get("initContainers") or []:
            sidecar = c.get("restartPolicy") == "Always"
            recs = self.records(c["name"], "init")
            latest = recs[0] if recs else None
            if sidecar:
                await self._sync_container(c, "init")
                recs = self.records(c["name"], "init")
                if not recs or not recs[0].running or self._startup_pending(recs[0]):
                    return False
                continue
            if latest is not None and latest.exited and latest.exit_code == 0:
                continue
            if latest is not None and latest.running:
                return False
            if latest is not None and latest.exited:
                if self._restart_policy() == "Never":
                    return False
                if not await self._backoff_allows(c, latest):
                    return False
            await self._start(c, "init", (latest.restart_count + 1) if latest else 0)
            return False
        return True

    def _startup_pending(self, rec: ContainerRecord) -> bool:
        w = self.probes.get((rec.id, STARTUP))
        return w is not None and w.result is not True

    def _should_restart(self, c: dict[str, Any], latest: ContainerRecord, kind: str) -> bool:
        if kind == "init" and c.get("restartPolicy") == "Always":
            return True
        policy = self._restart_policy()
        if policy == "Always":
            return True
        if policy == "OnFailure":
            return latest.exit_code != 0 or latest.oom_killed
        return False

    async def _backoff_allows(self, c: dict[str, Any], latest: ContainerRecord) -> bool:
        key = (self.uid, c["name"])
        finished = (latest.finished_at or latest.created or dt.datetime.now(dt.UTC)).timestamp()
        remaining = self.kl.crash_backoff.remaining(key, finished)
        if remaining > 0:
            delay = self.kl.crash_backoff.delay(key)
            msg = f"back-off {int(delay)}s restarting failed container={c['name']} pod={_describe(self.pod)}"
            if self.waiting.get(c["name"], ("",))[0] != "CrashLoopBackOff":
                self.kl.event(self.pod, "Warning", "BackOff", "Back-off restarting failed container "
                                                              f"{c['name']} in pod {_describe(self.pod)}")
            self.waiting[c["name"]] = ("CrashLoopBackOff", msg)
            self.after(remaining + 0.05)
            return False
        self.kl.crash_backoff.next(key)
        return True

    async def _sync_container(self, c: dict[str, Any], kind: str) -> None:
        recs = self.records(c["name"], kind)
        latest = recs[0] if recs else None
        if latest is not None and latest.running:
            self.waiting.pop(c["name"], None)
            if latest.hash and latest.hash != container_hash(c):
                self.kl.event(self.pod, "Normal", "Killing", f"Container {c['name']} definition changed, will be "
                                                             "restarted")
                await self._kill(latest, self._grace(), "spec changed")
            elif latest.id in self.kill_requests:
                why = self.kill_requests.pop(latest.id)
                self.kl.event(self.pod, "Normal", "Killing", why)
                await self._kill(latest, self._grace(), why)
            else:
                self._ensure_probes(c, latest)
                return
            recs = self.records(c["name"], kind)
            latest = recs[0] if recs else None
        if latest is not None and not latest.exited and not latest.running:
            await self._remove(latest)  # created but never started (an interrupted start): start over
            recs = self.records(c["name"], kind)
            latest = recs[0] if recs else None
        if latest is not None:
            if not self._should_restart(c, latest, kind):
                self.waiting.pop(c["name"], None)
                return
            if not await self._backoff_allows(c, latest):
                return
        await self._start(c, kind, (latest.restart_count + 1) if latest else 0)

    # ---- starting containers -----------------------------------------------------------------------------------

    def _binds(self, c: dict[str, Any], termination_file: str) -> list[str]:
        sb = self.sandbox
        assert sb is not None and self.volumes is not None
        binds = []
        mount_paths = {m.get("mountPath") for m in c.get("volumeMounts") or []}
        for name, target in (("etc-hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"),
                             ("hostname", "/etc/hostname"), ("shm", "/dev/shm")):
            if target not in mount_paths:
                binds.append(f"{sb.file(name)}:{target}")
        binds.append(f"{termination_file}:{c.get('terminationMessagePath') or '/dev/termination-log'}")
        for m in c.get("volumeMounts") or []:
            vol = self.volumes.get(m.get("name", ""))
            if vol is None:
                raise ConfigError(f'cannot find volume "{m.get("name")}" to mount into container "{c["name"]}"')
            src = vol.host_path
            sub = m.get("subPath") or ""
            if m.get("subPathExpr"):
                raise errors.Unsupported("volumeMounts[].subPathExpr is not supported by kapal's kubelet")
            if sub:
                if sub.startswith("/") or ".." in sub.split("/"):
                    raise ConfigError(f"subPath {sub!r} must be a relative path without '..'")
                src = os.path.join(src, sub)
                if not os.path.exists(src):
                    os.makedirs(src, mode=0o755, exist_ok=True)
            opts = []
            if m.get("readOnly") or vol.read_only:
                opts.append("ro")
            prop = m.get("mountPropagation")
            if prop == "Bidirectional":
                opts.append("rshared")
            elif prop == "HostToContainer":
                opts.append("rslave")
            binds.append(f"{src}:{m['mountPath']}" + (":" + ",".join(opts) if opts else ""))
        return binds

    def _termination_file(self, name: str) -> str:
        d = os.path.join(self.kl.sandboxes.pod_dir(self.uid), "containers", name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, secrets.token_hex(4))
        with open(path, "w"):
            pass
        os.chmod(path, 0o666)
        return path

    async def _fetch(self, kind: str, name: str) -> dict[str, Any] | None:
        return await self.kl.get_config_object(kind, name, self.pod["metadata"].get("namespace") or "default")

    async def _start(self, c: dict[str, Any], kind: str, attempt: int) -> None:
        name = c["name"]
        assert self.sandbox is not None and self.cgroup_parent is not None
        pulling_reported = []

        def on_pulling() -> None:
            pulling_reported.append(True)
            self.kl.event(self.pod, "Normal", "Pulling", f'Pulling image "{c.get("image")}"')

        try:
            image = await self.kl.images.ensure(c, self.uid, on_pulling)
        except ImageError as e:
            reason = getattr(e, "reason", "ErrImagePull")
            if reason == "ErrImagePull":
                self.kl.event(self.pod, "Warning", "Failed", f'Failed to pull image "{c.get("image")}": {e}')
                self.kl.event(self.pod, "Warning", "Failed", "Error: ErrImagePull")
                self.waiting[name] = ("ErrImagePull", f'Failed to pull image "{c.get("image")}": {e}')
            elif reason == "ImagePullBackOff":
                if self.waiting.get(name, ("",))[0] != "ImagePullBackOff":
                    self.kl.event(self.pod, "Normal", "BackOff", f'Back-off pulling image "{c.get("image")}"')
                    self.kl.event(self.pod, "Warning", "Failed", "Error: ImagePullBackOff")
                self.waiting[name] = ("ImagePullBackOff", str(e))
            else:
                self.kl.event(self.pod, "Warning", "Failed", f"Error: {reason}")
                self.waiting[name] = (reason, str(e))
            if reason == "ErrImagePull":
                self.after(1.0)  # the next pass shows ImagePullBackOff while the backoff runs, as upstream
            else:
                self.after(self.kl.images.retry_in(self.uid, c.get("image") or "") or 5.0)
            return
        if image.pulled:
            self.kl.event(self.pod, "Normal", "Pulled", f'Successfully pulled image "{c.get("image")}" in '
                                                        f"{image.seconds:.3f}s. Image size: {image.size} bytes.")
        else:
            self.kl.event(self.pod, "Normal", "Pulled", f'Container image "{c.get("image")}" already present on '
                                                        "machine")
        termination_file = await asyncio.to_thread(self._termination_file, name)
        try:
            env = await build_env(self.pod, c, self._fetch, services=self.kl.services_for(self.pod),
                                  allocatable=self.kl.allocatable)
            binds = self._binds(c, termination_file)
            adj = qosmod.oom_score_adj(self.pod, c, self.kl.memory_capacity, self.kl.oom_score_adj_floor)
            place = Placement(self.sandbox.mode("net"), self.sandbox.mode("ipc"), self.sandbox.mode("uts"),
                              self.sandbox.hostname, self.cgroup_parent, tuple(binds), adj)
            body = create_body(self.pod, c, image=image.id, image_config=image.config, env=env,
                               labels=labels_for(self.pod, c, kind, attempt, self.kl.config.node_name), place=place,
                               resources=qosmod.container_resources(c))
            body["Labels"][L_TERMINATION_FILE] = termination_file
        except (ConfigError, errors.Unsupported, errors.Invalid) as e:
            self.waiting[name] = ("CreateContainerConfigError", str(e))
            self.kl.event(self.pod, "Warning", "Failed", f"Error: {e}")
            self.after(self._retry_delay(f"config-{name}"))
            return
        cname = engine_name(self.pod, name, attempt)
        try:
            cid = await self.kl.engine.create_container(body, cname)
        except errors.Conflict:
            await self._remove_named(cname)
            try:
                cid = await self.kl.engine.create_container(body, cname)
            except errors.KapalError as e:
                self._create_failed(name, e)
                return
        except errors.KapalError as e:
            if isinstance(e, errors.Temporary):
                raise
            self._create_failed(name, e)
            return
        self.kl.event(self.pod, "Normal", "Created", f"Created container: {name}")
        started = True
        try:
            await self.kl.engine.start_container(cid)
        except errors.KapalError as e:
            started = False
            msg = getattr(e, "engine_message", None) or str(e)
            self.kl.event(self.pod, "Warning", "Failed", f"Error: failed to start container \"{name}\": {msg}")
        rec = await self.kl.cache.refresh(cid)
        self.waiting.pop(name, None)
        self._retries.pop(f"config-{name}", None)
        self._retries.pop(f"create-{name}", None)
        if not started:
            if rec is not None and not rec.exited:
                rec.state = "exited"
                rec.error = rec.error or "failed to start"
                rec.exit_code = rec.exit_code or 128
            self.after(0.1)
            return
        self.kl.event(self.pod, "Normal", "Started", f"Started container {name}")
        await self._gc_dead(name, kind, keep_id=cid)
        post = (c.get("lifecycle") or {}).get("postStart")
        if post and rec is not None:
            err = await self._run_hook(post, c, cid, self._grace())
            if err:
                self.kl.event(self.pod, "Warning", "FailedPostStartHook", err)
                await self._kill(rec, self._grace(), "FailedPostStartHook", run_prestop=False)
                return
        if rec is not None:
            self._ensure_probes(c, rec)

    def _create_failed(self, name: str, e: errors.KapalError) -> None:
        msg = getattr(e, "engine_message", None) or str(e)
        self.waiting[name] = ("CreateContainerError", msg)
        self.kl.event(self.pod, "Warning", "Failed", f"Error: {msg}")
        self.after(self._retry_delay(f"create-{name}"))

    async def _remove_named(self, cname: str) -> None:
        with contextlib.suppress(errors.NotFound):
            await self.kl.engine.remove_container(cname, force=True)

    async def _remove(self, rec: ContainerRecord) -> None:
        self._stop_probes(rec.id)
        with contextlib.suppress(errors.NotFound):
            await self.kl.engine.remove_container(rec.id, force=True)
        self.kl.cache.forget(rec.id)
        path = rec.labels.get(L_TERMINATION_FILE)
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _gc_dead(self, name: str, kind: str, keep_id: str) -> None:
        """Keep the running container and the one before it (logs --previous, lastState); remove older ones."""
        recs = self.records(name, kind)
        keep = [r for r in recs if r.id == keep_id]
        older = [r for r in recs if r.id != keep_id and r.exited]
        for r in older[1:] if keep else older[2:]:
            await self._remove(r)

    # ---- probes ------------------------------------------------------------------------------------------------

    def _ensure_probes(self, c: dict[str, Any], rec: ContainerRecord) -> None:
        if self.sandbox is None:
            return
        ip = self.sandbox.ip
        engine = self.kl.engine

        async def exec_fn(cmd: list[str], timeout: float) -> tuple[int, bytes]:
            return await exec_sync(engine, rec.id, cmd, timeout)

        startup = c.get("startupProbe")
        startup_done = True
        if startup:
            w = self.probes.get((rec.id, STARTUP))
            if w is None:
                w = ProbeWorker(STARTUP, startup, c, ip, exec_fn, lambda w, cid=rec.id: self._probe_changed(cid, w))
                self.probes[(rec.id, STARTUP)] = w
                w.start()
            startup_done = w.result is True
        for kind, key in ((LIVENESS, "livenessProbe"), (READINESS, "readinessProbe")):
            probe = c.get(key)
            if not probe:
                continue
            w = self.probes.get((rec.id, kind))
            if w is None:
                initial = None
                if kind == READINESS and self.adopted_ready.get(c["name"]) and rec.started_at and \
                        (dt.datetime.now(dt.UTC) - rec.started_at).total_seconds() > 1:
                    initial = True  # adopted after a kubelet restart: keep the pod ready while probing again
                w = ProbeWorker(kind, probe, c, ip, exec_fn, lambda w, cid=rec.id: self._probe_changed(cid, w),
                                initial)
                self.probes[(rec.id, kind)] = w
                w.start()
            w.paused = not startup_done

    def _probe_changed(self, cid: str, w: ProbeWorker) -> None:
        name = w.container.get("name")
        if w.result is False:
            self.kl.event(self.pod, "Warning", "Unhealthy", f"{w.kind} probe failed: {w.message}")
            if w.kind in (LIVENESS, STARTUP):
                self.kill_requests[cid] = f"Container {name} failed {w.kind.lower()} probe, will be restarted"
        self.wake()

    def _stop_probes(self, cid: str) -> None:
        for key in [k for k in self.probes if k[0] == cid]:
            self.probes.pop(key).stop()

    def _gc_probes(self) -> None:
        live = {r.id for r in self.kl.cache.pod_records(self.uid) if r.running}
        for cid in {k[0] for k in self.probes} - live:
            self._stop_probes(cid)

    def _container_ready(self, rec: ContainerRecord) -> tuple[bool, bool | None]:
        """(ready, started) from the probes of a running container."""
        startup = self.probes.get((rec.id, STARTUP))
        started = None if startup is None else startup.result is True
        readiness = self.probes.get((rec.id, READINESS))
        if started is False:
            return False, False
        if readiness is None:
            return True, started
        return readiness.result is True, started

    # ---- killing -----------------------------------------------------------------------------------------------

    def _grace(self) -> int:
        return int((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)

    async def _run_hook(self, hook: dict[str, Any], c: dict[str, Any], cid: str, timeout: float) -> str | None:
        """None when the hook succeeded; otherwise what went wrong."""
        try:
            if "exec" in hook:
                cmd = list((hook["exec"] or {}).get("command") or [])
                code, out = await exec_sync(self.kl.engine, cid, cmd, timeout)
                if code != 0:
                    text = out.decode(errors="replace")
                    return (f"Exec lifecycle hook ({cmd}) for Container \"{c['name']}\" in Pod "
                            f"\"{_describe(self.pod)}\" failed - error: command '{' '.join(cmd)}' exited with "
                            f"{code}: {text}")
            elif "httpGet" in hook:
                h = hook["httpGet"]
                host = h.get("host") or (self.sandbox.ip if self.sandbox else "127.0.0.1")
                outcome = await http_get(host, resolve_port(h.get("port"), c), h.get("path") or "/",
                                         h.get("scheme") or "HTTP", h.get("httpHeaders") or [], timeout)
                if not outcome.ok:
                    return f"HTTP lifecycle hook ({h.get('path')}) for Container \"{c['name']}\" failed - error: " \
                           f"{outcome.message}"
            elif "sleep" in hook:
                await asyncio.sleep(min(float(hook["sleep"].get("seconds") or 0), timeout))
        except (errors.KapalError, TimeoutError, ValueError, OSError) as e:
            return f"lifecycle hook for Container \"{c['name']}\" failed: {e or 'timed out'}"
        return None

    def _spec_container(self, name: str) -> dict[str, Any] | None:
        spec = self.pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if c.get("name") == name:
                return c
        return None

    async def _kill(self, rec: ContainerRecord, grace: int, why: str, run_prestop: bool = True) -> None:
        started = time.monotonic()
        if run_prestop and rec.running:
            c = self._spec_container(rec.name)
            hook = ((c or {}).get("lifecycle") or {}).get("preStop")
            if hook is None and rec.labels.get(L_PRESTOP):
                with contextlib.suppress(ValueError):
                    hook = json.loads(rec.labels[L_PRESTOP])
            if hook:
                err = await self._run_hook(hook, c or {"name": rec.name}, rec.id, max(grace, MIN_KILL_GRACE))
                if err:
                    self.kl.event(self.pod, "Warning", "FailedPreStopHook", err)
        remaining = max(MIN_KILL_GRACE if grace > 0 else 0, int(grace - (time.monotonic() - started)))
        self._stop_probes(rec.id)
        if rec.running:
            try:
                await self.kl.engine.stop_container(rec.id, remaining)
            except errors.NotFound:
                pass
        await self.kl.cache.refresh(rec.id)
        log.info("pod %s: container %s stopped (%s)", self.key, rec.name, why)

    async def _kill_all(self, grace: int, why: str) -> None:
        recs = [r for r in self.kl.cache.pod_records(self.uid) if r.running]
        regular = [r for r in recs if r.kind != "init"]
        sidecars = [r for r in recs if r.kind == "init"]
        for group in (regular, sidecars):
            if group:
                for r in group:
                    self.kl.event(self.pod, "Normal", "Killing", f"Stopping container {r.name}")
                await asyncio.gather(*(self._kill(r, grace, why) for r in group))

    async def _finish_terminal(self) -> None:
        """A pod that ran to completion keeps its containers (for logs) but gives back its IP."""
        if self.terminal_cleaned:
            return
        running = [r for r in self.kl.cache.pod_records(self.uid) if r.running]
        if running:
            await self._kill_all(self._grace(), "pod is terminal")
        for key in list(self.probes):
            self.probes.pop(key).stop()
        if self.sandbox is not None and self.sandbox.network_ready:
            await asyncio.to_thread(self.kl.sandboxes.stop_network, self.sandbox)
        self.terminal_cleaned = True

    async def terminate(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self._grace()
        grace = min(int(grace), self._grace()) if self._grace() else int(grace)
        await self._kill_all(grace, "pod deleted")
        for key in list(self.probes):
            self.probes.pop(key).stop()
        for r in list(self.kl.cache.pod_records(self.uid)):
            await self._remove(r)
        await self.kl.cleanup_pod(self.uid, self.sandbox)
        if self.source == "api" and not self.removed:
            await self._report(force=True, final=True)
            await self.kl.delete_pod_object(self.pod)
        self.kl.images.forget(self.uid)
        self.kl.crash_backoff.forget_prefix(self.uid)
        log.info("pod %s: terminated and cleaned up", self.key)
        self.kl.worker_done(self)

    # ---- status ------------------------------------------------------------------------------------------------

    def _view(self, c: dict[str, Any], kind: str) -> ContainerView:
        recs = self.records(c["name"], kind)
        v = ContainerView(name=c["name"], image=c.get("image") or "", records=recs,
                          waiting=self.waiting.get(c["name"]), restartable=c.get("restartPolicy") == "Always")
        latest = recs[0] if recs else None
        if latest is not None:
            if latest.running:
                v.ready, v.started = self._container_ready(latest)
                if kind == "init" and not v.restartable:
                    v.ready = False
            elif latest.exited:
                v.termination_message = _read_termination_message(latest)
                if not self._should_restart(c, latest, kind) or self.is_terminal():
                    v.waiting = None
        return v

    async def _report(self, *, reason: str = "", message: str = "", phase: str | None = None, force: bool = False,
                      final: bool = False) -> None:
        spec = self.pod.get("spec") or {}
        inits = [self._view(c, "init") for c in spec.get("initContainers") or []]
        regular = [self._view(c, "regular") for c in spec.get("containers") or []]
        if final:
            for v in [*inits, *regular]:
                v.waiting = None
                v.ready = False
        sb = self.sandbox
        sandbox = SandboxView(ready=bool(sb and sb.network_ready),
                              ips=[sb.ip] if sb is not None and sb.ip and (sb.network_ready or self.is_terminal())
                              else [])
        status = pod_status(self.pod, inits, regular, sandbox, host_ip=self.kl.node_ip, qos=self.qos,
                            start_time=self.start_time, reason=reason, message=message)
        if phase:
            status["phase"] = phase
        if self.last_status is not None and self.last_status.get("phase") in ("Succeeded", "Failed") and \
                status["phase"] not in ("Succeeded", "Failed"):
            status["phase"] = self.last_status["phase"]  # terminal phases never go back
        if not force and not self.status_unsent and _same_status(status, self.last_status) and \
                time.monotonic() - self.status_sent_at < self.kl.config.node_status_report_frequency:
            return
        was_terminal = self.is_terminal()
        self.last_status = status
        self.status_unsent = not await self.kl.send_pod_status(self, status)
        if self.status_unsent:
            self.after(2.0)  # nowhere to write it yet (a static pod's mirror is still coming): try again
        else:
            self.status_sent_at = time.monotonic()
        if not was_terminal and self.is_terminal():
            self.wake()


def _strip_times(status: dict[str, Any] | None) -> str:
    if status is None:
        return ""
    s = json.loads(json.dumps(status))
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return json.dumps(s, sort_keys=True)


def _same_status(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    return _strip_times(a) == _strip_times(b)


def _read_termination_message(rec: ContainerRecord) -> str:
    path = rec.labels.get(L_TERMINATION_FILE)
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            return f.read(TERMINATION_MESSAGE_MAX).decode(errors="replace")
    except OSError:
        return ""
