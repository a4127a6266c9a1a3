"""Before the kubelet starts: does this host suit its settings (cgroup driver, swap, root), and which address is
the node's. Light on imports, so `kapal up` checks before it starts anything."""

from __future__ import annotations

import ipaddress
import os

from kapal import errors

from .config import KubeletConfig, systemd_running


def swap_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def preflight(config: KubeletConfig) -> None:
    """Refuse to start on hosts the settings cannot work on, saying what to change."""
    if config.cgroup_driver == "systemd":
        if not systemd_running():
            raise errors.FailedPrecondition("--cgroup-driver=systemd: this host does not run systemd "
                                            "(/run/systemd/system is missing); use --cgroup-driver=cgroupfs")
        raise errors.Unsupported("--cgroup-driver=systemd is not supported by kapal's kubelet yet; use "
                                 "--cgroup-driver=cgroupfs")
    if config.cgroup_driver != "cgroupfs":
        raise errors.Invalid(f"--cgroup-driver={config.cgroup_driver}: must be cgroupfs or systemd")
    if config.fail_swap_on and swap_total() > 0:
        raise errors.FailedPrecondition("running with swap on is not supported, please disable swap or set "
                                        "--fail-swap-on flag to false")
    if config.pod_cidr:
        try:
            ipaddress.ip_network(config.pod_cidr, strict=True)
        except ValueError as e:
            raise errors.Invalid(f"--pod-cidr {config.pod_cidr!r}: {e}") from e
    if os.geteuid() != 0:
        raise errors.FailedPrecondition("the kubelet needs root (namespaces, mounts, cgroups, networking)")


def node_address(config: KubeletConfig) -> str:
    if config.node_ip:
        ip = ipaddress.ip_address(config.node_ip)
        return str(ip)
    from kapal.kube.pki import primary_ipv4

    ip4 = primary_ipv4()
    if ip4 is None:
        raise errors.FailedPrecondition("cannot find this host's primary IPv4 address (no default route and no "
                                        "non-loopback address); pass --node-ip")
    return str(ip4)
