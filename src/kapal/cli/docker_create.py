"""`kapal run` / `kapal create` flags → the Docker API's container create body, as the docker CLI builds it.

Sizes, ports, volumes, mounts, devices, ulimits and env files are parsed here with docker's rules; the
engine validates the resulting HostConfig again (ranges, minimums, what exists on the host).
"""

from __future__ import annotations

import os

from .docker_flags import REMAINDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .docker_flags import FlagParser, Namespace


class FlagError(Exception):
    """A flag's value is malformed (docker run exits 125)."""


def ram_in_bytes(text: str) -> int:
    value = text.strip().lower()
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if value.endswith("b") and len(value) > 1 and value[-2] in units:
        value = value[:-1]
    mult = units.get(value[-1:], 0) if value else 0
    digits = value[:-1] if mult else value
    try:
        return int(float(digits) * (mult or 1))
    except ValueError:
        raise FlagError(f"invalid size: '{text}'") from None


def add_flags(p: FlagParser) -> None:
    """The options of `docker run` / `docker create` kapal takes."""
    a = p.add_argument
    a("--name", default=None)
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--tmpfs", action="append", default=[])
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-l", "--label", action="append", default=[])
    a("--label-file", action="append", default=[])
    a("-w", "--workdir", default=None)
    a("-u", "--user", default=None)
    a("-h", "--hostname", default=None)
    a("--domainname", default=None)
    a("--entrypoint", default=None)
    a("--network", "--net", default=None)
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    a("--dns", action="append", default=[])
    a("--dns-search", action="append", default=[])
    a("--dns-option", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("-t", "--tty", action="store_true")
    a("-i", "--interactive", action="store_true")
    a("--init", action="store_true")
    a("--privileged", action="store_true")
    a("--read-only", action="store_true")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--security-opt", action="append", default=[])
    a("--device", action="append", default=[])
    a("--group-add", action="append", default=[])
    a("--ulimit", action="append", default=[])
    a("--sysctl", action="append", default=[])
    a("-m", "--memory", default=None)
    a("--memory-swap", default=None)
    a("--memory-reservation", default=None)
    a("--memory-swappiness", type=int, default=None)
    a("--oom-kill-disable", action="store_true")
    a("--oom-score-adj", type=int, default=0)
    a("--cpus", default=None)
    a("--cpu-period", type=int, default=0)
    a("--cpu-quota", type=int, default=0)
    a("-c", "--cpu-shares", type=int, default=0)
    a("--cpuset-cpus", default="")
    a("--cpuset-mems", default="")
    a("--pids-limit", type=int, default=0)
    a("--blkio-weight", type=int, default=0)
    for kind in ("read-bps", "write-bps", "read-iops", "write-iops"):
        a(f"--device-{kind}", action="append", default=[])
    a("--shm-size", default=None)
    a("--ipc", default="")
    a("--pid", default="")
    a("--uts", default="")
    a("--cgroupns", default="")
    a("--cgroup-parent", default="")
    a("--stop-signal", default=None)
    a("--stop-timeout", type=int, default=None)
    a("--restart", default="no")
    a("--log-driver", default="")
    a("--log-opt", action="append", default=[])
    a("--runtime", default="")
    a("--platform", default=None)
    a("--detach-keys", default=None)
    a("--sig-proxy", default="true")
    a("--no-healthcheck", action="store_true")
    for flag in ("--health-cmd", "--health-interval", "--health-timeout", "--health-start-period",
                 "--health-start-interval"):
        a(flag, default=None)
    a("--health-retries", type=int, default=0)
    a("--help", action="help")
    a("image")
    a("command", nargs=REMAINDER)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise FlagError(f"invalid {what}: '{item}'")
        out[key] = value if sep else ""
    return out


def _env_file(path: str) -> list[str]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, _ = line.partition("=")
                if not sep:
                    if key in os.environ:
                        out.append(f"{key}={os.environ[key]}")
                    continue
                if not key or " " in key:
                    raise FlagError(f"variable '{key}' contains whitespaces")
                out.append(line)
    except OSError as e:
        raise FlagError(f"open {path}: {e.strerror.lower()}") from None
    return out


def _label_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise FlagError(f"open {path}: {e.strerror.lower()}") from None


def parse_publish(spec: str) -> tuple[str, dict[str, str]]:
    """`[ip:][host_port:]container_port[/proto]` → ("80/tcp", {"HostIp", "HostPort"})."""
    text, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise FlagError(f"invalid proto: {proto}")
    ip = ""
    if text.startswith("["):
        ip, _, text = text[1:].partition("]")
        text = text.lstrip(":")
    parts = text.rsplit(":", 2) if not ip else ["", *text.split(":")]
    if len(parts) == 3:
        ip = ip or parts[0]
        host, container = parts[1], parts[2]
    elif len(parts) == 2:
        host, container = parts
    else:
        host, container = "", parts[0]
    for port in (container, host):
        if port and (not port.isdigit() or not 0 < int(port) < 65536):
            raise FlagError(f"invalid containerPort: {port}" if port == container else f"invalid hostPort: {port}")
    if not container:
        raise FlagError(f"no port specified: {spec}<empty>")
    return f"{container}/{proto}", {"HostIp": ip, "HostPort": host}


def parse_mount(spec: str) -> dict:
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        fields[key.strip().lower()] = value if sep else "true"
    kind = fields.pop("type", "volume")
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    if not target:
        raise FlagError("target is required")
    readonly = fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1", "")
    m: dict[str, Any] = {"Type": kind, "Source": source, "Target": target, "ReadOnly": readonly}
    if "bind-propagation" in fields:
        m["BindOptions"] = {"Propagation": fields.pop("bind-propagation")}
    if "volume-nocopy" in fields:
        m["VolumeOptions"] = {"NoCopy": fields.pop("volume-nocopy") in ("true", "1", "")}
    tmpfs = {}
    if "tmpfs-size" in fields:
        tmpfs["SizeBytes"] = ram_in_bytes(fields.pop("tmpfs-size"))
    if "tmpfs-mode" in fields:
        tmpfs["Mode"] = int(fields.pop("tmpfs-mode"), 8)
    if tmpfs:
        m["TmpfsOptions"] = tmpfs
    if fields:
        raise FlagError(f"unexpected key '{next(iter(fields))}' in '{spec}'")
    return m


def parse_device(spec: str) -> dict:
    parts = spec.split(":")
    host = parts[0]
    inside = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    if not set(perms) <= set("rwm"):
        raise FlagError(f"invalid device mode: {perms}")
    return {"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms}


def parse_ulimit(spec: str) -> dict:
    name, sep, values = spec.partition("=")
    if not sep:
        raise FlagError(f"invalid ulimit argument: {spec}")
    soft, _, hard = values.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        raise FlagError(f"invalid ulimit argument: {spec}") from None


def _throttle(items: list[str], kind: str) -> list[dict]:
    out = []
    for item in items:
        path, sep, rate = item.rpartition(":")
        if not sep or not path:
            raise FlagError(f"bad format: {item}")
        value = ram_in_bytes(rate) if kind.endswith("bps") else int(rate)
        out.append({"Path": path, "Rate": value})
    return out


def _security_opts(opts: list[str]) -> list[str]:
    out = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "seccomp" and value and value != "unconfined":
            try:
                with open(value) as f:
                    import json

                    out.append("seccomp=" + json.dumps(json.load(f), separators=(",", ":")))
            except (OSError, ValueError) as e:
                raise FlagError(f"opening seccomp profile ({value}) failed: {e}") from None
            continue
        out.append(opt)
    return out


def container_body(a: Namespace, detach: bool) -> dict:
    """The create body for parsed run/create flags (Config at the top level, HostConfig inside)."""
    binds, volumes = [], {}
    for spec in a.volume:
        if ":" in spec:
            binds.append(spec)
        else:
            volumes[spec] = {}
    env = [item for path in a.env_file for item in _env_file(path)]
    for item in a.env:
        if "=" not in item:
            if item in os.environ:
                env.append(f"{item}={os.environ[item]}")
            continue
        env.append(item)
    labels = _pairs([item for path in a.label_file for item in _label_file(path)] + a.label, "label")
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in a.publish:
        key, binding = parse_publish(spec)
        exposed[key] = {}
        bindings.setdefault(key, []).append(binding)
    for spec in a.expose:
        port, _, proto = spec.partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    restart_policy = parse_restart(a.restart)
    if getattr(a, "rm", False) and restart_policy["Name"] != "no":
        raise FlagError("conflicting options: cannot specify both --restart and --rm")
    nano = nano_cpus(a.cpus)
    memory_swap = 0
    if a.memory_swap:
        memory_swap = -1 if a.memory_swap == "-1" else ram_in_bytes(a.memory_swap)
    entrypoint: list[str] | None = None
    if a.entrypoint is not None:
        entrypoint = [a.entrypoint] if a.entrypoint else [""]
    stdin = bool(a.interactive)
    rows_cols = None
    if a.tty:
        from .docker_stream import terminal_size

        rows_cols = list(terminal_size())
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "AutoRemove": bool(getattr(a, "rm", False)),
        "NetworkMode": a.network or "default",
        "PortBindings": bindings or None,
        "PublishAllPorts": a.publish_all,
        "RestartPolicy": restart_policy,
        "LogConfig": {"Type": a.log_driver, "Config": _pairs(a.log_opt, "log-opt")},
        "CapAdd": a.cap_add or None,
        "CapDrop": a.cap_drop or None,
        "Privileged": a.privileged,
        "ReadonlyRootfs": a.read_only,
        "SecurityOpt": _security_opts(a.security_opt) or None,
        "Tmpfs": {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in a.tmpfs} or None,
        "Mounts": [parse_mount(m) for m in a.mount] or None,
        "Devices": [parse_device(d) for d in a.device] or None,
        "Ulimits": [parse_ulimit(u) for u in a.ulimit] or None,
        "Sysctls": _pairs(a.sysctl, "sysctl") or None,
        "GroupAdd": a.group_add or None,
        "Dns": a.dns or None,
        "DnsSearch": a.dns_search or None,
        "DnsOptions": a.dns_option or None,
        "ExtraHosts": a.add_host or None,
        "Init": True if a.init else None,
        "Memory": ram_in_bytes(a.memory) if a.memory else 0,
        "MemorySwap": memory_swap,
        "MemoryReservation": ram_in_bytes(a.memory_reservation) if a.memory_reservation else 0,
        "MemorySwappiness": a.memory_swappiness if a.memory_swappiness is not None else -1,
        "OomKillDisable": a.oom_kill_disable,
        "OomScoreAdj": a.oom_score_adj,
        "NanoCpus": nano,
        "CpuPeriod": a.cpu_period,
        "CpuQuota": a.cpu_quota,
        "CpuShares": a.cpu_shares,
        "CpusetCpus": a.cpuset_cpus,
        "CpusetMems": a.cpuset_mems,
        "PidsLimit": a.pids_limit or None,
        "BlkioWeight": a.blkio_weight,
        "BlkioDeviceReadBps": _throttle(a.device_read_bps, "read-bps") or None,
        "BlkioDeviceWriteBps": _throttle(a.device_write_bps, "write-bps") or None,
        "BlkioDeviceReadIOps": _throttle(a.device_read_iops, "read-iops") or None,
        "BlkioDeviceWriteIOps": _throttle(a.device_write_iops, "write-iops") or None,
        "ShmSize": ram_in_bytes(a.shm_size) if a.shm_size else 0,
        "IpcMode": a.ipc,
        "PidMode": a.pid,
        "UTSMode": a.uts,
        "CgroupnsMode": a.cgroupns,
        "CgroupParent": a.cgroup_parent,
        "Runtime": a.runtime,
        "ConsoleSize": rows_cols or [0, 0],
    }
    body: dict[str, Any] = {
        "Hostname": a.hostname or "",
        "Domainname": a.domainname or "",
        "User": a.user or "",
        "AttachStdin": stdin and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Tty": bool(a.tty),
        "OpenStdin": stdin,
        "StdinOnce": stdin and not detach,
        "Env": env or None,
        "Cmd": a.command or None,
        "Image": a.image,
        "Volumes": volumes,
        "WorkingDir": a.workdir or "",
        "Entrypoint": entrypoint,
        "Labels": labels,
        "HostConfig": {k: v for k, v in host_config.items() if v not in (None, "", 0, False) or k in (
            "NetworkMode", "AutoRemove", "RestartPolicy", "LogConfig", "MemorySwappiness", "ConsoleSize")},
    }
    if exposed:
        body["ExposedPorts"] = exposed
    if a.stop_signal:
        body["StopSignal"] = a.stop_signal
    if a.stop_timeout is not None:
        body["StopTimeout"] = a.stop_timeout
    health = health_check(a)
    if health:
        body["Healthcheck"] = health
    return body


def health_check(a: Namespace) -> dict | None:
    """--health-* and --no-healthcheck as the docker CLI sends them (durations in nanoseconds)."""
    durations = {"Interval": a.health_interval, "Timeout": a.health_timeout, "StartPeriod": a.health_start_period,
                 "StartInterval": a.health_start_interval}
    given = a.health_cmd or a.health_retries or any(v is not None for v in durations.values())
    if a.no_healthcheck:
        if given:
            raise FlagError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    from kapal.engine.health import parse_go_duration
    from kapal.errors import Invalid

    check: dict[str, Any] = {"Test": ["CMD-SHELL", a.health_cmd] if a.health_cmd else None}
    for key, text in durations.items():
        flag = "--health-" + {"StartPeriod": "start-period", "StartInterval": "start-interval"}.get(key, key.lower())
        try:
            value = parse_go_duration(text) if text is not None else 0
        except Invalid:
            raise FlagError(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"') from None
        if value < 0:
            raise FlagError(f"{flag} cannot be negative")
        check[key] = value
    if a.health_retries < 0:
        raise FlagError("--health-retries cannot be negative")
    check["Retries"] = a.health_retries
    return check


def describe(body: dict) -> str:
    """For error messages: the command a body runs."""
    import shlex

    return shlex.join(body.get("Cmd") or [])


def parse_restart(text: str | None) -> dict:
    """`--restart no|always|unless-stopped|on-failure[:N]` as HostConfig.RestartPolicy."""
    name, sep, count = (text or "no").partition(":")
    if sep and not count.lstrip("-").isdigit():
        raise FlagError(f"invalid restart policy format: maximum retry count must be an integer: {text!r}")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def add_update_flags(p: FlagParser) -> None:
    """`docker update`'s resource flags and --restart."""
    for flag in ("--memory", "--memory-swap", "--memory-reservation", "--cpus", "--cpuset-cpus", "--cpuset-mems",
                 "--restart"):
        p.add_argument(*(("-m", flag) if flag == "--memory" else (flag,)), default=None)
    for flag in ("--cpu-period", "--cpu-quota", "--blkio-weight"):
        p.add_argument(flag, type=int, default=0)
    p.add_argument("-c", "--cpu-shares", type=int, default=0)
    p.add_argument("--pids-limit", type=int, default=None)


def nano_cpus(cpus: str | None) -> int:
    """--cpus as NanoCpus (0 when not given), with the docker CLI's words for a bad value."""
    if not cpus:
        return 0
    try:
        return int(round(float(cpus) * 1e9))
    except ValueError:
        raise FlagError(f"invalid argument \"{cpus}\" for \"--cpus\" flag") from None


def update_body(a: Namespace) -> dict:
    """The `POST /containers/ID/update` body for parsed update flags (zero: unchanged, as the docker CLI)."""
    nano = nano_cpus(a.cpus)
    body: dict[str, Any] = {
        "Memory": ram_in_bytes(a.memory) if a.memory else 0,
        "MemorySwap": (-1 if a.memory_swap == "-1" else ram_in_bytes(a.memory_swap)) if a.memory_swap else 0,
        "MemoryReservation": ram_in_bytes(a.memory_reservation) if a.memory_reservation else 0,
        "NanoCpus": nano,
        "CpuPeriod": a.cpu_period,
        "CpuQuota": a.cpu_quota,
        "CpuShares": a.cpu_shares,
        "CpusetCpus": a.cpuset_cpus or "",
        "CpusetMems": a.cpuset_mems or "",
        "BlkioWeight": a.blkio_weight,
    }
    if a.pids_limit is not None:
        body["PidsLimit"] = a.pids_limit
    if a.restart:
        body["RestartPolicy"] = parse_restart(a.restart)
    return body
