"""Constants and helpers the runtime tests share (conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / ".venv" / "bin" / "kapal-runtime"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def leftover_cgroups(name: str) -> list[str]:
    out = []
    for hierarchy in CGROUP_ROOT.iterdir():
        candidate = hierarchy / name.strip("/")
        if candidate.is_dir():
            out.append(str(candidate))
    return out


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup as hierarchy (controllers, or "" for cgroup2) -> path, for the hierarchies mounted
    here (the cgroup2 line is there even when no cgroup2 tree is mounted)."""
    cgroup2 = any((CGROUP_ROOT / d / "cgroup.procs").exists() for d in (".", "unified"))
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, hierarchy, path = line.split(":", 2)
            if hierarchy or cgroup2:
                out[hierarchy] = path
    return out


def read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read a pty or pipe until `needle` shows up (AssertionError with what came, on timeout)."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {needle!r}; got {data!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data
