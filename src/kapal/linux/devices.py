"""Device nodes and device-access rules, shared by /dev creation and the devices cgroup.

A `DeviceRule` is one entry of an allow-list (`c 1:3 rwm`); a `Device` is a
node to create (`/dev/null`, char 1:3, 0666). The default nodes are those
every container gets when config.json lists none.
"""

from __future__ import annotations

import os
import stat

from kapal.errors import Invalid


class DeviceRule:
    """`allow` a `kind` (a, c, b) device `major:minor` (-1 = any) with `access` (r, w, m)."""

    __slots__ = ("allow", "kind", "major", "minor", "access")

    def __init__(self, allow: bool, kind: str = "a", major: int = -1, minor: int = -1, access: str = "rwm") -> None:
        if kind not in ("a", "c", "b", "u", "p"):
            raise Invalid(f"device rule type {kind!r}: want a, c, b, u or p")
        if not access or set(access) - set("rwm"):
            raise Invalid(f"device rule access {access!r}: want a combination of r, w, m")
        self.allow = allow
        self.kind = "c" if kind == "u" else kind
        self.major = major
        self.minor = minor
        self.access = access

    @classmethod
    def from_oci(cls, rule: dict) -> DeviceRule:
        major = rule.get("major")
        minor = rule.get("minor")
        return cls(
            bool(rule.get("allow")),
            rule.get("type") or "a",
            -1 if major is None else major,
            -1 if minor is None else minor,
            rule.get("access") or "rwm",
        )

    def cgroup_v1(self) -> str:
        """The line written to devices.allow / devices.deny."""
        if self.kind == "a":
            return "a"
        major = "*" if self.major < 0 else str(self.major)
        minor = "*" if self.minor < 0 else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"

    def is_everything(self) -> bool:
        return self.kind == "a" or (self.major < 0 and self.minor < 0 and set(self.access) == set("rwm"))

    def __repr__(self) -> str:
        return f"DeviceRule({'allow' if self.allow else 'deny'} {self.cgroup_v1()})"


class Device:
    """A node to create under the container's /dev."""

    __slots__ = ("path", "kind", "major", "minor", "mode", "uid", "gid")

    def __init__(self, path: str, kind: str, major: int, minor: int, mode: int = 0o666, uid: int = 0, gid: int = 0):
        self.path = path
        self.kind = kind
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid

    @classmethod
    def from_oci(cls, dev: dict) -> Device:
        kind = dev.get("type")
        path = dev.get("path") or ""
        if kind not in ("c", "b", "u", "p") or not path.startswith("/dev/"):
            raise Invalid(f"linux.devices entry {dev!r}: needs type c, b, u or p and a path under /dev")
        return cls(
            path,
            "c" if kind == "u" else kind,
            dev.get("major", 0),
            dev.get("minor", 0),
            dev.get("fileMode", 0o666) & 0o7777,
            dev.get("uid", 0),
            dev.get("gid", 0),
        )

    def file_type(self) -> int:
        return {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[self.kind]

    def rule(self) -> DeviceRule:
        return DeviceRule(True, self.kind if self.kind != "p" else "c", self.major, self.minor, "rwm")

    def create_at(self, dir_fd: int, name: str) -> None:
        """mknod `name` in the directory `dir_fd` with this node's type, numbers, mode and owner."""
        os.mknod(name, self.file_type() | self.mode, os.makedev(self.major, self.minor), dir_fd=dir_fd)
        os.chmod(name, self.mode, dir_fd=dir_fd)
        if self.uid or self.gid:
            os.chown(name, self.uid, self.gid, dir_fd=dir_fd)


DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3),
    Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7),
    Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9),
    Device("/dev/tty", "c", 5, 0),
)

# Always allowed on top of the container's own rules (what runc allows too):
# mknod of anything, the default nodes, the console, ptys and /dev/ptmx.
DEFAULT_RULES = (
    DeviceRule(True, "c", -1, -1, "m"),
    DeviceRule(True, "b", -1, -1, "m"),
    *(d.rule() for d in DEFAULT_DEVICES),
    DeviceRule(True, "c", 5, 1, "rwm"),
    DeviceRule(True, "c", 136, -1, "rwm"),
    DeviceRule(True, "c", 5, 2, "rwm"),
)
