"""The kubepods cgroup tree: one cgroup per pod under its QoS class, the engine's containers inside it.

    <cgroup-root>/kubepods/pod<uid>               Guaranteed pods
    <cgroup-root>/kubepods/burstable/pod<uid>     Burstable pods
    <cgroup-root>/kubepods/besteffort/pod<uid>    BestEffort pods (the besteffort parent has cpu.shares 2)

The kubelet creates a pod's cgroup with the pod-level limits before its first container and hands its
absolute path to the engine as HostConfig.CgroupParent; the engine creates `<parent>/<container id>`.
Everything here is cgroupfs (the "cgroupfs" driver); v1 and v2 through kapal.linux.cgroups.
"""

from __future__ import annotations

import logging
import os
import posixpath
import signal
import time

from kapal.errors import KapalError, Temporary
from kapal.linux.cgroups import manager_for
from kapal.linux.cgroups.resources import Resources

from .qos import BEST_EFFORT, BURSTABLE, GUARANTEED, MIN_SHARES, CgroupResources, pod_cgroup_parent

log = logging.getLogger(__name__)

_QOS_DIRS = {GUARANTEED: "kubepods", BURSTABLE: "kubepods/burstable", BEST_EFFORT: "kubepods/besteffort"}


def _resources(res: CgroupResources) -> Resources:
    return Resources(cpu_shares=res.cpu_shares, cpu_quota=res.cpu_quota, cpu_period=res.cpu_period if res.cpu_quota
                     else None, memory_limit=res.memory_limit)


class PodCgroups:
    def __init__(self, cgroup_root: str = "/") -> None:
        self.root = "/" + cgroup_root.strip("/")

    def path(self, relative: str) -> str:
        return posixpath.join(self.root, relative)

    def setup(self) -> None:
        """kubepods and its two QoS children (idempotent)."""
        for qos in (GUARANTEED, BURSTABLE, BEST_EFFORT):
            m = manager_for(self.path(_QOS_DIRS[qos]))
            m.create()
        manager_for(self.path(_QOS_DIRS[BEST_EFFORT])).set(Resources(cpu_shares=MIN_SHARES))

    def ensure(self, qos: str, uid: str, res: CgroupResources) -> str:
        """The pod's cgroup with its limits; its absolute path (the engine's CgroupParent)."""
        path = self.path(pod_cgroup_parent(qos, uid))
        m = manager_for(path)
        m.create()
        m.set(_resources(res))
        return path

    def find(self, uid: str) -> str | None:
        for qos in (GUARANTEED, BURSTABLE, BEST_EFFORT):
            path = self.path(pod_cgroup_parent(qos, uid))
            if manager_for(path).exists():
                return path
        return None

    def destroy(self, uid: str) -> None:
        """Remove the pod's cgroup; stray processes in it (a container the engine lost) are killed first."""
        path = self.find(uid)
        if path is None:
            return
        m = manager_for(path)
        for child in self._children(path):
            self._destroy_tree(posixpath.join(path, child))
        self._destroy_tree(path, m)

    def _destroy_tree(self, path: str, m=None) -> None:  # type: ignore[no-untyped-def]
        m = m or manager_for(path)
        for child in self._children(path):
            self._destroy_tree(posixpath.join(path, child))
        deadline = time.monotonic() + 5
        while m.pids() and time.monotonic() < deadline:
            m.signal(signal.SIGKILL)
            time.sleep(0.02)
        try:
            m.destroy()
        except (KapalError, OSError) as e:
            raise Temporary(f"cannot remove cgroup {path} yet: {e}") from e

    def _children(self, path: str) -> list[str]:
        d = self._memory_dir(path)
        if d is None:
            return []
        try:
            return [e.name for e in os.scandir(d) if e.is_dir()]
        except FileNotFoundError:
            return []

    def _memory_dir(self, path: str) -> str | None:
        paths = manager_for(path).paths()
        for key in ("memory", "pids", "cpu", ""):
            if key in paths:
                return paths[key]
        return next(iter(paths.values()), None)

    def pods(self) -> dict[str, str]:
        """uid -> absolute path of every pod cgroup present (for cleaning up after a crash)."""
        out = {}
        for qos in (GUARANTEED, BURSTABLE, BEST_EFFORT):
            parent = self.path(_QOS_DIRS[qos])
            for name in self._children(parent):
                if name.startswith("pod"):
                    out[name[3:]] = posixpath.join(parent, name)
        return out

    def teardown(self) -> None:
        """Remove the kubepods tree once it holds no pod cgroups (kapal down); other kubelets' pods stay."""
        for qos in (BURSTABLE, BEST_EFFORT, GUARANTEED):
            path = self.path(_QOS_DIRS[qos])
            m = manager_for(path)
            if m.exists() and not [c for c in self._children(path) if c.startswith("pod")] and not m.pids():
                try:
                    m.destroy()
                except (KapalError, OSError) as e:
                    log.info("kubepods cgroup %s stays: %s", path, e)
