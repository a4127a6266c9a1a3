"""Docker's HostConfig → the OCI runtime spec: resources, capabilities, devices, tmpfs, ulimits, security.

Validation follows dockerd's rules and words (a 6 MB memory minimum, cfs period/quota ranges, CPUs
and cpusets that exist, swap ≥ memory …); options kapal does not implement are refused by name.
Everything here is pure except the host facts it reads (CPUs, device numbers, cgroup files).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from kapal.errors import Invalid, Unsupported
from kapal.linux.capabilities import DOCKER_DEFAULT, NAMES

from . import restart_policy

MIN_MEMORY = 6 * 1024 * 1024
CFS_PERIOD_DEFAULT = 100_000

DEFAULT_CAPS = DOCKER_DEFAULT
CAP_NAMES = tuple(name.removeprefix("CAP_") for name in NAMES)  # in capability-number order

ULIMITS = (
    "as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack".split()
)

# The device cgroup's allow-list for an unprivileged container: mknod of anything, and use of the
# pseudo-devices every program expects (null zero full random urandom tty console ptmx pts tun).
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))
    ),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]

# HostConfig keys kapal acts on; any other key with a non-zero value is refused by name.
HANDLED = frozenset(
    """Binds ContainerIDFile LogConfig NetworkMode PortBindings RestartPolicy AutoRemove ConsoleSize CapAdd CapDrop
    CgroupnsMode Dns DnsOptions DnsSearch ExtraHosts GroupAdd IpcMode OomScoreAdj PidMode Privileged PublishAllPorts
    ReadonlyRootfs SecurityOpt Tmpfs UTSMode ShmSize Sysctls Runtime Isolation CpuShares Memory NanoCpus CgroupParent
    BlkioWeight BlkioDeviceReadBps BlkioDeviceWriteBps BlkioDeviceReadIOps BlkioDeviceWriteIOps CpuPeriod CpuQuota
    CpusetCpus CpusetMems Devices MemoryReservation MemorySwap MemorySwappiness OomKillDisable PidsLimit Ulimits
    Init Mounts MaskedPaths ReadonlyPaths""".split()
)
_ZERO = (None, 0, -1, "", [], {}, False)
ZERO_VALUES = _ZERO


def _parse_cpuset(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(part)
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(part)
        out.update(range(first, last + 1))
    return out


def host_cpus() -> set[int]:
    for path in ("/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "/sys/fs/cgroup/cpuset/cpuset.cpus"):
        try:
            return _parse_cpuset(Path(path).read_text().strip())
        except (OSError, ValueError):
            continue
    return set(range(os.cpu_count() or 1))


def blkio_weight_supported() -> bool:
    base = Path("/sys/fs/cgroup/blkio")
    return (base / "blkio.weight").exists() or (base / "blkio.bfq.weight").exists()


def available_capabilities() -> set[str]:
    """The capabilities the engine holds (a container cannot get more; here CAP_SYS_RESOURCE is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                break
        else:
            mask = (1 << len(CAP_NAMES)) - 1
        with open("/proc/self/status") as f:
            eff = next((int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:")), mask)
    except OSError:
        mask = eff = (1 << len(CAP_NAMES)) - 1
    return {f"CAP_{name}" for i, name in enumerate(CAP_NAMES) if mask & eff & (1 << i)}


def normalize_cap(name: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full[4:] not in CAP_NAMES:
        raise Invalid(f"invalid capability: {name!r}")
    return full


def capabilities(hc: dict, available: set[str] | None = None) -> list[str]:
    """The container's capability set: Docker's default ± --cap-add/--cap-drop, or all with --privileged."""
    available = available_capabilities() if available is None else available
    if hc.get("Privileged"):
        return sorted(available)
    caps = set(DEFAULT_CAPS)
    drop = [normalize_cap(c) for c in hc.get("CapDrop") or []]
    add = [normalize_cap(c) for c in hc.get("CapAdd") or []]
    if "ALL" in drop:
        caps = set()
    caps -= set(drop)
    if "ALL" in add:
        caps |= available
    caps |= {c for c in add if c != "ALL"}
    missing = sorted(caps - available)
    if missing:
        raise Invalid(
            f"capabilities {', '.join(missing)} are not available to the engine, so a container cannot get them"
        )
    return sorted(caps)


def validate(hc: dict, body: dict) -> list[str]:
    """dockerd's checks of the resources and modes; returns the create response's warnings."""
    warnings: list[str] = []
    for key, value in hc.items():
        if key not in HANDLED and value not in _ZERO and value != {"Name": "", "Config": {}}:
            raise Unsupported(f"HostConfig.{key} is not supported by kapal (set it to its zero value)")
    hc["RestartPolicy"] = restart_policy.normalize(hc.get("RestartPolicy"), bool(hc.get("AutoRemove")))
    log_type = (hc.get("LogConfig") or {}).get("Type") or "json-file"
    if log_type != "json-file":
        raise Unsupported(f"log driver {log_type!r} is not supported (kapal writes json-file logs)")
    log_options(hc)
    warnings += validate_resources(hc)
    adj = int(hc.get("OomScoreAdj") or 0)
    if not -1000 <= adj <= 1000:
        raise Invalid(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    if hc.get("ShmSize") and int(hc["ShmSize"]) < 0:
        raise Invalid("SHM size can not be less than 0")
    for mode_key, allowed in (
        ("IpcMode", ("", "private", "shareable", "host", "none")),
        ("PidMode", ("", "private", "host")),
        ("UTSMode", ("", "private", "host")),
        ("CgroupnsMode", ("", "private", "host")),
    ):
        mode = hc.get(mode_key) or ""
        if mode in allowed:
            continue
        if mode_key != "CgroupnsMode" and mode.startswith("container:"):
            continue
        if mode_key in ("IpcMode", "UTSMode") and mode.startswith("ns:"):
            if not os.path.exists(mode[3:]):
                raise Invalid(f"HostConfig.{mode_key} {mode}: no such namespace file")
            continue
        names = ", ".join(repr(a) for a in allowed)
        raise Unsupported(f"HostConfig.{mode_key} {mode!r} is not supported (one of {names}, container:<id>"
                          f"{', ns:<path>' if mode_key in ('IpcMode', 'UTSMode') else ''})")
    if (hc.get("Isolation") or "default") != "default":
        raise Unsupported(f"isolation {hc['Isolation']!r} is not supported on Linux")
    capabilities(hc)
    rlimits(hc)
    tmpfs_mounts(hc)
    security_options(hc)
    return warnings


def validate_resources(hc: dict, update: bool = False) -> list[str]:
    """dockerd's checks of memory, CPU, cpuset and blkio settings (an update may set swap without memory);
    returns warnings."""
    warnings: list[str] = []
    memory = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    reservation = int(hc.get("MemoryReservation") or 0)
    if memory and memory < MIN_MEMORY:
        raise Invalid("Minimum memory limit allowed is 6MB")
    if swap > 0 and not memory and not update:
        raise Invalid("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap > 0 and swap < memory:
        raise Invalid("Minimum memoryswap limit should be larger than memory limit, see usage")
    if reservation and reservation < MIN_MEMORY:
        raise Invalid("Minimum memory reservation allowed is 6MB")
    if memory and reservation and memory < reservation:
        raise Invalid("Minimum memory limit can not be less than memory reservation limit, see usage")
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= int(swappiness) <= 100:
        raise Invalid(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    nano = int(hc.get("NanoCpus") or 0)
    period = int(hc.get("CpuPeriod") or 0)
    quota = int(hc.get("CpuQuota") or 0)
    ncpu = len(host_cpus())
    if nano:
        if period:
            raise Invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if quota:
            raise Invalid("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        if nano < 10_000_000 or nano > ncpu * 1_000_000_000:
            raise Invalid(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if period and not 1000 <= period <= 1_000_000:
        raise Invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if quota and quota > 0 and quota < 1000:
        raise Invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    shares = int(hc.get("CpuShares") or 0)
    if shares < 0:
        raise Invalid(f"invalid CPU shares {shares}: must be positive")
    for key in ("CpusetCpus", "CpusetMems"):
        text = hc.get(key) or ""
        if not text:
            continue
        try:
            wanted = _parse_cpuset(text)
        except ValueError:
            raise Invalid(f"Invalid value {text} for cpuset {'cpus' if key == 'CpusetCpus' else 'mems'}") from None
        if key == "CpusetCpus":
            have = host_cpus()
            if not wanted <= have:
                raise Invalid(f"Requested CPUs are not available - requested {text}, available: {_format_set(have)}")
    weight = int(hc.get("BlkioWeight") or 0)
    if weight:
        if not 10 <= weight <= 1000:
            raise Invalid("Range of blkio weight is from 10 to 1000")
        if not blkio_weight_supported():
            warnings.append(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
            )
    return warnings


def _format_set(cpus: set[int]) -> str:
    ordered = sorted(cpus)
    if not ordered:
        return ""
    ranges, start, prev = [], ordered[0], ordered[0]
    for n in ordered[1:]:
        if n == prev + 1:
            prev = n
            continue
        ranges.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = n
    ranges.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(ranges)


def parse_size(text: str | int) -> int:
    """Docker's RAMInBytes: 10m, 1g, 512k, plain bytes."""
    if isinstance(text, int):
        return text
    value = str(text).strip().lower()
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if value and value[-1] == "b" and len(value) > 1 and value[-2] in units:
        value = value[:-1]
    mult = units.get(value[-1:], 0) if value else 0
    digits = value[:-1] if mult else value
    try:
        number = float(digits)
    except ValueError:
        raise Invalid(f"invalid size: {text!r}") from None
    return int(number * (mult or 1))


def log_options(hc: dict) -> tuple[int, int]:
    """json-file's max-size and max-file log options (0 = unlimited)."""
    opts = dict((hc.get("LogConfig") or {}).get("Config") or {})
    max_size = parse_size(opts.pop("max-size", "0") or "0")
    try:
        max_file = int(opts.pop("max-file", "1") or "1")
    except ValueError:
        raise Invalid(f"invalid value for max-file: {hc['LogConfig']['Config']['max-file']!r}") from None
    for key in ("compress", "labels", "env", "env-regex", "tag", "mode", "max-buffer-size"):
        opts.pop(key, None)
    if opts:
        raise Unsupported(f"json-file log options {sorted(opts)} are not supported (max-size and max-file are)")
    if max_file < 1:
        raise Invalid("max-file cannot be less than 1")
    if max_file > 1 and not max_size:
        raise Invalid("max-file cannot be set without max-size")
    return max_size, max_file


def _device_numbers(path: str) -> tuple[str, int, int, os.stat_result]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise Invalid(
            f'error gathering device information while adding custom device "{path}": {e.strerror.lower()}'
        ) from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise Invalid(f'error gathering device information while adding custom device "{path}": not a device node')
    return kind, os.major(st.st_rdev), os.minor(st.st_rdev), st


def devices(hc: dict) -> tuple[list[dict], list[dict]]:
    """(linux.devices, device cgroup rules) for --device and --privileged."""
    nodes: list[dict] = []
    rules = [dict(r) for r in DEFAULT_DEVICE_RULES]
    entries = list(hc.get("Devices") or [])
    if hc.get("Privileged"):
        rules = [{"allow": True, "access": "rwm"}]
        for root, dirs, files in os.walk("/dev"):
            dirs[:] = [d for d in dirs if d not in ("pts", "shm", "mqueue", "hugepages")]
            for name in files:
                path = os.path.join(root, name)
                if stat.S_ISCHR(os.lstat(path).st_mode) or stat.S_ISBLK(os.lstat(path).st_mode):
                    entries.append({"PathOnHost": path, "PathInContainer": path, "CgroupPermissions": "rwm"})
    seen: set[str] = set()
    for entry in entries:
        host = entry.get("PathOnHost") or ""
        inside = entry.get("PathInContainer") or host
        perms = entry.get("CgroupPermissions") or "rwm"
        if not set(perms) <= set("rwm"):
            raise Invalid(f"invalid device mode: {perms}")
        if not inside.startswith("/"):
            raise Invalid(f"invalid device path in container: {inside!r} (must be absolute)")
        if inside in seen or inside in ("/dev/pts", "/dev/shm"):
            continue
        kind, major, minor, st = _device_numbers(host)
        seen.add(inside)
        nodes.append(
            {
                "path": inside,
                "type": kind,
                "major": major,
                "minor": minor,
                "fileMode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
        )
        if not hc.get("Privileged"):
            rules.append({"allow": True, "type": kind, "major": major, "minor": minor, "access": perms})
    return nodes, rules


def _throttle(entries: list[dict] | None, key: str) -> list[dict]:
    out = []
    for entry in entries or []:
        kind, major, minor, _ = _device_numbers(entry.get("Path") or "")
        if kind != "b":
            raise Invalid(f"{entry.get('Path')} is not a block device")
        out.append({"major": major, "minor": minor, "rate": int(entry.get(key) or 0)})
    return out


def resources(hc: dict, device_rules: list[dict]) -> dict:
    """OCI linux.resources from the HostConfig (validated before)."""
    out: dict = {"devices": device_rules}
    memory: dict = {}
    if hc.get("Memory"):
        memory["limit"] = int(hc["Memory"])
        swap = int(hc.get("MemorySwap") or 0)
        if swap == 0:
            swap = 2 * memory["limit"]  # Docker: swap as large as the memory limit
        if memsw_supported():
            memory["swap"] = swap
    elif int(hc.get("MemorySwap") or 0) == -1 and memsw_supported():
        memory["swap"] = -1
    if hc.get("MemoryReservation"):
        memory["reservation"] = int(hc["MemoryReservation"])
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and int(swappiness) >= 0:
        memory["swappiness"] = int(swappiness)
    if hc.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        out["memory"] = memory
    cpu: dict = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("NanoCpus"):
        cpu["period"] = CFS_PERIOD_DEFAULT
        cpu["quota"] = int(hc["NanoCpus"]) * CFS_PERIOD_DEFAULT // 1_000_000_000
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        out["cpu"] = cpu
    limit = int(hc.get("PidsLimit") or 0)
    if limit > 0:
        out["pids"] = {"limit": limit}
    block: dict = {}
    if hc.get("BlkioWeight") and blkio_weight_supported():
        block["weight"] = int(hc["BlkioWeight"])
    for key, field, name in (
        ("BlkioDeviceReadBps", "Rate", "throttleReadBpsDevice"),
        ("BlkioDeviceWriteBps", "Rate", "throttleWriteBpsDevice"),
        ("BlkioDeviceReadIOps", "Rate", "throttleReadIOPSDevice"),
        ("BlkioDeviceWriteIOps", "Rate", "throttleWriteIOPSDevice"),
    ):
        rates = _throttle(hc.get(key), field)
        if rates:
            block[name] = rates
    if block:
        out["blockIO"] = block
    return out


def memsw_supported() -> bool:
    return Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()


def rlimits(hc: dict) -> list[dict]:
    out = []
    for entry in hc.get("Ulimits") or []:
        name = str(entry.get("Name") or "").lower()
        if name not in ULIMITS:
            raise Invalid(f"invalid ulimit type: {name}")
        soft, hard = int(entry.get("Soft", 0)), int(entry.get("Hard", 0))
        if soft > hard:
            raise Invalid(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        out.append({"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard})
    return out


_TMPFS_DEFAULT = ["noexec", "nosuid", "nodev"]
_FLAG_OPPOSITES = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro"}


def _tmpfs(destination: str, options: list[str]) -> dict:
    if not destination.startswith("/"):
        raise Invalid(f"invalid mount config: mount path must be absolute: {destination}")
    opts = list(_TMPFS_DEFAULT)
    for opt in options:
        opt = opt.strip()
        if not opt:
            continue
        opposite = _FLAG_OPPOSITES.get(opt) or {v: k for k, v in _FLAG_OPPOSITES.items()}.get(opt)
        if opposite in opts:
            opts.remove(opposite)
        key = opt.split("=", 1)[0]
        if key in ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"):
            opts = [o for o in opts if not o.startswith(key + "=")]
            if key == "size":
                opt = f"size={parse_size(opt.split('=', 1)[1])}"
        elif opt not in ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async",
                         "atime", "noatime", "relatime", "strictatime", "nodiratime", "tmpcopyup"):
            raise Invalid(f"invalid tmpfs option {opt!r} for {destination}")
        if opt not in opts:
            opts.append(opt)
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": opts}


def tmpfs_mounts(hc: dict) -> list[dict]:
    """--tmpfs /run:rw,size=64m → OCI tmpfs mounts (Docker's defaults noexec,nosuid,nodev)."""
    return [_tmpfs(dest, (opts or "").split(",")) for dest, opts in (hc.get("Tmpfs") or {}).items()]


def mount_tmpfs(target: str, options: dict | None) -> dict:
    """--mount type=tmpfs with TmpfsOptions {SizeBytes, Mode}."""
    opts = []
    if options and options.get("SizeBytes"):
        opts.append(f"size={int(options['SizeBytes'])}")
    if options and options.get("Mode"):
        opts.append(f"mode={int(options['Mode']):o}")
    return _tmpfs(target, opts)


def security_options(hc: dict) -> tuple[bool, str]:
    """(no_new_privileges, seccomp: "default" | "unconfined" | a JSON profile)."""
    nnp, seccomp = False, "default"
    for opt in hc.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise Invalid(f"invalid --security-opt {opt!r}: no-new-privileges takes true or false")
            nnp = value != "false"
        elif key == "seccomp":
            if not value:
                raise Invalid(f"invalid --security-opt {opt!r}: seccomp=unconfined or seccomp=PROFILE")
            seccomp = value
        elif key == "apparmor" and value == "unconfined":
            continue  # this host runs no AppArmor profile to leave
        elif key == "label" and value == "disable":
            continue  # no SELinux labels here
        else:
            raise Unsupported(f"--security-opt {opt!r} is not supported (no-new-privileges, seccomp are)")
    if hc.get("Privileged"):
        seccomp = "unconfined"
    return nnp, seccomp


def tini_path() -> str:
    """Debian's static tini, bind-mounted as /sbin/docker-init by --init (the dynamic one needs a libc)."""
    for name in ("tini-static", "tini"):
        found = shutil.which(name)
        if found:
            return found
    raise Unsupported("--init needs tini: apt-get install tini")
