"""Forking a container's init or an exec'd process, and talking to it until it is ready.

`container.py` makes the state directory and the cgroups, starts warming the
cgroup migration lock, and only then imports this module: these imports and
the child's work overlap the 6-20 ms the kernel may make the migration wait.

Protocol with the child (kapal.runtime.init): the child reports b"R" (ready
to exec) or b"E" + error on the sync pipe; the runtime moves it into its
cgroups meanwhile, writes state and pid file, then opens the gate (exec.fifo
read by `start`, or b"G" on a pipe).
"""

from __future__ import annotations

import os

from kapal.errors import AlreadyExists, FailedPrecondition, Invalid, KapalError, NotFound, Unsupported
from kapal.linux import namespaces as ns
from kapal.linux import proc
from kapal.linux.cgroups import common as cgcommon
from kapal.runtime import init as child
from kapal.runtime import spec as specmod
from kapal.runtime.process import ProcessPlan
from kapal.runtime.rootfs import CgroupMount, RootfsPlan
from kapal.runtime.state import StateStore, rfc3339, write_atomic

SIGKILL = 9

# Joined in this order by exec; mount last (it changes root and cwd).
JOIN_ORDER = ("ipc", "uts", "network", "cgroup", "mount")


class Launched:
    """A process the runtime started: its host PID, and the pty master when the runtime relays one."""

    __slots__ = ("pid", "master", "gate_fd", "state")

    def __init__(self, pid: int, master: int | None = None, gate_fd: int | None = None, state: dict | None = None):
        self.pid = pid
        self.master = master
        self.gate_fd = gate_fd
        self.state = state or {}


def preserved_fds(preserve_fds: int) -> list[int]:
    """The fds among 3..3+N-1 that are open now (only those are passed on)."""
    if preserve_fds < 0:
        raise Invalid(f"--preserve-fds {preserve_fds}: want 0 or more")
    out = []
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            pass
    return out


def seccomp_program(store: StateStore, profile: dict | None) -> bytes | None:
    """Compile a seccomp profile, or reuse it compiled (podman's default takes ~10 ms to compile).

    Cached under ROOT/.seccomp by the SHA-256 of the profile (and the machine).
    """
    if not profile:
        return None
    import _sha256

    from kapal.runtime import jsonio

    key = _sha256.sha256(jsonio.dumps(profile).encode()).hexdigest()
    cache = f"{store.root}/.seccomp/{os.uname().machine}-{key}.bpf"
    try:
        with open(cache, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    from kapal.linux import seccomp

    bpf = seccomp.compile_profile(profile)
    try:
        os.makedirs(os.path.dirname(cache), 0o700, exist_ok=True)
        write_atomic(cache, bpf)
    except OSError:
        pass
    return bpf


def cgroup_mounts(cgroup, mounts) -> tuple[list[CgroupMount], bool]:
    """What the container's /sys/fs/cgroup shows: its own directory of each hierarchy."""
    if cgroup.version == 2:
        return [CgroupMount("", cgroup.path())], True
    paths = cgroup.paths()
    out: list[CgroupMount] = []
    seen: set[str] = set()
    for subsystem, (mountpoint, _root) in cgcommon.v1_hierarchies(mounts).items():
        if subsystem == "unified" or mountpoint in seen or subsystem not in paths:
            continue
        seen.add(mountpoint)
        name = os.path.basename(mountpoint)
        aliases = tuple(a for a in name.split(",") if a != name) if "," in name else ()
        out.append(CgroupMount(name, paths[subsystem], aliases))
    return out, False


_ERRORS = {
    "NotFound": NotFound,
    "Invalid": Invalid,
    "Unsupported": Unsupported,
    "FailedPrecondition": FailedPrecondition,
    "AlreadyExists": AlreadyExists,
}


def read_sync(fd: int) -> None:
    """Wait for the child's b"R"; re-raise its error otherwise."""
    data = os.read(fd, 65536)
    if data[:1] == b"R":
        return
    while data[:1] == b"E":
        more = os.read(fd, 65536)
        if not more:
            break
        data += more
    if not data:
        raise KapalError("container process exited before it was ready (no error reported)")
    kind, _, message = data[1:].partition(b"\0")
    raise _ERRORS.get(kind.decode(errors="replace"), KapalError)(message.decode(errors="replace"))


def signal_ready(fd: int, byte: bytes) -> None:
    """Send the child its go-ahead and close the pipe (a child that died meanwhile is reaped by the caller)."""
    try:
        os.write(fd, byte)
    except BrokenPipeError:
        pass  # the child failed already; its error is on the sync pipe
    os.close(fd)


def reap(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _console_fds(console_socket: str | None, terminal: bool, detach: bool) -> tuple[int | None, int | None]:
    """(fd for the child, fd where the runtime receives the master) for the console."""
    if not terminal:
        if console_socket:
            raise Invalid("--console-socket is only for a process with a terminal (process.terminal)")
        return None, None
    from kapal.linux import console  # before fork: the child must not import

    if console_socket:
        return console.connect(console_socket), None
    if detach:
        raise Invalid("a detached process with a terminal needs --console-socket to receive the pty master")
    import _socket

    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    return a.detach(), b.detach()


def _receive_master(master_rx: int | None) -> int | None:
    if master_rx is None:
        return None
    from kapal.linux import console

    master, _ = console.receive_fd(master_rx)
    return master


def _fork(plan: child.ChildPlan, pid_ns: tuple[int, str | None] | None, cgroup2_dir: str | None, target,
          *extra) -> tuple[int, bool]:
    """fork into the right pid namespace, born in `cgroup2_dir` when this process can (kapal.linux.clone);
    the caller's own namespaces are restored at once. Returns (pid, born in cgroup2_dir)."""
    children = ns.ChildrenNamespaces()
    if pid_ns is not None:
        flag, path = pid_ns
        if path is None:
            children.enter(create=flag)
        else:
            children.enter(join={flag: path})
    try:
        pid = None
        if cgroup2_dir is not None:
            from kapal.linux import clone

            if clone.usable():
                pid = clone.fork_into_cgroup(cgroup2_dir)
        born = pid is not None
        if pid is None:
            pid = os.fork()
    except BaseException:
        children.restore()
        raise
    if pid == 0:
        target(plan, *extra)  # never returns
    children.restore()
    return pid, born


def _self_move(cgroup) -> tuple[int | None, list[str]]:
    """(an O_PATH fd of the host's root, the files the child writes b"0" to) for moving itself into its cgroups."""
    files = cgroup.self_move_files() if cgroup is not None else []
    if not files:
        return None, []
    return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), files


class _Fds:
    """fds the runtime opened, closed on failure."""

    def __init__(self) -> None:
        self.open: list[int] = []

    def add(self, *fds: int | None) -> None:
        self.open += [fd for fd in fds if fd is not None]

    def close(self, *fds: int | None) -> None:
        for fd in fds:
            if fd is not None:
                os.close(fd)
                self.open.remove(fd)

    def forget(self, *fds: int | None) -> None:
        for fd in fds:
            if fd is not None:
                self.open.remove(fd)

    def close_all(self) -> None:
        for fd in self.open:
            os.close(fd)
        self.open = []


def launch_init(
    store: StateStore,
    container_id: str,
    bundle: str,
    spec: dict,
    raw: bytes,
    rootfs_dir: str,
    cgroup,
    mounts,
    resources,
    *,
    console_socket: str | None,
    pid_file: str | None,
    preserve_fds: int,
    stdio: tuple[int, int, int] | None,
    no_pivot: bool,
    no_new_keyring: bool,
    gate: str,
    detach: bool,
) -> Launched:
    """Fork the init of a container whose state directory exists; save its state.

    `resources` is None when the cgroups exist already; otherwise they are made (and limited) after the
    fork, and the child waits for b"C" before it bind-mounts them.
    """
    linux = spec["linux"]
    plan_proc = ProcessPlan.from_oci(spec["process"])
    nss = specmod.namespaces(spec)
    seccomp_bpf = seccomp_program(store, linux.get("seccomp"))
    preserved = preserved_fds(preserve_fds)
    pid_file = os.path.abspath(pid_file) if pid_file else None
    mounts_view, cgroup_v2 = cgroup_mounts(cgroup, mounts)
    rplan = RootfsPlan(spec, rootfs_dir, bundle, mounts_view, cgroup_v2, no_pivot)

    new_flags = 0
    join: list[tuple[int, str]] = []
    pid_ns = None
    for kind, path in nss:
        flag = ns.NAMESPACES[kind][0]
        if kind == "pid":
            pid_ns = (flag, path)
        elif path is None:
            new_flags |= flag
        else:
            join.append((flag, path))

    fds = _Fds()
    pid = 0
    try:
        console_fd, master_rx = _console_fds(console_socket, plan_proc.terminal, detach)
        fds.add(console_fd, master_rx)
        fifo_fd = gate_r = gate_w = cgroup_r = cgroup_w = None
        host_root, self_move = _self_move(cgroup)
        fds.add(host_root)
        cgroup2 = cgroup.cgroup2_dir()
        if gate == "fifo":
            os.mkfifo(store.fifo(container_id), 0o622)
            fifo_fd = os.open(store.fifo(container_id), os.O_PATH | os.O_CLOEXEC)
            fds.add(fifo_fd)
        else:
            gate_r, gate_w = os.pipe()
            fds.add(gate_r, gate_w)
        if resources is not None or (new_flags & ns.CLONE_NEWCGROUP and cgroup2 is not None):
            cgroup_r, cgroup_w = os.pipe()
            fds.add(cgroup_r, cgroup_w)
        sync_r, sync_w = os.pipe()
        fds.add(sync_r, sync_w)
        keep = {sync_w, *(fd for fd in (gate_r, fifo_fd, console_fd, cgroup_r, host_root) if fd is not None),
                *preserved, *(stdio or ())}
        plan = child.ChildPlan(
            container_id=container_id,
            process=plan_proc,
            rootfs=rplan,
            cgroup_ready_fd=cgroup_r,
            host_root_fd=host_root,
            self_move_files=self_move,
            new_namespaces=new_flags,
            join_namespaces=join,
            hostname=spec.get("hostname") if any(k == "uts" and p is None for k, p in nss) else None,
            domainname=spec.get("domainname") or linux.get("domainname"),
            seccomp=seccomp_bpf,
            sync_fd=sync_w,
            gate_fd=gate_r,
            fifo_fd=fifo_fd,
            console_fd=console_fd,
            stdio=stdio,
            preserve_fds=preserve_fds,
            preserved=preserved,
            new_keyring=not no_new_keyring,
            keep_fds=keep,
        )
        pid, born = _fork(plan, pid_ns, cgroup2 if resources is None else None, child.run_init)
        parent_moves = cgroup2 is not None and not born
        fds.close(sync_w, gate_r, fifo_fd, console_fd, cgroup_r, host_root)
        state = {
            "ociVersion": spec.get("ociVersion") or "1.0.2",
            "id": container_id,
            "pid": pid,
            "init_start": proc.start_time(pid),
            "bundle": bundle,
            "rootfs": rootfs_dir,
            "created": rfc3339(),
            "annotations": spec.get("annotations") or {},
            "owner": "",
            "cgroup_version": cgroup.version,
            "cgroup_paths": cgroup.paths(),
            "own_pid_ns": pid_ns is not None and pid_ns[1] is None,
        }
        store.save_config(container_id, raw)
        staged = store.stage(container_id, state)
        # The child builds its rootfs meanwhile; it needs the directories before it mounts them, and the
        # move only at the gate (or before it creates a cgroup namespace).
        if resources is not None:
            cgroup.create()
            if not (new_flags & ns.CLONE_NEWCGROUP and parent_moves):
                fds.forget(cgroup_w)
                signal_ready(cgroup_w, b"C")
            cgroup.set(resources)
        if parent_moves:
            cgroup.apply(pid, skip_self_movable=True)
        if cgroup_w in fds.open:
            fds.forget(cgroup_w)
            signal_ready(cgroup_w, b"C")
        read_sync(sync_r)
        fds.close(sync_r)
        store.publish(container_id, staged)  # a container exists once its init is ready, as with runc
        master = _receive_master(master_rx)
        fds.close(master_rx)
        if pid_file:
            write_atomic(pid_file, str(pid).encode(), 0o644)
        fds.forget(gate_w)
        return Launched(pid, master, gate_w, state)
    except BaseException:
        fds.close_all()
        if pid:
            reap(pid)
        raise


def launch_exec(
    store: StateStore,
    container_id: str,
    st: dict,
    config: dict,
    process: dict,
    cgroup,
    *,
    console_socket: str | None,
    pid_file: str | None,
    detach: bool,
    preserve_fds: int,
    stdio: tuple[int, int, int] | None,
) -> Launched:
    """Fork a process that joins the init's namespaces and cgroups; returns once it is exec'ing."""
    plan_proc = ProcessPlan.from_oci(process)
    seccomp_bpf = seccomp_program(store, (config.get("linux") or {}).get("seccomp"))
    preserved = preserved_fds(preserve_fds)
    pid_file = os.path.abspath(pid_file) if pid_file else None
    init_pid = st["pid"]
    kinds = {kind for kind, _ in specmod.namespaces(config)}
    fds = _Fds()
    pid = 0
    try:
        ns_fds = []
        for kind in JOIN_ORDER:
            if kind in kinds:
                fd = os.open(ns.proc_path(init_pid, kind), os.O_RDONLY | os.O_CLOEXEC)
                fds.add(fd)
                ns_fds.append((fd, ns.NAMESPACES[kind][0]))
        if not proc.is_alive(init_pid, st.get("init_start")):
            raise FailedPrecondition(f"cannot exec in container {container_id}: its init has exited")
        console_fd, master_rx = _console_fds(console_socket, plan_proc.terminal, detach)
        fds.add(console_fd, master_rx)
        sync_r, sync_w = os.pipe()
        gate_r, gate_w = os.pipe()
        fds.add(sync_r, sync_w, gate_r, gate_w)
        host_root, self_move = _self_move(cgroup)
        fds.add(host_root)
        keep = {sync_w, gate_r, *(fd for fd, _ in ns_fds), *preserved, *(stdio or ())}
        keep.update(fd for fd in (console_fd, host_root) if fd is not None)
        plan = child.ChildPlan(
            container_id=container_id,
            process=plan_proc,
            host_root_fd=host_root,
            self_move_files=self_move,
            seccomp=seccomp_bpf,
            sync_fd=sync_w,
            gate_fd=gate_r,
            console_fd=console_fd,
            stdio=stdio,
            preserve_fds=preserve_fds,
            preserved=preserved,
            keep_fds=keep,
        )
        pid_ns = (ns.CLONE_NEWPID, ns.proc_path(init_pid, "pid")) if "pid" in kinds else None
        cgroup2 = cgroup.cgroup2_dir() if cgroup is not None else None
        pid, born = _fork(plan, pid_ns, cgroup2, child.run_exec, ns_fds)
        fds.close(sync_w, gate_r, console_fd, host_root, *(fd for fd, _ in ns_fds))
        if cgroup2 is not None and not born:
            cgroup.apply(pid, skip_self_movable=True)
        read_sync(sync_r)
        fds.close(sync_r)
        master = _receive_master(master_rx)
        fds.close(master_rx)
        if pid_file:
            write_atomic(pid_file, str(pid).encode(), 0o644)
        fds.forget(gate_w)
        signal_ready(gate_w, b"G")
        return Launched(pid, master)
    except BaseException:
        fds.close_all()
        if pid:
            reap(pid)
        raise


def wait_foreground(launched: Launched, forward_signals: bool) -> int:
    """Relay the pty if the runtime holds it, wait for the process, return its exit code (128+N if killed)."""
    restore = _forward_signals(launched.pid) if forward_signals else None
    try:
        if launched.master is not None:
            from kapal.runtime.relay import relay

            relay(launched.master)
        while True:
            try:
                _, status_code = os.waitpid(launched.pid, 0)
                break
            except InterruptedError:
                continue
        return exit_code(status_code)
    finally:
        if restore is not None:
            restore()
        if launched.master is not None:
            os.close(launched.master)


def exit_code(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _forward_signals(pid: int):
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    saved = {}
    for signum in (1, 2, 3, 10, 12, 15, 28):
        saved[signum] = _signal.signal(signum, forward)

    def restore() -> None:
        for signum, handler in saved.items():
            _signal.signal(signum, handler)

    return restore
