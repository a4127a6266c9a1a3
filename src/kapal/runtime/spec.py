"""config.json (OCI runtime spec 1.x): loading, validation, and runc's default spec.

`load_bundle` reads and checks a bundle before anything is created, so a bad
bundle fails with one line naming the problem and leaves nothing behind.
The result is the parsed dict plus the raw bytes (kept in the state
directory for later `exec` calls).
"""

from __future__ import annotations

import os

from kapal.errors import Invalid, NotFound, Unsupported
from kapal.linux.namespaces import NAMESPACES
from kapal.runtime import jsonio

# Sysctls that belong to a namespace, and which one (runc's rule; others would change the host).
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)


def load_bundle(bundle: str) -> tuple[dict, bytes]:
    if not os.path.isdir(bundle):
        raise NotFound(f"bundle {bundle} does not exist (or is not a directory)")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle} has no config.json (run 'kapal-runtime spec' to write one)") from None
    spec = jsonio.loads(raw, what=path)
    if not isinstance(spec, dict):
        raise Invalid(f"{path}: want a JSON object")
    return spec, raw


def rootfs_path(spec: dict, bundle: str) -> str:
    root = spec.get("root")
    if not isinstance(root, dict) or not root.get("path"):
        raise Invalid("config.json: root.path is missing")
    path = root["path"]
    if not path.startswith("/"):
        path = os.path.join(bundle, path)
    path = os.path.realpath(path)
    if not os.path.isdir(path):
        raise NotFound(f"rootfs {path} does not exist (root.path in config.json)")
    return path


def namespaces(spec: dict) -> list[tuple[str, str | None]]:
    """[(type, path or None)] from linux.namespaces, checked."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for ns in (spec.get("linux") or {}).get("namespaces") or ():
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACES:
            raise Invalid(f"config.json: unknown namespace type {kind!r} (want one of {', '.join(NAMESPACES)})")
        if kind in seen:
            raise Invalid(f"config.json: namespace type {kind!r} is listed twice")
        seen.add(kind)
        path = ns.get("path") or None
        if path is not None and not os.path.exists(path):
            raise NotFound(f"config.json: {kind} namespace path {path} does not exist")
        out.append((kind, path))
    return out


def validate(spec: dict, bundle: str, need_process: bool = True) -> str:
    """Check what can be checked before creating anything; returns the rootfs path."""
    if need_process:
        proc = spec.get("process")
        if not isinstance(proc, dict):
            raise Invalid("config.json: process is missing")
        validate_process(proc)
    linux = spec.get("linux")
    if linux is None:
        raise Invalid("config.json: linux is missing (kapal-runtime runs Linux containers)")
    nss = dict(namespaces(spec))
    if "user" in nss or linux.get("uidMappings") or linux.get("gidMappings"):
        raise Unsupported("user namespaces (linux.uidMappings/gidMappings) are not supported by kapal-runtime")
    if "time" in nss or linux.get("timeOffsets"):
        raise Unsupported("time namespaces (linux.timeOffsets) are not supported by kapal-runtime")
    if "mount" not in nss:
        raise Invalid("config.json: kapal-runtime needs a mount namespace (add {\"type\": \"mount\"})")
    for field, what in (
        ("intelRdt", "linux.intelRdt"),
        ("personality", "linux.personality"),
        ("memoryPolicy", "linux.memoryPolicy"),
        ("netDevices", "linux.netDevices"),
    ):
        if linux.get(field):
            raise Unsupported(f"{what} is not supported by kapal-runtime")
    if linux.get("mountLabel"):
        raise Unsupported("linux.mountLabel (SELinux) is not supported by kapal-runtime")
    hooks = spec.get("hooks") or {}
    if any(hooks.get(k) for k in hooks):
        raise Unsupported(f"hooks ({', '.join(k for k in hooks if hooks[k])}) are not supported by kapal-runtime")
    hostname = spec.get("hostname")
    if (hostname or linux.get("domainname") or spec.get("domainname")) and "uts" not in nss:
        raise Invalid("config.json: hostname/domainname need a uts namespace")
    for key in linux.get("sysctl") or {}:
        _check_sysctl(key, nss)
    for m in spec.get("mounts") or ():
        dest = m.get("destination") if isinstance(m, dict) else None
        if not dest or not dest.startswith("/"):
            raise Invalid(f"config.json: mount destination {dest!r} must be an absolute path")
    return rootfs_path(spec, bundle)


def validate_process(proc: dict) -> None:
    args = proc.get("args")
    if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise Invalid("process.args must be a non-empty list of strings")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise Invalid(f"process.cwd {cwd!r} must be an absolute path")
    if proc.get("apparmorProfile"):
        raise Unsupported("process.apparmorProfile is not supported by kapal-runtime (AppArmor is not applied)")
    if proc.get("selinuxLabel"):
        raise Unsupported("process.selinuxLabel is not supported by kapal-runtime (SELinux is not applied)")
    for field in ("ioPriority", "scheduler", "execCPUAffinity"):
        if proc.get(field):
            raise Unsupported(f"process.{field} is not supported by kapal-runtime")
    user = proc.get("user") or {}
    if user.get("username"):
        raise Unsupported("process.user.username is for Windows; give uid and gid")


def _check_sysctl(key: str, nss: dict[str, str | None]) -> None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if "ipc" not in nss:
            raise Invalid(f"sysctl {key!r} needs an ipc namespace")
        return
    if key.startswith("net."):
        if "network" not in nss:
            raise Invalid(f"sysctl {key!r} needs a network namespace (it would change the host's)")
        return
    if key in ("kernel.hostname", "kernel.domainname"):
        if "uts" not in nss:
            raise Invalid(f"sysctl {key!r} needs a uts namespace")
        return
    raise Invalid(f"sysctl {key!r} is not namespaced: setting it would change the host")


def default_spec(rootfs: str = "rootfs") -> dict:
    """The config.json `spec` writes: runc's defaults (sh on a terminal, read-only rootfs)."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "kapal",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
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
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
