"""Kernel settings networking needs: IP forwarding, route_localnet, bridge netfilter."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kapal.errors import FailedPrecondition

PROC_SYS = Path("/proc/sys")


def path(*parts: str) -> Path:
    """/proc/sys path from components, so interface names with dots stay whole."""
    return PROC_SYS.joinpath(*parts)


def _path(name: str | Path) -> Path:
    return name if isinstance(name, Path) else PROC_SYS / name.replace(".", "/")


def read(name: str | Path) -> str:
    return _path(name).read_text().strip()


def ensure(name: str | Path, value: str) -> bool:
    """Set a sysctl when it differs; True when it changed. Fails with what to do when it cannot."""
    p = _path(name)
    try:
        if p.read_text().strip() == value:
            return False
        p.write_text(value + "\n")
    except FileNotFoundError as e:
        raise FailedPrecondition(f"sysctl {p.relative_to(PROC_SYS)} does not exist on this kernel") from e
    except OSError as e:
        key = str(p.relative_to(PROC_SYS)).replace("/", ".")
        raise FailedPrecondition(
            f"cannot set {key}={value}: {e.strerror}; run as root, or set it yourself with `sysctl -w {key}={value}`"
        ) from e
    return True


def enable_ip_forward() -> bool:
    return ensure("net.ipv4.ip_forward", "1")


def enable_route_localnet(ifname: str) -> bool:
    """Let DNAT send 127.0.0.1 traffic out of `ifname` (how `-p 127.0.0.1:H:C` reaches a container)."""
    return ensure(path("net", "ipv4", "conf", ifname, "route_localnet"), "1")


def enable_bridge_netfilter() -> bool:
    """br_netfilter loaded and bridged IPv4 traffic passed through iptables (Services on one bridge need it)."""
    if not path("net", "bridge").is_dir():
        try:
            subprocess.run(["modprobe", "br_netfilter"], check=True, capture_output=True, text=True,
                           env={**os.environ, "PATH": "/usr/sbin:/sbin:" + os.environ.get("PATH", "")})
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            raise FailedPrecondition(
                f"the br_netfilter module is not loaded and `modprobe br_netfilter` failed ({detail.strip()}); "
                "load it on the host, or build the kernel with CONFIG_BRIDGE_NETFILTER"
            ) from e
    return ensure(path("net", "bridge", "bridge-nf-call-iptables"), "1")
