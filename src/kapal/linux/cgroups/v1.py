"""cgroup v1: one directory per mounted hierarchy (cpu, cpuacct, memory, pids, freezer...).

`cpu` and `cpuacct` may be separate hierarchies (as on these machines) or
co-mounted as `cpu,cpuacct` (most distributions); both keys then point at the
same directory. On a hybrid host the process also joins the empty cgroup2
tree (`unified`) and `name=systemd`, as runc does, so tools that read
/proc/PID/cgroup see one consistent path. See `manager.py` for the verbs.
"""

from __future__ import annotations

import errno
import os
import time

from kapal.errors import Invalid, Temporary, Unsupported
from kapal.linux.cgroups import common
from kapal.linux.cgroups.resources import Resources
from kapal.linux.devices import DEFAULT_RULES

# Hierarchies whose directory can tell which tasks are in the container, best first.
_TASK_SOURCES = ("pids", "freezer", "devices", "memory", "cpu", "cpuacct", "cpuset", "blkio", "name=systemd")


class CgroupV1Manager:
    version = 1

    def __init__(self, dirs: dict[str, str]) -> None:
        self._dirs = dict(dirs)

    @classmethod
    def for_path(cls, cgroups_path: str, hierarchies: dict[str, tuple[str, str]] | None = None) -> CgroupV1Manager:
        """The manager of `cgroups_path` (absolute, or relative to the caller's own cgroups).

        `hierarchies` maps subsystem -> (mountpoint, mount root); default: this host's mounts.
        """
        common.check_path(cgroups_path)
        if hierarchies is None:
            hierarchies = common.v1_hierarchies()
        own = common.own_cgroups() if not cgroups_path.startswith("/") else {}
        dirs = {}
        for subsystem, (mountpoint, root) in hierarchies.items():
            if cgroups_path.startswith("/"):
                rel = cgroups_path
            else:
                base = own.get(subsystem, "/")
                if root != "/" and base.startswith(root):
                    base = base[len(root) :] or "/"
                rel = base.rstrip("/") + "/" + cgroups_path
            dirs[subsystem] = mountpoint + "/" + rel.strip("/")
        return cls(dirs)

    @classmethod
    def from_paths(cls, paths: dict[str, str]) -> CgroupV1Manager:
        return cls(paths)

    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    def path(self, subsystem: str) -> str | None:
        return self._dirs.get(subsystem)

    def _unique_dirs(self) -> list[str]:
        seen: list[str] = []
        for d in self._dirs.values():
            if d not in seen:
                seen.append(d)
        return seen

    def create(self) -> None:
        for subsystem, d in self._dirs.items():
            if subsystem == "cpuset":
                _make_cpuset(d)
            else:
                os.makedirs(d, exist_ok=True)

    def apply(self, pid: int, skip_self_movable: bool = False) -> None:
        data = str(pid).encode()
        for d in self._unique_dirs():
            if not (skip_self_movable and d not in self._cgroup2_dirs()):
                common.write(d, "cgroup.procs", data)

    def self_move_files(self) -> list[str]:
        """Each v1 hierarchy's `tasks`: a thread that writes b"0" there moves itself without the global
        migration lock (the cgroup2 tree of a hybrid host has no such file)."""
        cgroup2 = self._cgroup2_dirs()
        return [d + "/tasks" for d in self._unique_dirs() if d not in cgroup2]

    def cgroup2_dir(self) -> str | None:
        return self._dirs.get("unified")

    def _cgroup2_dirs(self) -> tuple[str, ...]:
        d = self._dirs.get("unified")
        return (d,) if d is not None else ()

    def set(self, r: Resources) -> None:
        self._check_supported(r)
        d = self._dirs
        if "cpuset" in d:
            if r.cpuset_cpus is not None:
                common.write(d["cpuset"], "cpuset.cpus", r.cpuset_cpus)
            if r.cpuset_mems is not None:
                common.write(d["cpuset"], "cpuset.mems", r.cpuset_mems)
        elif r.cpuset_cpus is not None or r.cpuset_mems is not None:
            raise Unsupported("cpu.cpus/cpu.mems: the cpuset cgroup controller is not mounted on this host")
        self._set_cpu(r)
        self._set_memory(r)
        if r.pids_limit is not None:
            self._need("pids", "pids.limit")
            common.write(d["pids"], "pids.max", str(r.pids_limit) if r.pids_limit > 0 else "max")
        self._set_blkio(r)
        if r.devices is not None:
            self._need("devices", "devices")
            for rule in [*r.devices, *DEFAULT_RULES]:
                common.write(d["devices"], "devices.allow" if rule.allow else "devices.deny", rule.cgroup_v1())
        if r.hugepage_limits:
            self._need("hugetlb", "hugepageLimits")
            for size, limit in r.hugepage_limits.items():
                common.write(d["hugetlb"], f"hugetlb.{size}.limit_in_bytes", str(limit))
        if r.network_class_id is not None:
            self._need("net_cls", "network.classID")
            common.write(d["net_cls"], "net_cls.classid", str(r.network_class_id))
        if r.network_priorities:
            self._need("net_prio", "network.priorities")
            for prio in r.network_priorities:
                common.write(d["net_prio"], "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")

    def _need(self, subsystem: str, option: str) -> None:
        if subsystem not in self._dirs:
            raise Unsupported(f"{option}: the {subsystem} cgroup controller is not mounted on this host")

    def _check_supported(self, r: Resources) -> None:
        if r.unified:
            raise Unsupported("linux.resources.unified needs cgroup v2; this host runs cgroup v1")
        if r.rdma:
            raise Unsupported("linux.resources.rdma is not supported by kapal-runtime")
        if r.memory_kernel is not None or r.memory_kernel_tcp is not None:
            raise Unsupported("memory.kernel and memory.kernelTCP limits are deprecated and not supported")

    def _set_cpu(self, r: Resources) -> None:
        wanted = (r.cpu_shares, r.cpu_quota, r.cpu_period, r.cpu_burst, r.cpu_realtime_runtime)
        if all(v is None for v in (*wanted, r.cpu_realtime_period, r.cpu_idle)):
            return
        self._need("cpu", "cpu")
        cpu = self._dirs["cpu"]
        if r.cpu_shares is not None:
            common.write(cpu, "cpu.shares", str(r.cpu_shares))
        pairs = []
        if r.cpu_period is not None:
            pairs.append(("cpu.cfs_period_us", str(r.cpu_period)))
        if r.cpu_quota is not None:
            pairs.append(("cpu.cfs_quota_us", str(r.cpu_quota)))
        common.write_in_some_order(cpu, pairs)
        if r.cpu_burst is not None:
            common.write(cpu, "cpu.cfs_burst_us", str(r.cpu_burst))
        rt = []
        if r.cpu_realtime_period is not None:
            rt.append(("cpu.rt_period_us", str(r.cpu_realtime_period)))
        if r.cpu_realtime_runtime is not None:
            rt.append(("cpu.rt_runtime_us", str(r.cpu_realtime_runtime)))
        common.write_in_some_order(cpu, rt)
        if r.cpu_idle is not None:
            common.write(cpu, "cpu.idle", str(r.cpu_idle))

    def _set_memory(self, r: Resources) -> None:
        if all(
            v is None
            for v in (
                r.memory_limit,
                r.memory_swap,
                r.memory_reservation,
                r.memory_swappiness,
                r.memory_disable_oom_killer,
            )
        ):
            return
        self._need("memory", "memory")
        mem = self._dirs["memory"]
        pairs = []
        if r.memory_limit is not None:
            pairs.append(("memory.limit_in_bytes", str(r.memory_limit)))
        if r.memory_swap is not None:
            if not os.path.exists(mem + "/memory.memsw.limit_in_bytes"):
                if r.memory_swap not in (-1, r.memory_limit):
                    raise Unsupported("memory.swap needs swap accounting in the kernel (boot with swapaccount=1)")
            else:
                pairs.append(("memory.memsw.limit_in_bytes", str(r.memory_swap)))
        common.write_in_some_order(mem, pairs)
        if r.memory_reservation is not None:
            common.write(mem, "memory.soft_limit_in_bytes", str(r.memory_reservation))
        if r.memory_swappiness is not None:
            if not 0 <= r.memory_swappiness <= 100:
                raise Invalid(f"memory.swappiness {r.memory_swappiness}: want 0-100")
            common.write(mem, "memory.swappiness", str(r.memory_swappiness))
        if r.memory_disable_oom_killer:
            common.write(mem, "memory.oom_control", "1")

    def _set_blkio(self, r: Resources) -> None:
        throttles = (
            ("blkio.throttle.read_bps_device", r.blkio_read_bps),
            ("blkio.throttle.write_bps_device", r.blkio_write_bps),
            ("blkio.throttle.read_iops_device", r.blkio_read_iops),
            ("blkio.throttle.write_iops_device", r.blkio_write_iops),
        )
        wanted = [r.blkio_weight, r.blkio_leaf_weight, r.blkio_weight_device, *(t for _, t in throttles)]
        if all(v is None for v in wanted):
            return
        self._need("blkio", "blockIO")
        blk = self._dirs["blkio"]
        if r.blkio_weight is not None:
            common.write(blk, _first_existing(blk, "blkio.weight", "blkio.bfq.weight", what="blockIO.weight"),
                         str(r.blkio_weight))
        if r.blkio_leaf_weight is not None:
            common.write(blk, _first_existing(blk, "blkio.leaf_weight", what="blockIO.leafWeight"),
                         str(r.blkio_leaf_weight))
        if r.blkio_weight_device:
            name = _first_existing(blk, "blkio.weight_device", "blkio.bfq.weight_device", what="blockIO.weightDevice")
            for t in r.blkio_weight_device:
                common.write(blk, name, f"{t.major}:{t.minor} {t.rate}")
        for name, items in throttles:
            for t in items or ():
                common.write(blk, name, f"{t.major}:{t.minor} {t.rate}")

    def freeze(self) -> None:
        self._need("freezer", "pause")
        d = self._dirs["freezer"]
        deadline = time.monotonic() + 10
        delay = 0.0005
        while True:
            common.write(d, "freezer.state", "FROZEN")
            state = common.read(d, "freezer.state").strip()
            if state == "FROZEN":
                return
            if time.monotonic() > deadline:
                common.write(d, "freezer.state", "THAWED")
                raise Temporary(f"cgroup {d} did not freeze within 10 s; thawed it again")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def thaw(self) -> None:
        self._need("freezer", "resume")
        common.write(self._dirs["freezer"], "freezer.state", "THAWED")

    def frozen(self) -> bool:
        d = self._dirs.get("freezer")
        if d is None:
            return False
        try:
            return common.read(d, "freezer.state").strip() != "THAWED"
        except FileNotFoundError:
            return False

    def pids(self) -> list[int]:
        for subsystem in _TASK_SOURCES:
            d = self._dirs.get(subsystem)
            if d is not None:
                try:
                    return [int(p) for p in common.read(d, "cgroup.procs").split()]
                except FileNotFoundError:
                    return []
        return []

    def signal(self, sig: int) -> None:
        common.signal_all(self.pids(), sig)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        d = self._dirs
        common.read_int_into(out, "cpu_usage_ns", d.get("cpuacct"), "cpuacct.usage")
        common.read_int_into(out, "memory_usage", d.get("memory"), "memory.usage_in_bytes")
        common.read_int_into(out, "memory_max_usage", d.get("memory"), "memory.max_usage_in_bytes")
        common.read_int_into(out, "memory_limit", d.get("memory"), "memory.limit_in_bytes")
        common.read_int_into(out, "memory_failcnt", d.get("memory"), "memory.failcnt")
        common.read_int_into(out, "pids_current", d.get("pids"), "pids.current")
        if d.get("memory"):
            try:
                text = common.read(d["memory"], "memory.oom_control")
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        out["oom_kills"] = int(value)
            except OSError:
                pass
        return out

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs.values())

    def destroy(self) -> None:
        for d in self._unique_dirs():
            common.remove_dir(d)


def _first_existing(directory: str, *names: str, what: str) -> str:
    for name in names:
        if os.path.exists(directory + "/" + name):
            return name
    raise Unsupported(f"{what}: none of {', '.join(names)} exists (the I/O scheduler lacks weights)")


def _make_cpuset(path: str) -> None:
    """mkdir -p, seeding each new level's cpus/mems from its parent (new cpusets start empty)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _make_cpuset(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            if not common.read(path, name).strip():
                common.write(path, name, common.read(parent, name).strip() or "\n")
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
