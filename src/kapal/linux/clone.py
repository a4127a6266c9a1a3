"""fork() that puts the child into a cgroup2 directory as it is born: clone3(CLONE_INTO_CGROUP).

Moving a process into a cgroup through cgroup.procs takes the kernel's global
migration lock, whose first taker after a quiet spell waits out an RCU grace
period (5-20 ms here). A child created *in* its cgroup takes only the read side
of that lock: no wait. That is the only lock-free way into cgroup v2, and into
the cgroup2 tree of a hybrid host (v1 hierarchies have their own: a thread
writing "0" to `tasks`, see kapal.runtime.init).

Python has no clone3, so `fork_into_cgroup` does what os.fork does around the
raw syscall: PyOS_BeforeFork / PyOS_AfterFork_Child / PyOS_AfterFork_Parent,
called with the GIL held, and CLONE_CHILD_SETTID on glibc's cached thread id
(found once by looking for our own TID in the thread descriptor). What it
cannot redo is glibc's fork bookkeeping for *other* threads (malloc and stdio
locks they might hold), so it works only in a single-threaded process - the
runtime's CLI and the engine's shims; elsewhere, and on kernels before 5.7,
`usable()` is False and callers fork and move the child themselves.
"""

from __future__ import annotations

import _ctypes
import os

from kapal.linux import libc

CLONE_CHILD_SETTID = 0x01000000
CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17
_NR_CLONE3 = 435  # the same number on every architecture
_NR_GETTID = {"x86_64": 186, "aarch64": 178}.get(os.uname().machine, 186)


class _GilFunction(_ctypes.CFuncPtr):
    """A C function called with the GIL held (what os.fork's helpers and a fork-like syscall need)."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = libc.c_long


_hooks: tuple | None = None
_tid_offset: int | None = None
_kernel_lacks_it = False


def _setup() -> bool:
    global _hooks, _tid_offset
    if _hooks is not None:
        return _tid_offset is not None
    try:
        _hooks = tuple(_GilFunction((name, libc.libc)) for name in (
            "syscall", "PyOS_BeforeFork", "PyOS_AfterFork_Parent", "PyOS_AfterFork_Child", "pthread_self"))
    except AttributeError:  # an interpreter that does not export its C API
        _hooks = ()
        return False
    self_desc = _hooks[4]()
    memcpy = _GilFunction(("memcpy", libc.libc))
    window = libc.buffer(2048)
    memcpy(libc.pointer_arg(libc.address(window)), libc.pointer_arg(self_desc), 2048)
    tid = libc.check(libc._syscall(_NR_GETTID), "gettid").to_bytes(4, libc._ORDER)
    raw = window.raw
    for offset in range(0, len(raw) - 3, 4):
        if raw[offset : offset + 4] == tid:
            _tid_offset = offset
            break
    return _tid_offset is not None


def _threads() -> int:
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[17])


def _kernel_version() -> tuple[int, int]:
    parts = []
    for part in os.uname().release.split(".")[:2]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def usable() -> bool:
    """Whether `fork_into_cgroup` can work here and now: kernel 5.7+, and this process runs one thread."""
    if _kernel_lacks_it or _kernel_version() < (5, 7):
        return False
    try:
        return _threads() == 1 and _setup()
    except OSError:
        return False


def fork_into_cgroup(cgroup_dir: str) -> int | None:
    """Like os.fork(), with the child born in the cgroup2 directory `cgroup_dir`; None if clone3 refused
    (nothing happened: fork the usual way). Call only when `usable()`."""
    global _kernel_lacks_it
    syscall, before, after_parent, after_child, pthread_self = _hooks  # type: ignore[misc]
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        args = libc.u64(CLONE_INTO_CGROUP | CLONE_CHILD_SETTID, 0, pthread_self() + _tid_offset, 0, SIGCHLD, 0, 0,
                        0, 0, 0, fd)
        clone_args = libc.buffer(len(args), args)
        before()
        pid = syscall(_NR_CLONE3, libc.pointer_arg(libc.address(clone_args)), len(args))
        if pid == 0:
            after_child()
            return 0
        after_parent()
    finally:
        os.close(fd)
    if pid < 0:
        if _ctypes.get_errno() in (38, 22):  # ENOSYS, EINVAL: clone3 or CLONE_INTO_CGROUP unknown
            _kernel_lacks_it = True
        return None
    return pid
