"""Docker's copy-up: a new, empty volume first takes the image's content at the path it is mounted on.

The copy keeps what a container would see there: files, directories, symlinks (not followed), hardlinks
(as links), device nodes and fifos, modes (setuid included), owners, times and extended attributes.
The source is the container's merged root filesystem before the volume is mounted over it, resolved
inside the rootfs (a symlink in the image never leads out of it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

from kapal.linux.securepath import resolve_in_root

# overlay's own attributes describe the layer, not the file
_SKIPPED_XATTRS = ("trusted.overlay.",)


def copy_up(rootfs: str, destination: str, volume_dir: str) -> bool:
    """Copy the rootfs's directory at `destination` into `volume_dir` when that is empty and the image has
    a directory there; returns whether it copied."""
    source = resolve_in_root(rootfs, destination)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    with os.scandir(volume_dir) as entries:
        if any(True for _ in entries):
            return False
    _copy_children(source, volume_dir, {})
    _copy_metadata(source, volume_dir, st)
    return True


def _copy_children(source: str, dest: str, linked: dict[tuple[int, int], str]) -> None:
    with os.scandir(source) as entries:
        children = list(entries)
    for entry in children:
        src, dst = entry.path, os.path.join(dest, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = linked.setdefault((st.st_dev, st.st_ino), dst)
            if first != dst:
                os.link(first, dst)
                continue
        if stat.S_ISDIR(mode):
            os.mkdir(dst, 0o700)
            _copy_children(src, dst, linked)
        elif stat.S_ISREG(mode):
            shutil.copyfile(src, dst, follow_symlinks=False)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(dst, mode, st.st_rdev)
        else:
            continue  # a socket is a live endpoint of some process, not content
        _copy_metadata(src, dst, st)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    link = stat.S_ISLNK(st.st_mode)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)  # before chmod: chown clears setuid bits
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(OSError):
        for name in os.listxattr(src, follow_symlinks=False):
            if name.startswith(_SKIPPED_XATTRS):
                continue
            with contextlib.suppress(OSError):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
