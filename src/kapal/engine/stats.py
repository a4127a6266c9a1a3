"""A container's usage from its cgroups (v1, as these hosts run) in Docker's stats shape, and `top`.

The docker CLI computes CPU % from two samples (cpu_stats and precpu_stats: the container's and the
whole system's CPU time), memory as usage minus inactive file cache, and sums the network counters.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from kapal.errors import FailedPrecondition, Invalid

CGROUP_ROOT = Path("/sys/fs/cgroup")
_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text()
    except OSError:
        return default


def _int(path: Path, default: int = 0) -> int:
    text = _read(path).strip()
    try:
        return int(text)
    except ValueError:
        return default


def _controller(name: str) -> Path:
    """A v1 controller's mount: cpuacct may be on its own or co-mounted as cpu,cpuacct."""
    for candidate in (name, "cpu,cpuacct", "cpuacct,cpu"):
        path = CGROUP_ROOT / candidate
        if path.is_dir():
            return path
    return CGROUP_ROOT / name


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def system_cpu_usage() -> int:
    """All CPUs' busy and idle time since boot, in ns (the denominator of the CLI's CPU %)."""
    for line in _read(Path("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(v) for v in line.split()[1:8])
            return ticks * 1_000_000_000 // _TICKS
    return 0


def _host_memory() -> int:
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _network(pid: int) -> dict:
    out = {}
    if not pid:
        return out
    for line in _read(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo" or not rest:
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {
            "rx_bytes": v[0],
            "rx_packets": v[1],
            "rx_errors": v[2],
            "rx_dropped": v[3],
            "tx_bytes": v[8],
            "tx_packets": v[9],
            "tx_errors": v[10],
            "tx_dropped": v[11],
        }
    return out


def _blkio(path: Path) -> list[dict]:
    out = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def cpu_sample(cgroup: str) -> dict:
    acct = _controller("cpuacct") / cgroup.lstrip("/")
    cpu = _controller("cpu") / cgroup.lstrip("/")
    percpu = [int(x) for x in _read(acct / "cpuacct.usage_percpu").split()]
    modes = _kv(_read(acct / "cpuacct.stat"))
    throttle = _kv(_read(cpu / "cpu.stat"))
    return {
        "cpu_usage": {
            "total_usage": _int(acct / "cpuacct.usage"),
            "percpu_usage": percpu,
            "usage_in_kernelmode": modes.get("system", 0) * 1_000_000_000 // _TICKS,
            "usage_in_usermode": modes.get("user", 0) * 1_000_000_000 // _TICKS,
        },
        "system_cpu_usage": system_cpu_usage(),
        "online_cpus": len(percpu) or os.cpu_count() or 1,
        "throttling_data": {
            "periods": throttle.get("nr_periods", 0),
            "throttled_periods": throttle.get("nr_throttled", 0),
            "throttled_time": throttle.get("throttled_time", 0),
        },
    }


def _now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def sample(cgroup: str, pid: int, previous: dict | None = None) -> dict:
    """One stats message; `previous` (the last message) supplies precpu_stats and preread."""
    mem = _controller("memory") / cgroup.lstrip("/")
    limit = _int(mem / "memory.limit_in_bytes")
    host = _host_memory()
    pids = _controller("pids") / cgroup.lstrip("/")
    pids_max = _read(pids / "pids.max").strip()
    blkio = _controller("blkio") / cgroup.lstrip("/")
    stats = {
        "read": _now(),
        "preread": previous["read"] if previous else "0001-01-01T00:00:00Z",
        "pids_stats": {
            "current": _int(pids / "pids.current"),
            **({"limit": int(pids_max)} if pids_max.isdigit() else {}),
        },
        "blkio_stats": {
            "io_service_bytes_recursive": _blkio(blkio / "blkio.throttle.io_service_bytes_recursive"),
            "io_serviced_recursive": _blkio(blkio / "blkio.throttle.io_serviced_recursive"),
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_sample(cgroup),
        "precpu_stats": previous["cpu_stats"] if previous else {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {
            "usage": _int(mem / "memory.usage_in_bytes"),
            "max_usage": _int(mem / "memory.max_usage_in_bytes"),
            "stats": _kv(_read(mem / "memory.stat")),
            "failcnt": _int(mem / "memory.failcnt"),
            "limit": min(limit, host) if limit and host else limit or host,
        },
        "networks": _network(pid),
    }
    return stats


def cgroup_pids(cgroup: str) -> set[int]:
    for controller in ("pids", "memory", "cpu", "freezer"):
        path = _controller(controller) / cgroup.lstrip("/") / "cgroup.procs"
        text = _read(path)
        if text:
            return {int(p) for p in text.split()}
    return set()


def top(cgroup: str, ps_args: str = "-ef") -> dict:
    """`ps ps_args` on the host, keeping the rows of the container's processes (as dockerd does)."""
    pids = cgroup_pids(cgroup)
    if not pids:
        raise FailedPrecondition("the container has no processes (is it running?)")
    import shlex

    args = shlex.split(ps_args) if ps_args else ["-ef"]
    proc = subprocess.run(["ps", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Invalid(f"Error running ps: {proc.stderr.strip() or proc.stdout.strip()}")
    lines = proc.stdout.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise Invalid(f"Couldn't find PID field in ps output (ps {ps_args})")
    index = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= index or not fields[index].isdigit():
            continue
        if int(fields[index]) in pids:
            processes.append(fields)
    return {"Titles": titles, "Processes": processes}
