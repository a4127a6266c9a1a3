"""Resolve and create paths *inside* a root directory, never outside it.

A container image may hold symlinks such as `etc -> /` or `x -> ../../..`.
Mount targets and device paths come from config.json and must land inside the
rootfs even then (the CVE-2021-30465 class). `resolve_in_root` interprets
every symlink as if `root` were `/`. `open_in_root` does the same while
walking with O_NOFOLLOW directory fds, one component at a time, so even a
symlink swapped in meanwhile is resolved against `root` and never followed
by the kernel; it returns an O_PATH fd whose /proc/self/fd path is what the
mount goes onto.
"""

from __future__ import annotations

import os
import stat

from kapal.errors import Invalid
from kapal.linux import libc

MAX_SYMLINKS = 255


def resolve_in_root(root: str, path: str) -> str:
    """The host path of `path` as seen from inside `root`, symlinks resolved against `root`."""
    root = root.rstrip("/") or "/"
    pending = [c for c in path.split("/") if c][::-1]
    parts: list[str] = []
    hops = 0
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            if parts:
                parts.pop()
            continue
        candidate = root + "/" + "/".join([*parts, name]) if root != "/" else "/" + "/".join([*parts, name])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            parts.append(name)
            continue
        if not stat.S_ISLNK(st.st_mode):
            parts.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise Invalid(f"too many levels of symbolic links resolving {path!r} in {root}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            parts = []
        pending.extend(c for c in reversed(target.split("/")) if c)
    joined = "/".join(parts)
    if root == "/":
        return "/" + joined
    return root + "/" + joined if joined else root


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def open_in_root(root: str, path: str, create: str | None = None, mode: int = 0o755) -> int:
    """An O_PATH fd of `path` inside `root` (an absolute path without symlinks), creating what is missing.

    `create` is None (must exist), "dir" (mkdir -p) or "file" (parents plus
    an empty file). An existing path is opened by the kernel in one
    openat2(RESOLVE_IN_ROOT) call. Otherwise the walk opens one component at
    a time with O_NOFOLLOW from its parent's fd and resolves symlinks itself,
    against `root`: the result is inside `root` or this raises.
    """
    fd = _openat2_in_root(root, path, must_exist=create is None)
    if fd is not None:
        return fd
    stack = [os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
    pending = [c for c in path.split("/") if c][::-1]
    hops = 0
    try:
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except FileNotFoundError:
                if create is None:
                    raise
                _create_at(stack[-1], name, "file" if create == "file" and not pending else "dir", mode)
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                stack.append(fd)
                continue
            target = os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link itself, not /proc's view
            os.close(fd)
            hops += 1
            if hops > MAX_SYMLINKS:
                raise Invalid(f"too many levels of symbolic links resolving {path!r} in {root}")
            if target.startswith("/"):
                while len(stack) > 1:
                    os.close(stack.pop())
            pending.extend(c for c in reversed(target.split("/")) if c)
        result = stack.pop() if len(stack) > 1 else os.dup(stack[0])
        real = os.readlink(f"/proc/self/fd/{result}")
        if not _within(root, real):
            os.close(result)
            raise Invalid(f"{path!r} resolves to {real}, outside the container's root {root}; refusing it")
        return result
    finally:
        for fd in stack:
            os.close(fd)


RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_openat2_works = True


def _openat2_in_root(root: str, path: str, must_exist: bool = False) -> int | None:
    """openat2(root, path, O_PATH, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), or None if missing or unsupported.

    With `must_exist`, a path the kernel found missing raises at once: the walk would only find the same.
    """
    global _openat2_works
    if not _openat2_works:
        return None
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = libc.openat2(root_fd, path.lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC,
                          RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno == 38:  # ENOSYS: before Linux 5.6
            _openat2_works = False
        elif must_exist and e.errno in (2, 20):  # FileNotFoundError, NotADirectoryError
            raise
        return None
    finally:
        os.close(root_fd)
    return fd


def _create_at(dir_fd: int, name: str, kind: str, mode: int) -> None:
    # mkdirat/openat need a real directory fd, not O_PATH.
    real_dir = os.open(f"/proc/self/fd/{dir_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if kind == "dir":
            try:
                os.mkdir(name, mode, dir_fd=real_dir)
            except FileExistsError:
                pass
        else:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=real_dir))
    finally:
        os.close(real_dir)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"
