"""`docker cp`: stat, read (tar out) and write (tar in) a path of a container's filesystem.

A container path is resolved inside its root (symlinks followed as the container would, never out of
it) and then mapped to where it lives on the host: a volume or bind mount's source for paths below a
mount's destination, the container's merged overlay (mounted for the call when it is stopped)
otherwise. Archives are extracted with tarfile's `tar` filter (no absolute names, nothing written
outside the destination), symlinks kept as they are, owners set to root unless copyUIDGID.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import stat
import tarfile
import time
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Invalid, NotFound

# Go's os.FileMode type bits, which the docker CLI reads from X-Docker-Container-Path-Stat
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHARDEV = 1 << 21
GO_MODE_STICKY = 1 << 20


def go_mode(st: os.stat_result) -> int:
    mode = stat.S_IMODE(st.st_mode) & 0o777
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        mode |= GO_MODE_DIR
    elif kind == stat.S_IFLNK:
        mode |= GO_MODE_SYMLINK
    elif kind == stat.S_IFIFO:
        mode |= GO_MODE_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= GO_MODE_SOCKET
    elif kind == stat.S_IFBLK:
        mode |= GO_MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= GO_MODE_DEVICE | GO_MODE_CHARDEV
    if st.st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st.st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st.st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


class ContainerPaths:
    """Maps container paths to host paths for one container (its rootfs and its bind/volume mounts)."""

    def __init__(self, rootfs: Path, mounts: list[dict]) -> None:
        self.rootfs = Path(rootfs)
        self.mounts = sorted(
            ((m["Destination"].rstrip("/"), Path(m["Source"])) for m in mounts if m.get("Type") in ("bind", "volume")),
            key=lambda item: -len(item[0]),
        )

    def host(self, path: str) -> Path:
        """Where a resolved (symlink-free, absolute) container path lives on the host."""
        for dest, source in self.mounts:
            if path == dest or path.startswith(dest + "/"):
                return source / path[len(dest) :].lstrip("/")
        return self.rootfs / path.lstrip("/")

    def resolve(self, path: str, follow_last: bool = False, depth: int = 0) -> str:
        """The container path with every symlink in it followed inside the container (the last
        component only when follow_last), as a clean absolute path."""
        if depth > 40:
            raise Invalid(f"too many levels of symbolic links in {path}")
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            candidate = posixpath.join(current, part)
            last = i == len(parts) - 1
            try:
                st = os.lstat(self.host(candidate))
            except FileNotFoundError:
                return posixpath.join(candidate, *parts[i + 1 :])
            if stat.S_ISLNK(st.st_mode) and (not last or follow_last):
                target = os.readlink(self.host(candidate))
                base = "/" if target.startswith("/") else current
                rest = "/".join(parts[i + 1 :])
                return self.resolve(posixpath.join(base, target, rest), follow_last, depth + 1)
            current = candidate
        return current


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def stat_path(paths: ContainerPaths, path: str, container_name: str) -> dict:
    follow = path.endswith("/") or path.endswith("/.")
    resolved = paths.resolve(path, follow_last=follow)
    host = paths.host(resolved)
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {container_name}") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = paths.resolve(path, follow_last=True)
    return {
        "name": posixpath.basename(resolved.rstrip("/")) or "/",
        "size": st.st_size,
        "mode": go_mode(st),
        "mtime": _rfc3339(st.st_mtime),
        "linkTarget": link,
    }


def stat_header(doc: dict) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def write_tar(paths: ContainerPaths, path: str, out: BinaryIO) -> None:
    """A tar of `path` (a file, a link, or a directory with its contents), named by its base name."""
    follow = path.endswith("/") or path.endswith("/.")
    resolved = paths.resolve(path, follow_last=follow)
    host = paths.host(resolved)
    if not os.path.lexists(host):
        raise NotFound(f"Could not find the file {path}")
    name = posixpath.basename(resolved.rstrip("/")) or "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(host), arcname=name, recursive=True)


def extract_tar(
    paths: ContainerPaths, path: str, stream: BinaryIO, *, copy_uid_gid: bool = False, no_overwrite_dir_non_dir: bool
) -> None:
    """Unpack a tar into the directory `path` of the container."""
    resolved = paths.resolve(path, follow_last=True)
    dest = paths.host(resolved)
    if not dest.exists():
        raise NotFound(f"Could not find the file {path} in container")
    if not dest.is_dir():
        raise Invalid(f"extraction point is not a directory: {path}")

    def member_filter(member: tarfile.TarInfo, where: str) -> tarfile.TarInfo | None:
        linkname = member.linkname
        checked = tarfile.tar_filter(member.replace(linkname="") if member.issym() else member, where)
        if checked is None:
            return None
        if member.issym():
            checked = checked.replace(linkname=linkname)  # a link may point anywhere: it is not followed here
        if not copy_uid_gid:
            checked = checked.replace(uid=0, gid=0, uname="", gname="")
        if no_overwrite_dir_non_dir:
            existing = os.path.join(where, checked.name)
            if os.path.lexists(existing):
                is_dir = stat.S_ISDIR(os.lstat(existing).st_mode)
                if is_dir and not checked.isdir():
                    raise Invalid(f"cannot overwrite directory {checked.name!r} with non-directory")
                if not is_dir and checked.isdir():
                    raise Invalid(f"cannot overwrite non-directory {checked.name!r} with directory")
        return checked

    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            tar.extractall(str(dest), numeric_owner=True, filter=member_filter)
    except tarfile.FilterError as e:
        raise Invalid(f"refused archive entry: {e}") from e
    except tarfile.TarError as e:
        raise Invalid(f"the request body is not a tar archive: {e}") from e
