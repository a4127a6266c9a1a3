"""The runtime as a library: create, start, run, exec, kill, delete, state, pause/resume, ps, list, update.

These are the verbs of `kapal-runtime` (runc's command line) as plain,
synchronous functions, for callers that start containers from a warm Python
process (the engine, the kubelet) instead of executing a runtime binary.
Every function takes the state root (`root`, default /run/kapal-runtime)
and a container id; errors are kapal.errors (NotFound, AlreadyExists,
Invalid, Unsupported, FailedPrecondition...), never exit codes.

    pid = create(root, "web", "/path/to/bundle", console_socket=None,
                 pid_file=None, stdio=(in_fd, out_fd, err_fd))
    start(root, "web")
    code = run(root, "job", bundle)                  # foreground: waits, cleans up
    pid = run(root, "svc", bundle, detach=True)      # create + start
    code = exec_process(root, "web", {"args": ["ls"], "cwd": "/"})
    kill(root, "web", 15); delete(root, "web", force=True)
    state(root, "web") -> {"id", "pid", "status", "bundle", ...}

`spec=` passes an already parsed config.json (the bundle directory still
anchors a relative root.path and bind sources). `stdio=` gives the fds that
become the container's 0/1/2 (default: the caller's own). The container's
init is a child of the calling process: a long-lived caller must reap it
(waitpid) or be a child subreaper. Namespaces to share (a pod's net, ipc,
uts) are joined by path: put {"type": "network", "path": "/proc/PID/ns/net"}
(or a file pinned with `kapal.linux.namespaces.pin`) in linux.namespaces.

Safe to call from a multi-threaded process: the forked child imports
nothing and takes no locks; pid-namespace changes are undone in the caller
right after the fork.
"""

from __future__ import annotations

import os
import time

from kapal.errors import FailedPrecondition, Invalid, KapalError, NotFound
from kapal.linux import cgrouplock, proc
from kapal.linux.cgroups import manager_for, manager_from_paths
from kapal.linux.cgroups.resources import Resources
from kapal.linux.mount import mountinfo
from kapal.runtime import spec as specmod
from kapal.runtime.state import CREATED, PAUSED, RUNNING, STOPPED, StateStore, status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kapal.runtime.launcher import Launched

DEFAULT_ROOT = "/run/kapal-runtime"
SIGKILL = 9


def create(
    root: str,
    container_id: str,
    bundle: str,
    *,
    spec: dict | None = None,
    console_socket: str | None = None,
    pid_file: str | None = None,
    preserve_fds: int = 0,
    stdio: tuple[int, int, int] | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
) -> int:
    """Create a container whose init waits for `start`; returns the init's host PID."""
    launched = _create(
        StateStore(root), container_id, bundle, spec, console_socket=console_socket, pid_file=pid_file,
        preserve_fds=preserve_fds, stdio=stdio, no_pivot=no_pivot, no_new_keyring=no_new_keyring, gate="fifo",
        detach=True,
    )
    return launched.pid


def run(
    root: str,
    container_id: str,
    bundle: str,
    *,
    spec: dict | None = None,
    detach: bool = False,
    console_socket: str | None = None,
    pid_file: str | None = None,
    preserve_fds: int = 0,
    stdio: tuple[int, int, int] | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    forward_signals: bool = False,
) -> int:
    """create + start. Detached: returns the PID. Foreground: waits, deletes, returns the exit code."""
    store = StateStore(root)
    launched = _create(
        store, container_id, bundle, spec, console_socket=console_socket, pid_file=pid_file,
        preserve_fds=preserve_fds, stdio=stdio, no_pivot=no_pivot, no_new_keyring=no_new_keyring, gate="pipe",
        detach=detach,
    )
    from kapal.runtime.launcher import signal_ready, wait_foreground

    signal_ready(launched.gate_fd, b"G")
    if detach:
        return launched.pid
    try:
        return wait_foreground(launched, forward_signals)
    finally:
        try:
            _remove_stopped(store, container_id, launched.state)
        except KapalError:
            pass


def _create(store: StateStore, container_id: str, bundle: str, spec: dict | None, **options) -> Launched:
    """Check the bundle, make the state directory and cgroups, then fork the init (launcher.launch_init)."""
    bundle = os.path.abspath(bundle)
    if spec is None:
        spec, raw = specmod.load_bundle(bundle)
    else:
        from kapal.runtime import jsonio

        raw = jsonio.dumps(spec).encode()
    rootfs_dir = specmod.validate(spec, bundle)
    linux = spec["linux"]
    resources = Resources.from_oci(linux.get("resources"))
    mounts = mountinfo()
    cgroup = manager_for(linux.get("cgroupsPath") or container_id, mounts)
    store.reserve(container_id)
    try:
        try:
            # The init moves itself into v1 hierarchies and, forked by a single-threaded caller, is born in
            # its cgroup2 directory: no cost. Otherwise the move into cgroup v2 (or a hybrid host's cgroup2
            # tree) may wait 5-20 ms for an RCU grace period, with cgroup_mutex (which mkdir needs) held
            # through that wait. If that wait has been started already, make the directories after forking,
            # so the child's work overlaps it; otherwise make them now and, if the move will wait, start
            # the wait before forking.
            waits = cgrouplock.needed_for(cgroup.cgroup2_dir())
            if not waits or not cgrouplock.primed_recently():
                cgroup.create()
                cgroup.set(resources)
                if waits:
                    cgrouplock.prime_migration_lock()
                resources = None
            from kapal.runtime import launcher

            return launcher.launch_init(
                store, container_id, bundle, spec, raw, rootfs_dir, cgroup, mounts, resources, **options
            )
        except BaseException:
            cgroup.destroy()
            raise
    except BaseException:
        store.remove(container_id)
        raise


def _remove_stopped(store: StateStore, container_id: str, st: dict) -> None:
    """delete --force for a container whose init the caller has reaped."""
    if not st.get("own_pid_ns", True):
        delete(store.root, container_id, force=True)
        return
    _manager(st).destroy()
    store.remove(container_id)


def _load(store: StateStore, container_id: str) -> tuple[dict, str]:
    st = store.load(container_id)
    return st, status(store, container_id, st)


def _manager(st: dict):
    return manager_from_paths(st.get("cgroup_version", 1), st.get("cgroup_paths") or {})


def start(root: str, container_id: str) -> None:
    """Let a created container's init exec its process."""
    import select

    store = StateStore(root)
    st, current = _load(store, container_id)
    if current != CREATED:
        raise FailedPrecondition(f"cannot start container {container_id}: it is {current}, not created")
    fifo = store.fifo(container_id)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                if os.read(fd, 1):
                    break
            if not proc.is_alive(st["pid"], st.get("init_start")):
                raise FailedPrecondition(f"cannot start container {container_id}: its init has exited")
    finally:
        os.close(fd)
    os.unlink(fifo)


def state(root: str, container_id: str) -> dict:
    """The OCI state: id, pid, status (created/running/paused/stopped), bundle, rootfs, created, annotations."""
    from kapal.runtime.state import oci_state

    store = StateStore(root)
    return oci_state(store, container_id, store.load(container_id))


def list_containers(root: str) -> list[dict]:
    from kapal.runtime.state import oci_state

    store = StateStore(root)
    out = []
    for cid in store.ids():
        try:
            out.append(oci_state(store, cid, store.load(cid)))
        except NotFound:
            continue
    return out


def kill(root: str, container_id: str, sig: int = 15, all_processes: bool = False) -> None:
    """Send `sig` to the init (or, with all_processes, to every process of the container)."""
    store = StateStore(root)
    st, current = _load(store, container_id)
    if current == STOPPED:
        raise FailedPrecondition(f"container {container_id} is not running")
    if all_processes:
        _signal_all(_manager(st), sig)
    else:
        try:
            os.kill(st["pid"], sig)
        except ProcessLookupError:
            raise FailedPrecondition(f"container {container_id} is not running") from None


def _signal_all(manager, sig: int) -> None:
    """Freeze, signal every task, thaw: nothing forks away meanwhile (runc does the same)."""
    try:
        manager.freeze()
    except (KapalError, OSError):
        manager.signal(sig)
        return
    try:
        manager.signal(sig)
    finally:
        manager.thaw()


def delete(root: str, container_id: str, force: bool = False) -> None:
    """Remove a stopped (or created) container; `force` kills a running one first. Unknown + force = no-op."""
    store = StateStore(root)
    try:
        st, current = _load(store, container_id)
    except NotFound:
        if force:
            return
        raise
    if current in (RUNNING, PAUSED) and not force:
        raise FailedPrecondition(f"cannot delete container {container_id} that is not stopped: it is {current}")
    manager = _manager(st)
    pid = st.get("pid") or 0
    if current != STOPPED:
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
        if current == PAUSED or manager.frozen():
            manager.thaw()
        proc.wait_gone(pid, st.get("init_start"))
    if not st.get("own_pid_ns", True):
        _kill_remaining(manager)
    manager.destroy()
    store.remove(container_id)


def _kill_remaining(manager, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while manager.pids() and time.monotonic() < deadline:
        _signal_all(manager, SIGKILL)
        time.sleep(0.01)


def pause(root: str, container_id: str) -> None:
    store = StateStore(root)
    st, current = _load(store, container_id)
    if current not in (RUNNING, CREATED):
        raise FailedPrecondition(f"cannot pause container {container_id}: it is {current}")
    _manager(st).freeze()


def resume(root: str, container_id: str) -> None:
    store = StateStore(root)
    st, current = _load(store, container_id)
    if current != PAUSED:
        raise FailedPrecondition(f"cannot resume container {container_id}: it is {current}, not paused")
    _manager(st).thaw()


def ps(root: str, container_id: str) -> list[int]:
    """Host PIDs of the container's processes."""
    st = StateStore(root).load(container_id)
    return _manager(st).pids()


def stats(root: str, container_id: str) -> dict[str, int]:
    st = StateStore(root).load(container_id)
    return _manager(st).stats()


def update(root: str, container_id: str, resources: dict) -> None:
    """Apply new linux.resources (as `runc update --resources` reads them) and remember them."""
    from kapal.runtime import jsonio

    store = StateStore(root)
    st, current = _load(store, container_id)
    if current == STOPPED:
        raise FailedPrecondition(f"cannot update container {container_id}: it is stopped")
    _manager(st).set(Resources.from_oci(resources))
    config = store.load_config(container_id)
    merged = (config.setdefault("linux", {}).setdefault("resources", {}))
    for key, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    store.save_config(container_id, jsonio.dumps(config).encode())


def process_from_config(
    config: dict,
    args: list[str],
    *,
    env: list[str] | None = None,
    cwd: str | None = None,
    user: str | None = None,
    additional_gids: list[int] | None = None,
    terminal: bool = False,
    capabilities: list[str] | None = None,
    no_new_privileges: bool | None = None,
) -> dict:
    """An exec `process` built from the container's own (runc exec with inline args)."""
    base = dict(config.get("process") or {})
    base["args"] = list(args)
    base["terminal"] = terminal
    base.pop("consoleSize", None)
    if env:
        merged = {e.partition("=")[0]: e for e in base.get("env") or []}
        for item in env:
            merged[item.partition("=")[0]] = item
        base["env"] = list(merged.values())
    if cwd:
        base["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            base["user"] = {**(base.get("user") or {}), "uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise Invalid(f"--user {user!r}: want UID[:GID] as numbers") from None
    if additional_gids:
        base.setdefault("user", {})["additionalGids"] = list(additional_gids)
    if capabilities:
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            caps.setdefault(key, [])
            for cap in capabilities:
                if cap not in caps[key]:
                    caps[key].append(cap)
        base["capabilities"] = caps
    if no_new_privileges is not None:
        base["noNewPrivileges"] = no_new_privileges
    return base


def exec_process(
    root: str,
    container_id: str,
    process: dict,
    *,
    console_socket: str | None = None,
    pid_file: str | None = None,
    detach: bool = False,
    preserve_fds: int = 0,
    stdio: tuple[int, int, int] | None = None,
    forward_signals: bool = False,
) -> int:
    """Run `process` (an OCI process object) in the container. Detached: its PID; else its exit code."""
    store = StateStore(root)
    st, current = _load(store, container_id)
    if current == STOPPED:
        raise FailedPrecondition(f"cannot exec in container {container_id}: it is stopped")
    if current == PAUSED:
        raise FailedPrecondition(f"cannot exec in container {container_id}: it is paused (resume it first)")
    config = store.load_config(container_id)
    cgroup = _manager(st) if st.get("cgroup_paths") else None
    if cgroup is not None and cgrouplock.needed_for(cgroup.cgroup2_dir()) and not cgrouplock.primed_recently():
        cgrouplock.prime_migration_lock()
    from kapal.runtime import launcher

    launched = launcher.launch_exec(
        store, container_id, st, config, process, cgroup, console_socket=console_socket, pid_file=pid_file,
        detach=detach, preserve_fds=preserve_fds, stdio=stdio,
    )
    if detach:
        return launched.pid
    return launcher.wait_foreground(launched, forward_signals)
