"""Capabilities: names, the five sets, and applying them with prctl(2) and capset(2).

Order matters and follows runc: drop the bounding set while still uid 0, keep
permitted caps across setuid (PR_SET_KEEPCAPS), change user, then capset the
effective/permitted/inheritable sets and raise the ambient ones.
"""

from __future__ import annotations

from kapal.errors import Invalid
from kapal.linux import libc

NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}

# Docker's (and containerd's) default set for unprivileged containers.
DOCKER_DEFAULT = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def mask(names: list[str] | tuple[str, ...] | None) -> int:
    """Bit mask of capability names; unknown names are an error the user can fix."""
    bits = 0
    for name in names or ():
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        number = NUMBERS.get(key)
        if number is None:
            raise Invalid(f"unknown capability {name!r}")
        bits |= 1 << number
    return bits


def names(bits: int) -> list[str]:
    return [name for i, name in enumerate(NAMES) if bits >> i & 1]


class CapabilitySets:
    """The five sets of a process, as bit masks."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient")

    def __init__(self, bounding: int, effective: int, permitted: int, inheritable: int, ambient: int) -> None:
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient

    @classmethod
    def from_oci(cls, caps: dict) -> CapabilitySets:
        return cls(
            mask(caps.get("bounding")),
            mask(caps.get("effective")),
            mask(caps.get("permitted")),
            mask(caps.get("inheritable")),
            mask(caps.get("ambient")),
        )


def drop_bounding(keep: int) -> None:
    for cap in range(last_cap() + 1):
        if not keep >> cap & 1:
            libc.prctl(PR_CAPBSET_DROP, cap)


def keep_caps(on: bool) -> None:
    libc.prctl(PR_SET_KEEPCAPS, 1 if on else 0)


def current() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread."""
    header = libc.u32(_LINUX_CAPABILITY_VERSION_3, 0)
    raw = libc.capget(header, 24)
    e0, p0, i0, e1, p1, i1 = libc.read_u32(raw, 6)
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def set_sets(effective: int, permitted: int, inheritable: int) -> None:
    header = libc.u32(_LINUX_CAPABILITY_VERSION_3, 0)
    m32 = 0xFFFFFFFF
    data = libc.u32(
        effective & m32, permitted & m32, inheritable & m32, effective >> 32, permitted >> 32, inheritable >> 32
    )
    try:
        libc.capset(header, data)
    except PermissionError as e:
        _, have, _ = current()
        missing = names(permitted & ~have) or names(effective & ~have)
        if missing:
            raise PermissionError(e.errno, f"capset: the runtime itself lacks {', '.join(missing)}") from e
        raise


def raise_ambient(bits: int) -> list[str]:
    """Raise the ambient caps that are permitted *and* inheritable; returns those that were not.

    The kernel refuses the others; runc only warns about them, and runc's
    own default spec asks for ambient caps that are not inheritable.
    """
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    skipped = []
    for cap in range(last_cap() + 1):
        if bits >> cap & 1:
            try:
                libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
            except PermissionError:
                skipped.append(NAMES[cap])
    return skipped
