"""Warming the kernel's cgroup migration lock before a container needs it.

Every write to a cgroup.procs file takes the global cgroup_threadgroup_rwsem
for writing. After ~20 ms without such a write, the next writer first waits
for an RCU grace period (5-20 ms on these VMs, HZ=250) - holding
cgroup_mutex, which mkdir and rmdir of cgroups also need. runc pays that
wait on every cold start and overlaps it with re-executing itself.

A thread that writes "0" to a v1 `tasks` file moves only itself and takes no
such lock, so a container's init moves itself into every v1 hierarchy for
free (kapal.runtime.init); a single-threaded process forks it straight into
its cgroup2 directory (kapal.linux.clone). Only a multi-threaded caller's
move into cgroup v2 - a v2 host, or the cgroup2 tree of a hybrid host -
still pays the wait; then kapal starts it in a thread as early as it can
and overlaps it with its imports and the child's rootfs. `needed()` and
`needed_for()` say whether that is so.

This module imports nothing heavy: kapal-runtime calls it first thing.
"""

from __future__ import annotations

import _thread
import os
import time

_primed_at = 0.0


def prime_migration_lock() -> None:
    """Start paying the grace period in a thread; returns once the thread is writing.

    The thread moves this process into the cgroup it is already in (a no-op
    that takes the lock); the container's own migration then finds it warm.
    """

    target = None
    try:
        with open("/proc/self/cgroup") as f:
            for line in f.read().splitlines():
                _, controllers, path = line.split(":", 2)
                if "pids" in controllers.split(","):
                    target = f"/sys/fs/cgroup/{controllers}{path.rstrip('/')}/cgroup.procs"
                    break
                if not controllers and target is None:
                    target = f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs"
    except OSError:
        return
    if target is None:
        return
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    started = _thread.allocate_lock()
    started.acquire()

    def move_self() -> None:
        # No Python between the release and the write: the write must not wait for the GIL.
        started.release()
        try:
            os.write(fd, b"0")
        except OSError:
            pass
        os.close(fd)

    global _primed_at
    _primed_at = time.monotonic()
    _thread.start_new_thread(move_self, ())
    started.acquire()  # blocks without the GIL until the thread is about to write


def needed() -> bool:
    """Whether a container's move may take the lock: cgroup2 is mounted (as the host's tree or beside v1
    ones) and this process cannot fork children straight into it (kapal.linux.clone)."""
    if not (os.path.exists("/sys/fs/cgroup/cgroup.procs") or os.path.exists("/sys/fs/cgroup/unified/cgroup.procs")):
        return False
    from kapal.linux import clone

    return not clone.usable()


def needed_for(cgroup2_dir: str | None) -> bool:
    """Whether moving a child into this cgroup2 directory (None: there is none) will take the lock."""
    if cgroup2_dir is None:
        return False
    from kapal.linux import clone

    return not clone.usable()


def primed_recently(window: float = 0.1) -> bool:
    """Whether `prime_migration_lock` ran in the last `window` seconds (its wait may still be going on)."""
    return time.monotonic() - _primed_at < window
