"""Layer tars in and out of directories, safely, with overlay whiteouts.

`apply_layer` unpacks an OCI/Docker layer into an empty snapshot directory. It
never follows a symlink while walking (each parent is opened with O_NOFOLLOW
relative to the one above), so a hostile layer cannot write outside, and it
says why it refused: `..` that escapes, a relative symlink pointing out, a
hardlink to something that is not in this layer, a path through a symlink, a
whiteout for `..`. Absolute names are contained (`/etc/x` → `<dest>/etc/x`), as
Docker does. `.wh.NAME` becomes a 0/0 character device and `.wh..wh..opq` the
xattr `trusted.overlay.opaque=y`; `write_layer` turns both back.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shutil
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Invalid, Unsupported

from .compression import CHUNK, Compression, HashingReader, decompressed

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HostileLayer(Invalid):
    """A layer tried to write outside its directory or to smuggle a link; nothing was written outside."""


@dataclass(frozen=True)
class ApplyResult:
    diff_id: str
    size: int
    compression: Compression


def clean_member_path(name: str, what: str = "entry") -> str:
    """Relative, normalised path inside the layer; `..` that escapes is refused."""
    rel = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if rel == ".." or rel.startswith("../"):
        raise HostileLayer(f"refusing layer: {what} {name!r} climbs out of the layer directory with '..'")
    return rel


class _SafeTree:
    """Opens parents component by component with O_NOFOLLOW; caches directory fds (bounded)."""

    def __init__(self, root: Path, limit: int = 128) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        os.close(self.root_fd)

    def dir_fd(self, rel: str, entry: str) -> int:
        """fd of directory `rel` (created 0755 if missing), never through a symlink."""
        if rel in (".", ""):
            return self.root_fd
        fd = self._cache.get(rel)
        if fd is not None:
            self._cache.move_to_end(rel)
            return fd
        parent, base = posixpath.split(rel)
        pfd = self.dir_fd(parent or ".", entry)
        try:
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            os.mkdir(base, 0o755, dir_fd=pfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                kind = "a symlink" if stat.S_ISLNK(os.lstat(base, dir_fd=pfd).st_mode) else "not a directory"
                raise HostileLayer(
                    f"refusing layer: {entry!r} goes through {rel!r}, which is {kind}; extraction never follows links"
                ) from None
            raise
        self._cache[rel] = fd
        if len(self._cache) > self._limit:
            _, old = self._cache.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, rel: str) -> None:
        """Drop cached fds at or below `rel` (it was removed or replaced)."""
        prefix = rel + "/"
        for key in [k for k in self._cache if k == rel or k.startswith(prefix)]:
            os.close(self._cache.pop(key))


def _remove_existing(tree: _SafeTree, dfd: int, base: str, rel: str, keep_dir: bool) -> bool:
    """Remove what is at base unless both are directories; returns True if a directory was kept."""
    try:
        st = os.lstat(base, dir_fd=dfd)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        tree.forget(rel)
        shutil.rmtree(base, dir_fd=dfd)
    else:
        os.unlink(base, dir_fd=dfd)
    return False


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out = {}
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_PAX):
            out[key[len(_XATTR_PAX) :]] = value.encode("utf-8", "surrogateescape")
    return out


def apply_layer(
    stream: BinaryIO,
    dest: Path,
    *,
    expected_diff_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ApplyResult:
    """Unpack a (possibly compressed) layer tar into dest; returns its diffID (sha256 of the tar)."""
    compression, plain = decompressed(stream)
    hashed = HashingReader(plain, sink=(lambda b: progress(len(b))) if progress else None)
    tree = _SafeTree(dest)
    dir_times: list[tuple[str, int]] = []
    try:
        with tarfile.open(fileobj=hashed, mode="r|", bufsize=CHUNK, errorlevel=2) as tar:  # type: ignore[call-overload]
            for member in tar:
                _apply_member(tar, member, tree, dir_times)
        hashed.drain()
        for rel, mtime in reversed(dir_times):
            parent, base = posixpath.split(rel)
            try:
                pfd = tree.dir_fd(parent or ".", rel)
                os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)
            except (FileNotFoundError, HostileLayer):
                pass
    except tarfile.TarError as e:
        raise Invalid(f"layer is not a valid tar archive: {e}") from e
    finally:
        tree.close()
    if expected_diff_id and hashed.digest != expected_diff_id:
        raise Invalid(
            f"layer diffID mismatch: the image config says {expected_diff_id}, the content is {hashed.digest}"
        )
    return ApplyResult(hashed.digest, hashed.size, compression)


def _apply_member(tar: tarfile.TarFile, m: tarfile.TarInfo, tree: _SafeTree, dir_times: list) -> None:
    rel = clean_member_path(m.name)
    if rel == ".":
        if m.isdir():
            os.chmod(tree.root_fd, m.mode & 0o7777)
            os.chown(tree.root_fd, m.uid, m.gid)
        return
    parent, base = posixpath.split(rel)
    parent = parent or "."
    if base.startswith(WHITEOUT_PREFIX):
        _apply_whiteout(m, rel, parent, base, tree)
        return
    dfd = tree.dir_fd(parent, m.name)
    mtime = int(m.mtime * 1_000_000_000)
    if m.isdir():
        if not _remove_existing(tree, dfd, base, rel, keep_dir=True):
            os.mkdir(base, 0o700, dir_fd=dfd)
        fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
        try:
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            for key, value in _xattrs(m).items():
                os.setxattr(fd, key, value)
        finally:
            os.close(fd)
        dir_times.append((rel, mtime))
        return
    _remove_existing(tree, dfd, base, rel, keep_dir=False)
    if m.isreg():
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            src = tar.extractfile(m)
            if src is not None:
                while chunk := src.read(CHUNK):
                    _write_all(fd, chunk)
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            for key, value in _xattrs(m).items():
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        return
    if m.issym():
        target = m.linkname
        if not target.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(parent, target))
            if resolved == ".." or resolved.startswith("../"):
                raise HostileLayer(f"refusing layer: symlink {m.name!r} -> {target!r} points outside the layer")
        os.symlink(target, base, dir_fd=dfd)
    elif m.islnk():
        target = clean_member_path(m.linkname, f"hardlink target of {m.name!r}")
        tparent, tbase = posixpath.split(target)
        tfd = tree.dir_fd(tparent or ".", m.linkname)
        try:
            st = os.lstat(tbase, dir_fd=tfd)
        except FileNotFoundError:
            raise HostileLayer(
                f"refusing layer: hardlink {m.name!r} -> {m.linkname!r}: the target is not in this layer"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise HostileLayer(f"refusing layer: hardlink {m.name!r} -> {m.linkname!r} links a directory")
        os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
        return
    elif m.ischr() or m.isblk() or m.isfifo():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=dfd)
    else:
        raise Unsupported(f"layer entry {m.name!r} has tar type {m.type!r}, which kapal does not extract")
    os.chown(base, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
    if not m.issym():
        os.chmod(base, m.mode & 0o7777, dir_fd=dfd)
    for key, value in _xattrs(m).items():
        os.setxattr(f"/proc/self/fd/{dfd}/{base}", key, value, follow_symlinks=False)
    os.utime(base, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _apply_whiteout(m: tarfile.TarInfo, rel: str, parent: str, base: str, tree: _SafeTree) -> None:
    dfd = tree.dir_fd(parent, m.name)
    if base == WHITEOUT_OPAQUE:
        os.setxattr(dfd, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_META_PREFIX):
        return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless on overlay, as in Docker
    victim = base[len(WHITEOUT_PREFIX) :]
    if victim in ("", ".", "..") or "/" in victim:
        raise HostileLayer(
            f"refusing layer: whiteout {m.name!r} names {victim!r}, which is not an entry of its directory"
        )
    _remove_existing(tree, dfd, victim, posixpath.join(parent, victim), keep_dir=False)
    os.mknod(victim, stat.S_IFCHR, 0, dir_fd=dfd)
    os.chown(victim, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)


# ---------------------------------------------------------------- layer out


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(root: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Depth-first, sorted, without following links; yields (relpath, lstat)."""
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        yield path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, path)


def _tarinfo(name: str, st: os.stat_result, full: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns / 1e9 if st.st_mtime_ns % 1_000_000_000 else st.st_mtime_ns // 1_000_000_000
    xattrs = {}
    try:
        for key in os.listxattr(full, follow_symlinks=False):
            if key.startswith("trusted.overlay."):
                continue
            xattrs[_XATTR_PAX + key] = os.getxattr(full, key, follow_symlinks=False).decode("utf-8", "surrogateescape")
    except OSError:
        pass
    if xattrs:
        info.pax_headers = xattrs
    return info


def write_layer(
    root: Path,
    out: BinaryIO,
    *,
    overlay_whiteouts: bool = True,
    skip: Callable[[str], bool] | None = None,
    only: dict[str, bool] | None = None,
) -> None:
    """Write the directory as a layer tar; overlay whiteouts/opaque dirs become `.wh.` entries.

    `skip(relpath)` leaves an entry (and what is below it) out; `only`, when given, maps the
    directories whose contents are to be left out to False (volume mountpoints: the directory
    itself is kept, its contents are not).
    """
    base = str(root)
    seen: dict[tuple[int, int], str] = {}
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK)  # type: ignore[call-overload]
    skipped: list[str] = []
    try:
        for rel, st in _walk(base):
            if any(rel.startswith(s + "/") for s in skipped):
                continue
            if skip is not None and skip(rel):
                skipped.append(rel)
                continue
            full = os.path.join(base, rel)
            parent, name = posixpath.split(rel)
            if overlay_whiteouts and _is_whiteout(st):
                info = tarfile.TarInfo(posixpath.join(parent, WHITEOUT_PREFIX + name))
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                continue
            info = _tarinfo(rel, st, full)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                info.name = rel + "/"
                tar.addfile(info)
                if only is not None and only.get(rel) is False:
                    skipped.append(rel)
                    continue
                if overlay_whiteouts and _is_opaque(full):
                    opq = tarfile.TarInfo(f"{rel}/{WHITEOUT_OPAQUE}")
                    opq.mtime = int(st.st_mtime)
                    tar.addfile(opq)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen[key]
                    tar.addfile(info)
                    continue
                seen[key] = rel
                info.size = st.st_size
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            # sockets are not representable in a tar; Docker skips them too
    finally:
        tar.close()


@dataclass(frozen=True)
class Change:
    """One line of `diff`: kind is A (added), C (changed) or D (deleted); path is absolute."""

    kind: str
    path: str

    def to_docker(self) -> dict:
        return {"Path": self.path, "Kind": {"C": 0, "A": 1, "D": 2}[self.kind]}


def _exists_below(lowers: list[str], rel: str) -> bool:
    for lower in lowers:
        full = os.path.join(lower, rel)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not _is_whiteout(st)
    return False


def upper_changes(upper: Path, lowers: list[Path], skip: Callable[[str], bool] | None = None) -> list[Change]:
    """A/C/D of an overlay upperdir against its lowerdirs (topmost first), as `docker diff` lists them."""
    low = [str(p) for p in lowers]
    out: list[Change] = []
    for rel, st in _walk(str(upper)):
        if skip is not None and skip(rel):
            continue
        if _is_whiteout(st):
            out.append(Change("D", "/" + rel))
            continue
        out.append(Change("C" if _exists_below(low, rel) else "A", "/" + rel))
    return sorted(out, key=lambda c: c.path)


class CountingSink(io.RawIOBase):
    """A write-only file object that feeds a callable (used to stream tars into hashes and compressors)."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        self._write(data)
        return len(data)
