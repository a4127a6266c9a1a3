"""Linux namespaces: the clone flags behind OCI's namespace types, and joining by path.

A namespace is created with unshare(2) (pid and time only take effect for the
caller's *children*), or joined with setns(2) on a /proc/PID/ns/* file or a
bind mount of one (how exec and pod sandboxes share namespaces).
"""

from __future__ import annotations

import os

from kapal.linux import libc
from kapal.linux.mount import MNT_DETACH, MS_BIND, mount, umount

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# OCI namespace type -> (clone flag, file name under /proc/PID/ns)
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}

# Namespaces that apply to children only: the caller stays where it is.
FOR_CHILDREN = CLONE_NEWPID | CLONE_NEWTIME


def unshare(flags: int) -> None:
    libc.unshare(flags)


def join(path: str, flag: int = 0) -> None:
    """setns(2) into the namespace file at `path` (0 = any type)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, flag)
    finally:
        os.close(fd)


def join_fd(fd: int, flag: int = 0) -> None:
    libc.setns(fd, flag)


def proc_path(pid: int | str, ns_type: str) -> str:
    return f"/proc/{pid}/ns/{NAMESPACES[ns_type][1]}"


def same_namespace(path_a: str, path_b: str) -> bool:
    a, b = os.stat(path_a), os.stat(path_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class ChildrenNamespaces:
    """Put the caller's *next* children into new or joined pid/time namespaces, then restore.

    unshare(CLONE_NEWPID) and setns(pid) change only where the caller's future
    children go. A long-lived process (the engine) must put that back after
    forking, which setns to its own namespace does.
    """

    def __init__(self) -> None:
        self._restore: list[tuple[int, int]] = []

    def enter(self, create: int = 0, join: dict[int, str] | None = None) -> None:
        for flag, path in (join or {}).items():
            self._save(flag)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(fd, flag)
            finally:
                os.close(fd)
        if create:
            for flag in (CLONE_NEWPID, CLONE_NEWTIME):
                if create & flag:
                    self._save(flag)
            libc.unshare(create)

    def _save(self, flag: int) -> None:
        own = "pid" if flag == CLONE_NEWPID else "time"
        self._restore.append((os.open(f"/proc/self/ns/{own}", os.O_RDONLY | os.O_CLOEXEC), flag))

    def restore(self) -> None:
        while self._restore:
            fd, flag = self._restore.pop()
            try:
                libc.setns(fd, flag)
            finally:
                os.close(fd)


def pin(pid: int | str, ns_type: str, path: str) -> None:
    """Keep a namespace alive without a process: bind-mount /proc/PID/ns/X on `path` (created if missing).

    How a pod's network/ipc/uts namespaces outlive the process that made
    them; containers then join them with {"type": ..., "path": path}.
    """
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o444))
    mount(proc_path(pid, ns_type), path, None, MS_BIND)


def unpin(path: str) -> None:
    """Undo `pin`: detach the bind mount and remove the file."""
    try:
        umount(path, MNT_DETACH)
    except OSError as e:
        if e.errno != 22:  # EINVAL: not mounted
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
