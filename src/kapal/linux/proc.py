"""Processes as /proc shows them: identity across PID reuse, liveness, waiting for exit."""

from __future__ import annotations

import os
import time


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """Clock ticks after boot when PID started: with the PID it names one process for good."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, started: int | None = None) -> bool:
    """Running (not a zombie) and, if `started` is given, still the same process."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def wait_gone(pid: int, started: int | None = None, timeout: float = 10.0) -> bool:
    """Wait until PID has exited (zombie or reaped); not only for our own children."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not is_alive(pid, started):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(int(left * 1000) + 1):
                return True
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
    except FileNotFoundError:
        pass
    return out
