"""Container state under the runtime's root directory (default /run/kapal-runtime).

Layout of ROOT/ID/:
  state.json   written atomically (temp file + rename); its presence means the
               container exists
  config.json  the bundle's config as it was at create (exec reads it)
  exec.fifo    present while the container is `created`; init blocks opening
               it for writing until `start` opens it for reading

The status is never stored: like runc's refreshState it is derived from the
world each time - init gone (or PID reused) -> stopped; exec.fifo present ->
created; freezer frozen -> paused; otherwise running.
"""

from __future__ import annotations

import os
import time

from kapal.errors import AlreadyExists, Invalid, NotFound
from kapal.linux import proc
from kapal.runtime import jsonio

DEFAULT_ROOT = "/run/kapal-runtime"
STATE = "state.json"
CONFIG = "config.json"
FIFO = "exec.fifo"

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if not container_id or container_id in (".", "..") or not set(container_id) <= _ID_CHARS:
        raise Invalid(f"invalid container id {container_id!r}: use letters, digits and _ + - .")
    if len(container_id) > 1024:
        raise Invalid("invalid container id: longer than 1024 characters")


def rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    ns = int(t * 1e9) % 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ns:09d}Z"


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temp file and rename: readers see all or nothing."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class StateStore:
    """The containers under one runtime root."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        return self.root + "/" + container_id

    def reserve(self, container_id: str) -> str:
        """Make ROOT/ID (not yet a container until state.json appears)."""
        check_id(container_id)
        try:
            os.mkdir(self.root, 0o711)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(self.root, 0o711, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {container_id!r} already exists") from None
        return path

    def save(self, container_id: str, state: dict) -> None:
        write_atomic(self.dir(container_id) + "/" + STATE, jsonio.dumps(state).encode())

    def stage(self, container_id: str, state: dict) -> str:
        """Write the state of a container still being created, invisible until `publish` (as runc's)."""
        path = self.dir(container_id) + "/.staged-" + STATE
        write_atomic(path, jsonio.dumps(state).encode())
        return path

    def publish(self, container_id: str, staged: str) -> None:
        os.rename(staged, self.dir(container_id) + "/" + STATE)

    def load(self, container_id: str) -> dict:
        check_id(container_id)
        try:
            with open(self.dir(container_id) + "/" + STATE, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"container {container_id!r} does not exist") from None
        return jsonio.loads(data, what=f"state of container {container_id}")  # type: ignore[return-value]

    def save_config(self, container_id: str, raw: bytes) -> None:
        write_atomic(self.dir(container_id) + "/" + CONFIG, raw)

    def load_config(self, container_id: str) -> dict:
        check_id(container_id)
        try:
            with open(self.dir(container_id) + "/" + CONFIG, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"container {container_id!r} does not exist") from None
        return jsonio.loads(data, what=f"config of container {container_id}")  # type: ignore[return-value]

    def fifo(self, container_id: str) -> str:
        return self.dir(container_id) + "/" + FIFO

    def remove(self, container_id: str) -> None:
        path = self.dir(container_id)
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(path + "/" + name)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(self.root + "/" + n + "/" + STATE)]


def status(store: StateStore, container_id: str, state: dict, frozen: bool | None = None) -> str:
    """created / running / paused / stopped, derived from the world (runc's refreshState)."""
    pid = state.get("pid") or 0
    if pid <= 0 or not proc.is_alive(pid, state.get("init_start")):
        return STOPPED
    if os.path.exists(store.fifo(container_id)):
        return CREATED
    if frozen is None:
        frozen = is_frozen(state)
    return PAUSED if frozen else RUNNING


def is_frozen(state: dict) -> bool:
    from kapal.linux.cgroups import manager_from_paths

    paths = state.get("cgroup_paths") or {}
    if not paths:
        return False
    return manager_from_paths(state.get("cgroup_version", 1), paths).frozen()


def oci_state(store: StateStore, container_id: str, state: dict) -> dict:
    """The state as `runc state` prints it (OCI state plus runc's extra fields)."""
    st = status(store, container_id, state)
    return {
        "ociVersion": state.get("ociVersion", "1.0.2"),
        "id": container_id,
        "pid": state.get("pid", 0) if st != STOPPED else 0,
        "status": st,
        "bundle": state.get("bundle", ""),
        "rootfs": state.get("rootfs", ""),
        "created": state.get("created", ""),
        "annotations": state.get("annotations") or {},
        "owner": state.get("owner", ""),
    }
