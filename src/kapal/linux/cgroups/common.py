"""File plumbing both cgroup versions share: discovery, reads and writes with useful errors."""

from __future__ import annotations

import errno
import os
import time

from kapal.errors import FailedPrecondition, Invalid, Unsupported
from kapal.linux.mount import MountInfo, mountinfo

V1_SUBSYSTEMS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "hugetlb",
        "net_cls",
        "net_prio",
        "perf_event",
        "rdma",
        "misc",
    }
)


def check_path(cgroups_path: str) -> None:
    if not cgroups_path or any(part == ".." for part in cgroups_path.split("/")):
        raise Invalid(f"cgroupsPath {cgroups_path!r}: want a path without '..'")
    if ":" in cgroups_path:
        raise Unsupported(
            f"cgroupsPath {cgroups_path!r} looks like a systemd slice:prefix:name; "
            "kapal-runtime manages cgroupfs paths only (there is no systemd here)"
        )


def v1_hierarchies(mounts: list[MountInfo] | None = None) -> dict[str, tuple[str, str]]:
    """subsystem -> (mountpoint, mount root) for each v1 hierarchy, plus `unified` on a hybrid host."""
    out: dict[str, tuple[str, str]] = {}
    for m in mounts if mounts is not None else mountinfo():
        if m.fstype == "cgroup":
            for opt in m.super.split(","):
                if opt in V1_SUBSYSTEMS or opt.startswith("name="):
                    out.setdefault(opt, (m.mountpoint, m.root))
        elif m.fstype == "cgroup2" and m.mountpoint.startswith("/sys/fs/cgroup/"):
            out.setdefault("unified", (m.mountpoint, m.root))
    return out


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """subsystem -> path from /proc/PID/cgroup (`unified` for the v2 line)."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            if not controllers:
                out["unified"] = path
            for c in controllers.split(","):
                if c:
                    out[c] = path
    return out


def write(directory: str, name: str, value: str | bytes) -> None:
    path = directory + "/" + name
    data = value if isinstance(value, bytes) else value.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # O_TRUNC: as `echo >`; plain files too
    except FileNotFoundError as e:
        if not os.path.isdir(directory):
            raise FailedPrecondition(f"cgroup {directory} does not exist") from e
        raise Unsupported(f"cgroup file {path} does not exist on this kernel") from e
    try:
        os.write(fd, data)
    except OSError as e:
        shown = data.decode(errors="replace").strip()
        if e.errno == errno.EINVAL:
            raise Invalid(f"cgroup: {path} refused {shown!r}: {os.strerror(e.errno)}") from e
        raise OSError(e.errno, f"cgroup: writing {shown!r} to {path}: {os.strerror(e.errno)}") from e
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    with open(directory + "/" + name) as f:
        return f.read()


def read_int_into(out: dict[str, int], key: str, directory: str | None, name: str) -> None:
    if directory is None:
        return
    try:
        out[key] = int(read(directory, name).split()[0])
    except (OSError, ValueError, IndexError):
        pass


def write_in_some_order(directory: str, pairs: list[tuple[str, str]]) -> None:
    """Write dependent limits (period/quota, limit/memsw): forward, and backwards if the kernel refuses."""
    try:
        for name, value in pairs:
            write(directory, name, value)
    except Invalid:
        if len(pairs) < 2:
            raise
        for name, value in reversed(pairs):
            write(directory, name, value)


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def remove_dir(path: str, timeout: float = 5.0) -> None:
    """rmdir a cgroup, waiting for exiting tasks to leave it (EBUSY)."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise FailedPrecondition(f"cannot remove cgroup {path}: {os.strerror(e.errno)}") from e
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
