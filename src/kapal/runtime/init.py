"""The child side: what runs between fork and execve, for a container's init and for exec.

Both children report to the runtime over a pipe: b"R" when everything that
can fail has been done (the process is ready to exec), or b"E" + the error's
class name + NUL + message, then exit. Nothing here imports modules or logs:
the child may have been forked from a multi-threaded daemon.

Init (`run_init`): session, stray fds closed, join or create namespaces,
the rootfs, pivot_root, hostname, sysctls, masked and read-only paths,
console, process setup - then "R" and wait at the gate (exec.fifo for
create/start, a pipe for run) - then exec.

Exec (`run_exec`): non-dumpable *first* (so the container never reaches the
runtime's binary or fds through /proc: CVE-2019-5736), stray fds closed,
setns into the init's namespaces, console, process setup, "R", gate, exec.

Cgroups: the child moves itself into each v1 hierarchy by writing b"0" to
its `tasks` file, which takes no global lock (a move through cgroup.procs
may wait 5-20 ms for an RCU grace period). The files are opened relative to
an O_PATH fd of the host's root, so joined mount namespaces and pivot_root
do not hide them. What the child cannot move itself into (cgroup v2, the
cgroup2 tree of a hybrid host) the runtime moves it into meanwhile. When
the runtime makes the cgroups after forking, the child waits for b"C"
before it needs them - before moving in, or before creating a cgroup
namespace (then C also means "moved into the rest") - and the gate opens
only after every move.
"""

from __future__ import annotations

import os

from kapal.errors import KapalError
from kapal.linux import libc, namespaces
from kapal.runtime import process, rootfs

PR_SET_PDEATHSIG = 1


class ChildPlan:
    """Everything the child needs, computed by the runtime before fork."""

    __slots__ = (
        "container_id",
        "process",
        "rootfs",
        "cgroup_ready_fd",
        "host_root_fd",
        "self_move_files",
        "new_namespaces",
        "join_namespaces",
        "hostname",
        "domainname",
        "seccomp",
        "sync_fd",
        "gate_fd",
        "fifo_fd",
        "console_fd",
        "stdio",
        "preserve_fds",
        "preserved",
        "new_keyring",
        "keep_fds",
    )

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            setattr(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)


def report_error(sync_fd: int, exc: BaseException) -> None:
    if isinstance(exc, KapalError):
        kind = type(exc).__name__
        message = str(exc)
    elif isinstance(exc, OSError):
        kind = "OSError"
        message = exc.strerror or str(exc)
        if exc.filename:
            message = f"{message}: {exc.filename}"
    else:
        kind = "KapalError"
        message = f"{type(exc).__name__}: {exc}"
    try:
        os.write(sync_fd, b"E" + kind.encode() + b"\0" + message.encode(errors="replace"))
    except OSError:
        pass


def _close_stray_fds(keep: set[int]) -> None:
    """Close inherited fds nobody asked to pass on (a host directory fd is an escape: CVE-2024-21626)."""
    start = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    libc.close_range(start)


def _stdio(stdio: tuple[int, int, int] | None) -> None:
    if stdio is None:
        return
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)


def _console(plan: ChildPlan) -> None:
    """Create the pty in the container's devpts, hand the master over, make the slave our terminal."""
    from kapal.linux import console  # imported by the runtime before fork when a console is used

    master, slave, _number = console.open_pty("/dev/pts/ptmx")
    if plan.process.console_size:
        rows, cols = plan.process.console_size
        if rows and cols:
            console.set_size(master, rows, cols)
    console.send_fd(plan.console_fd, master)
    os.close(master)
    os.close(plan.console_fd)
    console.make_controlling_terminal(slave)
    if plan.rootfs is not None and os.path.exists("/dev/console"):
        from kapal.linux import mount as m

        m.mount(f"/proc/self/fd/{slave}", "/dev/console", None, m.MS_BIND)
    if slave > 2:
        os.close(slave)


def run_init(plan: ChildPlan) -> None:
    """The container's init, from fork to exec. Never returns."""
    try:
        libc.prctl(PR_SET_PDEATHSIG, 9)
        os.setsid()
        _close_stray_fds(plan.keep_fds)
        _stdio(plan.stdio)
        for flag, path in plan.join_namespaces:
            namespaces.join(path, flag)
        if plan.new_namespaces & namespaces.CLONE_NEWCGROUP:
            _enter_cgroups(plan)  # the namespace's root is the cgroup we are in
        if plan.new_namespaces:
            namespaces.unshare(plan.new_namespaces)
        if plan.new_keyring:
            libc.join_session_keyring(plan.container_id)
        rplan = plan.rootfs
        rootfs.prepare(rplan, plan.process.terminal, lambda: _enter_cgroups(plan))
        _enter_cgroups(plan)
        rootfs.pivot(rplan)
        if plan.hostname:
            libc.sethostname(plan.hostname)
        if plan.domainname:
            libc.setdomainname(plan.domainname)
        rootfs.finish(rplan)
        if plan.console_fd is not None:
            _console(plan)
        path, env = process.prepare(plan.process, plan.seccomp)
        libc.prctl(PR_SET_PDEATHSIG, 0)
        os.write(plan.sync_fd, b"R")
        _wait_at_gate(plan)
        process.exec_plan(plan.process, path, env, plan.seccomp, plan.preserve_fds, plan.preserved)
    except BaseException as e:
        report_error(plan.sync_fd, e)
    finally:
        os._exit(1)


def _enter_cgroups(plan: ChildPlan) -> None:
    """Wait for our cgroups if the runtime makes them after the fork (b"C"), then move in (once)."""
    fd = plan.cgroup_ready_fd
    if fd is not None:
        plan.cgroup_ready_fd = None
        if os.read(fd, 1) != b"C":
            os._exit(1)  # the runtime gave up on us
        os.close(fd)
    root = plan.host_root_fd
    if root is None:
        return
    plan.host_root_fd = None
    for path in plan.self_move_files:
        tasks = os.open(path.lstrip("/"), os.O_WRONLY | os.O_CLOEXEC, dir_fd=root)
        try:
            os.write(tasks, b"0")
        finally:
            os.close(tasks)
    os.close(root)


def _wait_at_gate(plan: ChildPlan) -> None:
    if plan.fifo_fd is not None:
        # Blocks until `start` opens the fifo for reading; reopened through /proc (the path is on the host).
        fd = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(plan.fifo_fd)
    elif plan.gate_fd is not None:
        if os.read(plan.gate_fd, 1) != b"G":
            os._exit(1)  # the runtime gave up on us
        os.close(plan.gate_fd)


def run_exec(plan: ChildPlan, ns_fds: list[tuple[int, int]]) -> None:
    """A new process in a running container, from fork to exec. Never returns."""
    try:
        process.set_non_dumpable()
        _close_stray_fds(plan.keep_fds)
        _stdio(plan.stdio)
        _enter_cgroups(plan)
        for fd, flag in ns_fds:
            libc.setns(fd, flag)
            os.close(fd)
        os.setsid()
        if plan.console_fd is not None:
            _console(plan)
        path, env = process.prepare(plan.process, plan.seccomp)
        os.write(plan.sync_fd, b"R")
        _wait_at_gate(plan)
        process.exec_plan(plan.process, path, env, plan.seccomp, plan.preserve_fds, plan.preserved)
    except BaseException as e:
        report_error(plan.sync_fd, e)
    finally:
        os._exit(1)
