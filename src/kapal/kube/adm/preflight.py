"""Pre-flight checks with kubeadm's names and wording: `[WARNING Name]: …` lines, `[ERROR Name]: …` lines.

Each check reports (warnings, errors). `run_checks` prints every warning, gathers the errors and fails with
kubeadm's "Some fatal errors occurred" block; `--ignore-preflight-errors` (names, case-insensitive, or `all`)
turns a check's errors into warnings.

What kapal can fix itself it fixes and reports as a warning (IP forwarding, br_netfilter and the bridge
sysctls); only what the user must change is an error: ports in use, files or directories in the way, too few
CPUs or too little memory, swap on. The host paths and limits are fields, so unit tests point them at
temporary files.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kapal.errors import FailedPrecondition

from .config import InitConfig
from .constants import (
    CONTROL_PLANE_COMPONENTS,
    CONTROLLER_MANAGER_PORT,
    ETCD,
    KUBELET_PORT,
    MIN_CPUS,
    MIN_MEMORY_MB,
    SCHEDULER_PORT,
    KubeadmPaths,
    static_pod_path,
)

Result = tuple[list[str], list[str]]


class Checker(Protocol):
    """One pre-flight check: a stable name (what --ignore-preflight-errors takes) and its findings."""

    @property
    def name(self) -> str: ...

    def check(self) -> Result: ...


def _path_label(prefix: str, path: Path | str) -> str:
    return prefix + str(path).replace("/", "-")


@dataclass
class IsPrivilegedUserCheck:
    euid: Callable[[], int] = os.geteuid
    name: str = "IsPrivilegedUser"

    def check(self) -> Result:
        return ([], []) if self.euid() == 0 else ([], ["user is not running as root"])


@dataclass
class NumCPUCheck:
    required: int = MIN_CPUS
    available: Callable[[], int] = lambda: len(os.sched_getaffinity(0))
    name: str = "NumCPU"

    def check(self) -> Result:
        n = self.available()
        if n < self.required:
            return [], [f"the number of available CPUs {n} is less than the required {self.required}"]
        return [], []


def total_memory_mb() -> int:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return pages * page_size // 1024 // 1024


@dataclass
class MemCheck:
    required_mb: int = MIN_MEMORY_MB
    available_mb: Callable[[], int] = total_memory_mb
    name: str = "Mem"

    def check(self) -> Result:
        actual = self.available_mb()
        if actual < self.required_mb:
            return [], [f"the system RAM ({actual} MB) is less than the minimum {self.required_mb} MB"]
        return [], []


@dataclass
class PortOpenCheck:
    port: int
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"Port-{self.port}"

    def check(self) -> Result:
        for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    # as Go's net.Listen: connections still in TIME_WAIT do not make a port "in use"
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                    s.bind((host, self.port))
                return [], []
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return [], [f"Port {self.port} is in use"]
                if family == socket.AF_INET6 and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue
                return [], [f"Port {self.port} could not be checked: {e.strerror}"]
        return [], []


@dataclass
class FileAvailableCheck:
    """The file must not exist yet."""

    path: Path
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or _path_label("FileAvailable-", self.path)

    def check(self) -> Result:
        return ([], [f"{self.path} already exists"]) if os.path.lexists(self.path) else ([], [])


@dataclass
class DirAvailableCheck:
    """The directory must be absent or empty."""

    path: Path
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or _path_label("DirAvailable-", self.path)

    def check(self) -> Result:
        try:
            with os.scandir(self.path) as it:
                if next(it, None) is not None:
                    return [], [f"{self.path} is not empty"]
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            return [], [f"{self.path} is not a directory"]
        return [], []


@dataclass
class FileExistingCheck:
    path: Path
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or _path_label("FileExisting-", self.path)

    def check(self) -> Result:
        return ([], []) if self.path.exists() else ([], [f"{self.path} doesn't exist"])


@dataclass
class SysctlFixCheck:
    """kubeadm's FileContent check on a /proc/sys file; kapal writes the value itself and warns that it did.

    `fix=False` (dry run) only says what would be set.
    """

    path: Path
    value: str = "1"
    fix: bool = True
    load_module: str = ""  # a kernel module that provides the file (br_netfilter)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or _path_label("FileContent-", self.path)

    def check(self) -> Result:
        if not self.path.exists() and self.load_module:
            if not self.fix:
                return [f"{self.path} does not exist; kapal would load the {self.load_module} module"], []
            _modprobe(self.load_module)
            if not self.path.exists():
                return [], [f"{self.path} does not exist and loading the {self.load_module} module did not create "
                            f"it; run 'modprobe {self.load_module}'"]
        try:
            current = self.path.read_text().strip()
        except FileNotFoundError:
            return [], [f"{self.path} does not exist"]
        if current == self.value:
            return [], []
        if not self.fix:
            return [f"{self.path} contents are not set to {self.value}; kapal would set it"], []
        try:
            self.path.write_text(self.value + "\n")
        except OSError as e:
            return [], [f"{self.path} contents are not set to {self.value} and kapal could not set it: {e.strerror}"]
        return [f"{self.path} contents were not set to {self.value}; kapal set it to {self.value}"], []


def _modprobe(module: str) -> None:
    env = {**os.environ, "PATH": "/usr/sbin:/sbin:" + os.environ.get("PATH", "")}
    try:
        subprocess.run(["modprobe", module], capture_output=True, check=False, env=env, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass


@dataclass
class SwapCheck:
    swaps: Path = Path("/proc/swaps")
    name: str = "Swap"

    def check(self) -> Result:
        try:
            lines = [line for line in self.swaps.read_text().splitlines() if line.strip()]
        except OSError:
            return [], []
        if len(lines) > 1:
            return [], ["running with swap on is not supported. Please disable swap (swapoff -a) and remove swap "
                        "entries from /etc/fstab"]
        return [], []


@dataclass
class InPathCheck:
    executable: str
    mandatory: bool = True
    which: Callable[[str], str | None] = field(default=lambda exe: shutil.which(
        exe, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))

    @property
    def name(self) -> str:
        return _path_label("FileExisting-", self.executable)

    def check(self) -> Result:
        if self.which(self.executable):
            return [], []
        message = f"{self.executable} not found in system path"
        return ([], [message]) if self.mandatory else ([message], [])


@dataclass
class HostnameCheck:
    node_name: str
    resolve: Callable[[str], object] = socket.gethostbyname
    name: str = "Hostname"

    def check(self) -> Result:
        try:
            self.resolve(self.node_name)
        except OSError:
            return [f'hostname "{self.node_name}" could not be reached'], []
        return [], []


def _proxy_for(url: str) -> str | None:
    proxies = urllib.request.getproxies()
    host = urllib.request.urlparse(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return proxies.get("https")


@dataclass
class HTTPProxyCheck:
    host: str
    name: str = "HTTPProxy"

    def check(self) -> Result:
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"https://{host}"
        proxy = _proxy_for(url)
        if proxy:
            return [f'Connection to "{url}" uses proxy "{proxy}". If that is not intended, adjust your proxy '
                    "settings"], []
        return [], []


@dataclass
class HTTPProxyCIDRCheck:
    cidr: str
    name: str = "HTTPProxyCIDR"

    def check(self) -> Result:
        if not self.cidr:
            return [], []
        ip = ipaddress.ip_network(self.cidr, strict=False)[1]
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        proxy = _proxy_for(f"https://{host}:1234/")
        if proxy:
            return [f'connection to "{self.cidr}" uses proxy "{proxy}". This may lead to malfunctional cluster '
                    "setup. Make sure that Pod and Services IP ranges specified correctly as exceptions in proxy "
                    "configuration"], []
        return [], []


REQUIRED_CGROUPS = ("cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")


@dataclass
class SystemVerificationCheck:
    """Kernel version and cgroup controllers, as kubeadm's system validators check them."""

    cgroups_file: Path = Path("/proc/cgroups")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    release: Callable[[], str] = lambda: os.uname().release
    name: str = "SystemVerification"

    def check(self) -> Result:
        warnings: list[str] = []
        errors: list[str] = []
        m = re.match(r"(\d+)\.(\d+)", self.release())
        if not m or (int(m.group(1)), int(m.group(2))) < (4, 19):
            errors.append(f"kernel release {self.release()} is unsupported. Recommended LTS version from the 4.x "
                          "series is 4.19. Any 5.x or 6.x versions are also supported")
        if (self.cgroup_root / "cgroup.controllers").exists():
            available = set((self.cgroup_root / "cgroup.controllers").read_text().split()) | {"cpuacct", "devices",
                                                                                              "freezer"}
        else:
            warnings.append("cgroups v1 support is in maintenance mode, please migrate to cgroups v2")
            available = set()
            try:
                for line in self.cgroups_file.read_text().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) >= 4 and parts[3] == "1":
                        available.add(parts[0])
            except OSError as e:
                errors.append(f"cannot read {self.cgroups_file}: {e.strerror}")
        missing = [c for c in REQUIRED_CGROUPS if c not in available]
        if missing and not errors:
            errors.append(f"missing required cgroups: {' '.join(missing)}")
        return warnings, errors


@dataclass
class ContainerRuntimeCheck:
    """The engine the kubelet drives runs containers with runc (or the runtime it is given)."""

    runtime: str = "runc"
    name: str = "CRI"

    def check(self) -> Result:
        if shutil.which(self.runtime, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return [], []
        return [], [f"container runtime is not running: the engine's OCI runtime {self.runtime!r} was not found in "
                    "system path"]


def init_checks(cfg: InitConfig, paths: KubeadmPaths, fix: bool = True) -> list[Checker]:
    """kubeadm's InitNodeChecks, in its order, for a first control-plane node (plus kapal's own)."""
    manifests = paths.manifests_dir
    checks: list[Checker] = [
        NumCPUCheck(),
        MemCheck(),
        PortOpenCheck(cfg.bind_port),
        PortOpenCheck(SCHEDULER_PORT),
        PortOpenCheck(CONTROLLER_MANAGER_PORT),
        *[FileAvailableCheck(static_pod_path(manifests, c)) for c in (*CONTROL_PLANE_COMPONENTS, ETCD)],
        DirAvailableCheck(manifests),
        *[FileAvailableCheck(paths.kubernetes_dir / f) for f in
          ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf")],
        HTTPProxyCheck(cfg.advertise_address),
    ]
    checks += [HTTPProxyCIDRCheck(c.strip()) for c in cfg.service_subnet.split(",")]
    checks += [HTTPProxyCIDRCheck(c.strip()) for c in cfg.pod_subnet.split(",")]
    checks += [
        ContainerRuntimeCheck(),
        SwapCheck(),
        *[InPathCheck(exe) for exe in ("ip", "iptables", "mount", "nsenter")],
        *[InPathCheck(exe, mandatory=False) for exe in ("ebtables", "ethtool", "socat", "tc", "touch")],
        SystemVerificationCheck(),
        HostnameCheck(cfg.node_name),
        PortOpenCheck(KUBELET_PORT),
    ]
    ipv4 = any(ipaddress.ip_network(c.strip(), strict=False).version == 4
               for c in (*cfg.service_subnet.split(","), *cfg.pod_subnet.split(",")))
    ipv6 = any(ipaddress.ip_network(c.strip(), strict=False).version == 6
               for c in (*cfg.service_subnet.split(","), *cfg.pod_subnet.split(",")))
    ipv4 = ipv4 or ipaddress.ip_address(cfg.advertise_address).version == 4
    ipv6 = ipv6 or ipaddress.ip_address(cfg.advertise_address).version == 6
    if ipv4:
        checks.append(SysctlFixCheck(Path("/proc/sys/net/ipv4/ip_forward"), fix=fix))
        checks.append(SysctlFixCheck(Path("/proc/sys/net/bridge/bridge-nf-call-iptables"), fix=fix,
                                     load_module="br_netfilter"))
    if ipv6:
        checks.append(SysctlFixCheck(Path("/proc/sys/net/ipv6/conf/default/forwarding"), fix=fix))
        checks.append(SysctlFixCheck(Path("/proc/sys/net/bridge/bridge-nf-call-ip6tables"), fix=fix,
                                     load_module="br_netfilter"))
    if cfg.etcd.external:
        for f in (cfg.etcd.ca_file, cfg.etcd.cert_file, cfg.etcd.key_file):
            if f:
                checks.append(FileExistingCheck(Path(f), "ExternalEtcdClientCertificates"))
    else:
        checks.append(DirAvailableCheck(cfg.datastore_dir))
    return checks


def run_checks(checks: Iterable[Checker], ignore: set[str], out: Callable[[str], None]) -> None:
    """Print warnings as they come; raise FailedPrecondition after printing every error (kubeadm's RunChecks)."""
    ignore = {i.lower() for i in ignore}
    errors: list[str] = []
    for c in checks:
        warnings, errs = c.check()
        if "all" in ignore or c.name.lower() in ignore:
            warnings, errs = warnings + errs, []
        for w in warnings:
            out(f"\t[WARNING {c.name}]: {w}")
        errors += [f"\t[ERROR {c.name}]: {e}" for e in errs]
    if errors:
        raise PreflightError(errors)


class PreflightError(FailedPrecondition):
    """The fatal findings, already worded; str() is kubeadm's whole block."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("[preflight] Some fatal errors occurred:\n" + "\n".join(errors) + "\n"
                         "[preflight] If you know what you are doing, you can make a check non-fatal with "
                         "`--ignore-preflight-errors=...`")
