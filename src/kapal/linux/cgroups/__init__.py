"""Control groups: the `CgroupManager` seam (manager.py) and its v1 and v2 implementations.

`manager_for` is the one place that chooses: cgroup2 mounted at
/sys/fs/cgroup means v2, anything else (v1 or hybrid) means v1.
`manager_from_paths` rebuilds a manager from the `paths()` a container's
state recorded.
"""

from __future__ import annotations

from kapal.linux.mount import MountInfo, mountinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kapal.linux.cgroups.manager import CgroupManager


def is_unified(mounts: list[MountInfo] | None = None) -> bool:
    for m in mounts if mounts is not None else mountinfo():
        if m.mountpoint == "/sys/fs/cgroup":
            return m.fstype == "cgroup2"
    return False


def manager_for(cgroups_path: str, mounts: list[MountInfo] | None = None) -> CgroupManager:
    """The manager of `cgroups_path` (absolute, or relative to the caller's own cgroup) on this host."""
    mounts = mounts if mounts is not None else mountinfo()
    if is_unified(mounts):
        from kapal.linux.cgroups.v2 import CgroupV2Manager

        return CgroupV2Manager.for_path(cgroups_path)
    from kapal.linux.cgroups import common
    from kapal.linux.cgroups.v1 import CgroupV1Manager

    return CgroupV1Manager.for_path(cgroups_path, common.v1_hierarchies(mounts))


def manager_from_paths(version: int, paths: dict[str, str]) -> CgroupManager:
    if version == 2:
        from kapal.linux.cgroups.v2 import CgroupV2Manager

        return CgroupV2Manager.from_paths(paths)
    from kapal.linux.cgroups.v1 import CgroupV1Manager

    return CgroupV1Manager.from_paths(paths)
