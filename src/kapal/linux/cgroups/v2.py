"""cgroup v2: one directory in the unified tree; limits in the v2 files and units.

OCI resources are written in v1 terms; the conversions follow the kernel's
documentation and runc's (cpu shares -> cpu.weight, blkio weight ->
io.weight, memory.swap = memory+swap -> memory.swap.max = swap only).
Freezing uses cgroup.freeze and waits for `frozen 1` in cgroup.events;
SIGKILL to everything uses cgroup.kill (Linux 5.14+); device rules become an
eBPF program (devicefilter.py). See `manager.py`.
"""

from __future__ import annotations

import os
import time

from kapal.errors import Invalid, Temporary, Unsupported
from kapal.linux.cgroups import common
from kapal.linux.cgroups.resources import Resources

SIGKILL = 9


def cpu_weight(shares: int) -> int:
    """cpu.shares (2-262144) -> cpu.weight (1-10000)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight: int) -> int:
    """blkio.weight (10-1000) -> io.weight (1-10000)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_max(limit: int | None, swap: int) -> str | None:
    """OCI memory.swap (memory + swap) -> memory.swap.max (swap alone)."""
    if swap == -1:
        return "max"
    if swap == 0:
        return None
    if limit is None or limit in (0, -1):
        raise Invalid("memory.swap needs a memory.limit on cgroup v2")
    if swap < limit:
        raise Invalid(f"memory.swap {swap} must be at least memory.limit {limit} (it counts memory plus swap)")
    return str(swap - limit)


def _max(value: int) -> str:
    return "max" if value is None or value < 0 else str(value)


class CgroupV2Manager:
    version = 2

    def __init__(self, path: str, mountpoint: str = "/sys/fs/cgroup") -> None:
        self._path = path
        self._mountpoint = mountpoint

    @classmethod
    def for_path(cls, cgroups_path: str, mountpoint: str = "/sys/fs/cgroup") -> CgroupV2Manager:
        common.check_path(cgroups_path)
        if cgroups_path.startswith("/"):
            rel = cgroups_path
        else:
            own = common.own_cgroups().get("unified", "/")
            rel = own.rstrip("/") + "/" + cgroups_path
        return cls(mountpoint + "/" + rel.strip("/"), mountpoint)

    @classmethod
    def from_paths(cls, paths: dict[str, str]) -> CgroupV2Manager:
        return cls(paths["unified"], paths.get("mountpoint", "/sys/fs/cgroup"))

    def paths(self) -> dict[str, str]:
        return {"unified": self._path, "mountpoint": self._mountpoint}

    def path(self) -> str:
        return self._path

    def create(self) -> None:
        os.makedirs(self._path, exist_ok=True)
        self._enable_controllers()

    def _enable_controllers(self) -> None:
        """Delegate every available controller down to the container's parent, as runc does."""
        rel = self._path[len(self._mountpoint) :].strip("/").split("/")
        current = self._mountpoint
        for name in rel[:-1] if rel != [""] else []:
            try:
                available = common.read(current, "cgroup.controllers").split()
            except OSError:
                available = []
            if available:
                try:
                    common.write(current, "cgroup.subtree_control", " ".join("+" + c for c in available))
                except (OSError, Invalid, Unsupported):
                    pass  # a populated cgroup cannot delegate; limits that need it will say so
            current = current + "/" + name

    def apply(self, pid: int, skip_self_movable: bool = False) -> None:
        common.write(self._path, "cgroup.procs", str(pid))

    def self_move_files(self) -> list[str]:
        return []  # cgroup.threads moves a thread only within its own domain

    def cgroup2_dir(self) -> str | None:
        return self._path

    def set(self, r: Resources) -> None:
        p = self._path
        if r.rdma:
            raise Unsupported("linux.resources.rdma is not supported by kapal-runtime")
        if r.memory_kernel is not None or r.memory_kernel_tcp is not None:
            raise Unsupported("memory.kernel and memory.kernelTCP do not exist on cgroup v2")
        if r.network_class_id is not None or r.network_priorities:
            raise Unsupported("network.classID/priorities (net_cls, net_prio) do not exist on cgroup v2")
        if r.memory_swappiness is not None:
            raise Unsupported("memory.swappiness does not exist on cgroup v2")
        if r.memory_disable_oom_killer:
            raise Unsupported("memory.disableOOMKiller does not exist on cgroup v2")
        if r.cpu_realtime_runtime is not None or r.cpu_realtime_period is not None:
            raise Unsupported("cpu.realtimeRuntime/realtimePeriod do not exist on cgroup v2")
        if r.blkio_leaf_weight is not None:
            raise Unsupported("blockIO.leafWeight does not exist on cgroup v2")
        if r.cpu_shares is not None:
            common.write(p, "cpu.weight", str(cpu_weight(r.cpu_shares)))
        if r.cpu_quota is not None or r.cpu_period is not None:
            quota, period = r.cpu_quota, r.cpu_period
            if quota is None or period is None:
                current = common.read(p, "cpu.max").split()
                quota = quota if quota is not None else (-1 if current[0] == "max" else int(current[0]))
                period = period if period is not None else int(current[1])
            common.write(p, "cpu.max", f"{_max(quota)} {period}")
        if r.cpu_burst is not None:
            common.write(p, "cpu.max.burst", str(r.cpu_burst))
        if r.cpu_idle is not None:
            common.write(p, "cpu.idle", str(r.cpu_idle))
        if r.cpuset_cpus is not None:
            common.write(p, "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            common.write(p, "cpuset.mems", r.cpuset_mems)
        if r.memory_limit is not None:
            common.write(p, "memory.max", _max(r.memory_limit))
        if r.memory_swap is not None:
            value = swap_max(r.memory_limit, r.memory_swap)
            if value is not None:
                common.write(p, "memory.swap.max", value)
        if r.memory_reservation is not None:
            common.write(p, "memory.low", _max(r.memory_reservation))
        if r.pids_limit is not None:
            common.write(p, "pids.max", str(r.pids_limit) if r.pids_limit > 0 else "max")
        self._set_io(r)
        if r.hugepage_limits:
            for size, limit in r.hugepage_limits.items():
                common.write(p, f"hugetlb.{size}.max", _max(limit))
        if r.devices is not None:
            from kapal.linux.cgroups import devicefilter
            from kapal.linux.devices import DEFAULT_RULES

            devicefilter.apply(p, [*r.devices, *DEFAULT_RULES])
        for key, value in (r.unified or {}).items():
            if "/" in key or key.startswith("."):
                raise Invalid(f"linux.resources.unified key {key!r}: want a file name such as memory.high")
            common.write(p, key, value)

    def _set_io(self, r: Resources) -> None:
        p = self._path
        if r.blkio_weight is not None:
            if os.path.exists(p + "/io.bfq.weight"):
                common.write(p, "io.bfq.weight", str(r.blkio_weight))
            else:
                common.write(p, "io.weight", str(io_weight(r.blkio_weight)))
        for t in r.blkio_weight_device or ():
            common.write(p, "io.weight", f"{t.major}:{t.minor} {io_weight(t.rate)}")
        for key, items in (
            ("rbps", r.blkio_read_bps),
            ("wbps", r.blkio_write_bps),
            ("riops", r.blkio_read_iops),
            ("wiops", r.blkio_write_iops),
        ):
            for t in items or ():
                common.write(p, "io.max", f"{t.major}:{t.minor} {key}={t.rate}")

    def freeze(self) -> None:
        common.write(self._path, "cgroup.freeze", "1")
        deadline = time.monotonic() + 10
        delay = 0.0005
        while not self._events().get("frozen") == "1":
            if time.monotonic() > deadline:
                common.write(self._path, "cgroup.freeze", "0")
                raise Temporary(f"cgroup {self._path} did not freeze within 10 s; thawed it again")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _events(self) -> dict[str, str]:
        out = {}
        for line in common.read(self._path, "cgroup.events").splitlines():
            key, _, value = line.partition(" ")
            out[key] = value
        return out

    def thaw(self) -> None:
        common.write(self._path, "cgroup.freeze", "0")

    def frozen(self) -> bool:
        try:
            return common.read(self._path, "cgroup.freeze").strip() == "1"
        except FileNotFoundError:
            return False

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in common.read(self._path, "cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def signal(self, sig: int) -> None:
        if sig == SIGKILL and os.path.exists(self._path + "/cgroup.kill"):
            common.write(self._path, "cgroup.kill", "1")
            return
        common.signal_all(self.pids(), sig)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            for line in common.read(self._path, "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    out["cpu_usage_ns"] = int(value) * 1000
        except OSError:
            pass
        common.read_int_into(out, "memory_usage", self._path, "memory.current")
        common.read_int_into(out, "memory_max_usage", self._path, "memory.peak")
        common.read_int_into(out, "pids_current", self._path, "pids.current")
        try:
            limit = common.read(self._path, "memory.max").strip()
            if limit != "max":
                out["memory_limit"] = int(limit)
            for line in common.read(self._path, "memory.events").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    out["oom_kills"] = int(value)
        except OSError:
            pass
        return out

    def exists(self) -> bool:
        return os.path.isdir(self._path)

    def destroy(self) -> None:
        common.remove_dir(self._path)
