"""mount(2) flags, OCI mount options, and /proc/self/mountinfo.

`parse_options` turns an OCI `options` list into (flags, propagation flags, data
string, extensions) the way mount(8) reads them; anything that is neither a
flag nor propagation is passed to the filesystem as data, where the kernel
judges it.
"""

from __future__ import annotations

import os

from kapal.errors import Unsupported
from kapal.linux import libc

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


def mount_attrs(flags: int) -> int:
    """MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC -> the MOUNT_ATTR_* bits mount_setattr(2) takes."""
    out = 0
    for ms, attr in ((MS_RDONLY, MOUNT_ATTR_RDONLY), (MS_NOSUID, MOUNT_ATTR_NOSUID), (MS_NODEV, MOUNT_ATTR_NODEV),
                     (MS_NOEXEC, MOUNT_ATTR_NOEXEC)):
        if flags & ms:
            out |= attr
    return out

# option -> (clear?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Options runtimes understand beyond mount(8): kapal implements these...
EXTENSIONS = frozenset({"tmpcopyup"})
# ...and refuses these by name rather than pass them to the kernel as data.
UNSUPPORTED = frozenset(
    {
        "idmap",
        "ridmap",
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnodiratime",
        "rdiratime",
        "rrelatime",
        "rnorelatime",
        "rnoatime",
        "ratime",
        "rstrictatime",
        "rnostrictatime",
        "rnosymfollow",
        "rsymfollow",
        "copy-symlink",
    }
)


class MountOptions:
    """An OCI options list, split the way the kernel takes it."""

    __slots__ = ("flags", "propagation", "data", "extensions")

    def __init__(self, flags: int, propagation: list[int], data: str, extensions: frozenset[str]) -> None:
        self.flags = flags
        self.propagation = propagation
        self.data = data
        self.extensions = extensions

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def parse_options(options: list[str] | None) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    extensions: set[str] = set()
    for opt in options or ():
        entry = FLAGS.get(opt)
        if entry is not None:
            clear, flag = entry
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in EXTENSIONS:
            extensions.add(opt)
        elif opt in UNSUPPORTED:
            raise Unsupported(f"mount option {opt!r} is not supported by kapal-runtime")
        else:
            data.append(opt)
    return MountOptions(flags, propagation, ",".join(data), frozenset(extensions))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    libc.mount(source, target, fstype, flags, data or None)


def umount(target: str, flags: int = 0) -> None:
    libc.umount2(target, flags)


def mount_with_options(fstype: str, source: str, target: str, options: list[str] | None = None) -> None:
    """mount(8) semantics for one entry: `bind`/`rbind` (then a remount for ro, nosuid...), propagation
    options applied afterwards, everything else as filesystem data (e.g. overlay's lowerdir=...).

    For callers outside a container's rootfs (the engine's overlay and volume mounts); inside a rootfs
    the runtime resolves targets with kapal.linux.securepath first.
    """
    opts = parse_options(options)
    if fstype == "bind" or opts.is_bind:
        mount(source, target, None, opts.flags & (MS_BIND | MS_REC) or MS_BIND)
        extra = opts.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if extra:
            mount(None, target, None, MS_REMOUNT | MS_BIND | extra)
    else:
        mount(source, target, fstype, opts.flags, opts.data)
    for prop in opts.propagation:
        mount(None, target, None, prop)


class MountInfo:
    """One line of /proc/PID/mountinfo."""

    __slots__ = ("mount_id", "parent_id", "root", "mountpoint", "options", "optional", "fstype", "source", "super")

    def __init__(self, line: str) -> None:
        left, _, right = line.partition(" - ")
        fields = left.split(" ")
        self.mount_id = int(fields[0])
        self.parent_id = int(fields[1])
        self.root = _unescape(fields[3])
        self.mountpoint = _unescape(fields[4])
        self.options = fields[5]
        self.optional = fields[6:]
        rest = right.split(" ")
        self.fstype = rest[0]
        self.source = _unescape(rest[1]) if len(rest) > 1 else ""
        self.super = rest[2] if len(rest) > 2 else ""


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo(pid: str | int = "self") -> list[MountInfo]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [MountInfo(line) for line in f.read().splitlines() if line]


def mountpoint_of(path: str, mounts: list[MountInfo] | None = None) -> MountInfo:
    """The mount that contains `path` (the longest mountpoint prefix, the last mounted wins)."""
    best: MountInfo | None = None
    for m in mounts if mounts is not None else mountinfo():
        mp = m.mountpoint
        if path == mp or mp == "/" or path.startswith(mp + "/"):
            if best is None or len(mp) >= len(best.mountpoint):
                best = m
    assert best is not None
    return best


def unmount_tree(root: str | os.PathLike[str], *, include_root: bool = True) -> tuple[list[str], list[str]]:
    """Detach every mount below `root` (and `root` itself unless told not to), deepest first, a few passes
    for mounts that propagation brings back; returns (unmounted, problems)."""
    prefix = os.path.realpath(root) if os.path.exists(root) else os.fspath(root)
    unmounted: list[str] = []
    problems: dict[str, str] = {}
    for _ in range(3):
        points = sorted({m.mountpoint for m in mountinfo()
                         if (include_root and m.mountpoint == prefix) or m.mountpoint.startswith(prefix + "/")},
                        key=len, reverse=True)
        if not points:
            break
        for mp in points:
            try:
                umount(mp, MNT_DETACH)
                unmounted.append(mp)
                problems.pop(mp, None)
            except OSError as e:
                problems[mp] = f"unmount {mp}: {e}"
    return unmounted, list(problems.values())
