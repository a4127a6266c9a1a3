"""The `CgroupManager` seam: one container's cgroup, whatever the hierarchy.

Lifecycle of a manager, in the order the runtime calls it:

- `create()`   make the cgroup directories (idempotent; cpuset is seeded
               from its parent so tasks can join).
- `set(res)`   write the limits in `Resources`; an option this host or this
               cgroup version cannot honour raises `Unsupported` by name.
- `apply(pid)` move a process in (0 = the caller) - every hierarchy. Each
               move through cgroup.procs takes the kernel's global migration
               lock, whose first taker after a quiet spell waits out an RCU
               grace period (5-20 ms, holding cgroup_mutex).
- `self_move_files()`  files a single-threaded process writes b"0" to, to
               move itself in without that lock (v1 `tasks`: microseconds).
- `cgroup2_dir()`  the rest: the cgroup's directory in cgroup v2 (or in a
               hybrid host's cgroup2 tree), None on a pure v1 host. A child
               born there (kapal.linux.clone) needs no move either; else
               `apply(pid, skip_self_movable=True)` moves it there.
- `freeze()` / `thaw()` / `frozen()`   pause and resume every task.
- `pids()`     the processes inside; `signal(sig)` sends one to each.
- `stats()`    usage counters (`cpu_usage_ns`, `memory_usage`, `pids_current`...).
- `destroy()`  remove the directories once empty (idempotent).
- `paths()`    controller -> directory, stored in the container's state so
               another process can rebuild the manager with `from_paths`.

Implementations: `CgroupV1Manager` (kapal.linux.cgroups.v1, one directory per
mounted hierarchy, cpu and cpuacct separate or co-mounted) and
`CgroupV2Manager` (kapal.linux.cgroups.v2, one directory in the unified tree).
`kapal.linux.cgroups.manager_for` chooses. The conformance suite is
tests/conformance/test_cgroup_manager.py.

This module imports `typing`; the runtime's start path does not import it.
"""

from __future__ import annotations

from typing import Protocol

from kapal.linux.cgroups.resources import Resources


class CgroupManager(Protocol):
    version: int

    def create(self) -> None: ...

    def set(self, resources: Resources) -> None: ...

    def apply(self, pid: int, skip_self_movable: bool = False) -> None: ...

    def self_move_files(self) -> list[str]: ...

    def cgroup2_dir(self) -> str | None: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def frozen(self) -> bool: ...

    def pids(self) -> list[int]: ...

    def signal(self, sig: int) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def exists(self) -> bool: ...

    def destroy(self) -> None: ...

    def paths(self) -> dict[str, str]: ...
