"""`Resources`: the limits a cgroup manager applies, converted once from OCI `linux.resources`.

A plain class with __slots__ rather than a dataclass: this module is on the
runtime's start path, and `import dataclasses` costs ~17 ms there.
"""

from __future__ import annotations

from kapal.errors import Invalid
from kapal.linux.devices import DeviceRule


class Throttle:
    """One blkio/io rate: device major:minor and a rate (bytes or operations per second)."""

    __slots__ = ("major", "minor", "rate")

    def __init__(self, major: int, minor: int, rate: int) -> None:
        self.major = major
        self.minor = minor
        self.rate = rate

    def __repr__(self) -> str:
        return f"Throttle({self.major}:{self.minor} {self.rate})"


def _throttles(items: list[dict] | None, key: str = "rate") -> list[Throttle]:
    out = []
    for item in items or ():
        try:
            out.append(Throttle(int(item["major"]), int(item["minor"]), int(item[key])))
        except (KeyError, TypeError, ValueError) as e:
            raise Invalid(f"blockIO device entry {item!r}: needs major, minor and {key}") from e
    return out


class Resources:
    """Limits in kernel units. None means "leave as it is"."""

    __slots__ = (
        "cpu_shares",
        "cpu_quota",
        "cpu_period",
        "cpu_burst",
        "cpu_realtime_runtime",
        "cpu_realtime_period",
        "cpu_idle",
        "cpuset_cpus",
        "cpuset_mems",
        "memory_limit",
        "memory_reservation",
        "memory_swap",
        "memory_swappiness",
        "memory_disable_oom_killer",
        "memory_kernel",
        "memory_kernel_tcp",
        "pids_limit",
        "blkio_weight",
        "blkio_leaf_weight",
        "blkio_weight_device",
        "blkio_read_bps",
        "blkio_write_bps",
        "blkio_read_iops",
        "blkio_write_iops",
        "devices",
        "hugepage_limits",
        "network_class_id",
        "network_priorities",
        "rdma",
        "unified",
    )

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            setattr(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)

    @classmethod
    def from_oci(cls, res: dict | None) -> Resources:
        r = cls()
        if not res:
            return r
        cpu = res.get("cpu") or {}
        r.cpu_shares = cpu.get("shares")
        r.cpu_quota = cpu.get("quota")
        r.cpu_period = cpu.get("period")
        r.cpu_burst = cpu.get("burst")
        r.cpu_realtime_runtime = cpu.get("realtimeRuntime")
        r.cpu_realtime_period = cpu.get("realtimePeriod")
        r.cpu_idle = cpu.get("idle")
        r.cpuset_cpus = cpu.get("cpus") or None
        r.cpuset_mems = cpu.get("mems") or None
        mem = res.get("memory") or {}
        r.memory_limit = mem.get("limit")
        r.memory_reservation = mem.get("reservation")
        r.memory_swap = mem.get("swap")
        r.memory_swappiness = mem.get("swappiness")
        r.memory_disable_oom_killer = mem.get("disableOOMKiller")
        r.memory_kernel = mem.get("kernel")
        r.memory_kernel_tcp = mem.get("kernelTCP")
        pids = res.get("pids")
        if pids:
            r.pids_limit = pids.get("limit")
        blk = res.get("blockIO") or {}
        r.blkio_weight = blk.get("weight")
        r.blkio_leaf_weight = blk.get("leafWeight")
        if blk.get("weightDevice"):
            r.blkio_weight_device = _throttles(blk["weightDevice"], "weight")
        r.blkio_read_bps = _throttles(blk.get("throttleReadBpsDevice")) or None
        r.blkio_write_bps = _throttles(blk.get("throttleWriteBpsDevice")) or None
        r.blkio_read_iops = _throttles(blk.get("throttleReadIOPSDevice")) or None
        r.blkio_write_iops = _throttles(blk.get("throttleWriteIOPSDevice")) or None
        if res.get("devices") is not None:
            r.devices = [DeviceRule.from_oci(d) for d in res["devices"]]
        if res.get("hugepageLimits"):
            r.hugepage_limits = {h["pageSize"]: h["limit"] for h in res["hugepageLimits"]}
        net = res.get("network") or {}
        r.network_class_id = net.get("classID")
        r.network_priorities = net.get("priorities") or None
        r.rdma = res.get("rdma") or None
        r.unified = res.get("unified") or None
        return r

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__ if getattr(self, n) is not None)
        return f"Resources({fields})"
