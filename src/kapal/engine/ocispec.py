"""Docker's container config + image config → an OCI runtime spec (config.json), as dockerd builds it.

Docker's rules: a Cmd given at create replaces the image's; an Entrypoint
given replaces the image's and drops its Cmd; Env merges by key over the
image's; an image without PATH gets the default one; User "" is 0:0 and a
user name is looked up in the rootfs's /etc/passwd only when there is one;
a bare command is resolved on the container's PATH inside its rootfs.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from kapal.errors import Invalid, NotFound

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


class CommandNotFound(NotFound):
    """exec: the command is not in the container (docker run exits 127)."""


class CommandNotExecutable(Invalid):
    """exec: permission denied (docker run exits 126)."""


def merge_env(image_env: list[str] | None, env: list[str] | None) -> list[str]:
    merged: dict[str, str] = {}
    for item in (image_env or []) + (env or []):
        key, sep, value = item.partition("=")
        merged[key] = f"{key}={value}" if sep else item
    if "PATH" not in merged:
        merged = {"PATH": f"PATH={DEFAULT_PATH}", **merged}
    return list(merged.values())


def command_of(image_config: dict, config: dict) -> list[str]:
    entrypoint = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entrypoint is not None:
        ep = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
        args = ep + list(cmd or [])
    else:
        ep = list(image_config.get("Entrypoint") or [])
        args = ep + list(cmd if cmd else image_config.get("Cmd") or [])
    if not args:
        raise Invalid("no command specified")
    return args


def _inside(rootfs: Path, path: str, depth: int = 0) -> Path | None:
    """Resolve `path` inside rootfs, following symlinks as the container would (never out of it)."""
    if depth > 40:
        return None
    current = Path(rootfs)
    parts = [p for p in path.split("/") if p and p != "."]
    for i, part in enumerate(parts):
        if part == "..":
            current = current.parent if current != rootfs else current
            continue
        candidate = current / part
        try:
            st = os.lstat(candidate)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(candidate)
            base = "/" if target.startswith("/") else "/" + str(current.relative_to(rootfs))
            rest = "/".join(parts[i + 1 :])
            return _inside(rootfs, posixpath.join(base, target, rest), depth + 1)
        current = candidate
    return current


def resolve_command(rootfs: Path, argv0: str, env: list[str]) -> str:
    """A bare name → its path on the container's PATH inside rootfs; errors as Docker words them."""
    if "/" in argv0:
        found = _inside(rootfs, argv0)
        if found is None:
            raise CommandNotFound(f'exec: "{argv0}": stat {argv0}: no such file or directory')
        if not os.access(found, os.X_OK) or found.is_dir():
            raise CommandNotExecutable(f'exec: "{argv0}": permission denied')
        return argv0
    path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    for d in path.split(":"):
        if not d:
            continue
        candidate = posixpath.join(d, argv0)
        found = _inside(rootfs, candidate)
        if found is not None and found.is_file() and os.access(found, os.X_OK):
            return candidate
    raise CommandNotFound(f'exec: "{argv0}": executable file not found in $PATH')


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """ "" → 0:0; numeric uid[:gid]; names from the rootfs's /etc/passwd and /etc/group."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")

    def lookup(file: str, key: str) -> list[str] | None:
        path = _inside(rootfs, file)
        if path is None:
            return None
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == key:
                return fields
        return None

    gid = 0
    if name.isdigit():
        uid = int(name)
        entry = None
    else:
        entry = lookup("/etc/passwd", name)
        if entry is None:
            raise Invalid(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(entry[2])
        gid = int(entry[3]) if len(entry) > 3 and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = lookup("/etc/group", group)
            if gentry is None:
                raise Invalid(f"unable to find group {group}: no matching entries in group file")
            gid = int(gentry[2])
    elif entry is None and name.isdigit():
        passwd = _inside(rootfs, "/etc/passwd")
        if passwd is not None:
            for line in passwd.read_text(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 4 and fields[2] == name and fields[3].isdigit():
                    gid = int(fields[3])
                    break
    return uid, gid, []


def default_mounts(*, shm_size: int = 64 << 20, ipc_none: bool = False, privileged: bool = False) -> list[dict]:
    """/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and the container's cgroups, as Docker mounts them."""
    ro = [] if privileged else ["ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
    ]
    if not ipc_none:
        mounts.insert(3, {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
        })
    return mounts


def build_spec(
    *,
    rootfs: Path,
    args: list[str],
    env: list[str],
    cwd: str,
    user: tuple[int, int, list[int]],
    hostname: str,
    tty: bool,
    mounts: list[dict],
    capabilities: list[str],
    resources: dict,
    namespaces: list[dict],
    domainname: str = "",
    readonly_rootfs: bool = False,
    cgroups_path: str | None = None,
    devices: list[dict] | None = None,
    rlimits: list[dict] | None = None,
    no_new_privileges: bool = False,
    seccomp: dict | None = None,
    privileged: bool = False,
    sysctl: dict[str, str] | None = None,
    oom_score_adj: int | None = None,
    console_size: tuple[int, int] | None = None,
    masked_paths: list[str] | None = None,
    readonly_paths: list[str] | None = None,
) -> dict:
    """The OCI config.json; `mounts` are the defaults (default_mounts) followed by the container's own."""
    uid, gid, groups = user
    process: dict = {
        "terminal": tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": groups},
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": {k: list(capabilities) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": no_new_privileges,
    }
    if rlimits:
        process["rlimits"] = rlimits
    if oom_score_adj:
        process["oomScoreAdj"] = oom_score_adj
    if tty and console_size and console_size[0] and console_size[1]:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    linux: dict = {
        "namespaces": namespaces,
        "resources": resources,
        "maskedPaths": [] if privileged else (MASKED_PATHS if masked_paths is None else masked_paths),
        "readonlyPaths": [] if privileged else (READONLY_PATHS if readonly_paths is None else readonly_paths),
    }
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if devices:
        linux["devices"] = devices
    if seccomp:
        linux["seccomp"] = seccomp
    if sysctl:
        linux["sysctl"] = dict(sysctl)
    spec = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": str(rootfs), "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if domainname:
        spec["domainname"] = domainname
    return spec
