"""Private mount(2)/umount2(2) helper for the engine's rootfs and volume mounts.

Temporary: the linux layer owns mount(2) by design; this goes once kapal.linux
exposes a mount call that takes the snapshotter's Mount data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from kapal.image.snapshots import Mount

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


def _call(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = _libc.mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def mount(m: Mount, target: str) -> None:
    ro = "ro" in m.options
    if m.type == "bind":
        flags = MS_BIND | (MS_REC if "rbind" in m.options else 0)
        _call(m.source, target, None, flags, None)
        if ro:
            _call("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | (flags & MS_REC), None)
        return
    _call(m.source, target, m.type, MS_RDONLY if ro else 0, m.data or None)


def mount_all(mounts: list[Mount], target: str) -> None:
    for m in mounts:
        mount(m, target)


def unmount(target: str, detach: bool = False) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            return
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mounted(target: str) -> bool:
    real = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == real:
                return True
    return False
