"""Named network namespaces as bind-mounted files, without `ip netns`.

A namespace lives as long as something holds it: a process, an open fd, or
a bind mount of its /proc/.../ns/net file. `create` unshares a fresh network
namespace in a short-lived thread (namespaces are per thread, so the caller
never moves) and pins it with a bind mount at a path the caller chooses;
`remove` unmounts and unlinks it. `call_in` runs a function in a thread that
has joined a namespace: sockets made there stay in that namespace.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kapal.errors import AlreadyExists, FailedPrecondition, NotFound

from . import _syscalls

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="kapal-netns")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_netns(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a network namespace file (a bind mount of one, or /proc/PID/ns/net)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def create(path: str | os.PathLike[str]) -> str:
    """A new, empty network namespace (only a down `lo`), pinned at `path`."""
    target = Path(path)
    if is_netns(target):
        raise AlreadyExists(f"network namespace {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def pin() -> None:
        _syscalls.unshare(_syscalls.CLONE_NEWNET)
        _syscalls.bind_mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(target))

    try:
        _in_thread(pin)
    except OSError as e:
        _unlink(target)
        if e.errno == errno.EPERM:
            raise FailedPrecondition(f"cannot create network namespace {target}: needs root (CAP_SYS_ADMIN)") from e
        raise
    return str(target)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove(path: str | os.PathLike[str]) -> None:
    """Unpin and delete the namespace file; a missing or unmounted file is fine (idempotent)."""
    target = Path(path)
    try:
        _syscalls.umount2(str(target), _syscalls.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    _unlink(target)


def call_in(path: str | os.PathLike[str], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn(*args, **kwargs) in a thread inside the network namespace at `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NotFound(f"network namespace {path} does not exist") from e

    def enter_and_run() -> T:
        _syscalls.setns(fd, _syscalls.CLONE_NEWNET)
        return fn(*args, **kwargs)

    try:
        return _in_thread(enter_and_run)
    finally:
        os.close(fd)
