"""Pre-flight checks: kubeadm's names and wording, what kapal fixes itself, and --ignore-preflight-errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kapal.kube.adm.config import load_init_config
from kapal.kube.adm.constants import KubeadmPaths
from kapal.kube.adm.preflight import (
    DirAvailableCheck,
    FileAvailableCheck,
    InPathCheck,
    IsPrivilegedUserCheck,
    MemCheck,
    NumCPUCheck,
    PortOpenCheck,
    PreflightError,
    SwapCheck,
    SysctlFixCheck,
    SystemVerificationCheck,
    init_checks,
    run_checks,
)


def test_numbers_below_the_minimum_are_errors():
    assert NumCPUCheck(available=lambda: 1).check() == (
        [], ["the number of available CPUs 1 is less than the required 2"])
    assert NumCPUCheck(available=lambda: 2).check() == ([], [])
    assert MemCheck(available_mb=lambda: 1024).check() == (
        [], ["the system RAM (1024 MB) is less than the minimum 1700 MB"])
    assert IsPrivilegedUserCheck(euid=lambda: 1000).check() == ([], ["user is not running as root"])


def test_a_bound_port_is_in_use():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        check = PortOpenCheck(port)
        assert check.name == f"Port-{port}"
        assert check.check() == ([], [f"Port {port} is in use"])
    assert PortOpenCheck(port).check() == ([], [])


def test_files_and_directories_in_the_way(tmp_path: Path):
    manifests = tmp_path / "etc" / "kubernetes" / "manifests"
    f = FileAvailableCheck(manifests / "kube-apiserver.yaml")
    d = DirAvailableCheck(manifests)
    assert f.check() == ([], []) and d.check() == ([], [])
    manifests.mkdir(parents=True)
    assert d.check() == ([], [])
    (manifests / "kube-apiserver.yaml").write_text("x")
    assert f.check() == ([], [f"{manifests}/kube-apiserver.yaml already exists"])
    assert d.check() == ([], [f"{manifests} is not empty"])
    assert FileAvailableCheck(Path("/etc/kubernetes/manifests/kube-apiserver.yaml")).name == \
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml"
    assert DirAvailableCheck(Path("/var/lib/kapal/apiserver")).name == "DirAvailable--var-lib-kapal-apiserver"


def test_swap_on_is_an_error(tmp_path: Path):
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename\tType\tSize\tUsed\tPriority\n")
    assert SwapCheck(swaps).check() == ([], [])
    swaps.write_text("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n")
    warnings, errors = SwapCheck(swaps).check()
    assert not warnings and errors[0].startswith("running with swap on is not supported. Please disable swap")


def test_sysctls_are_set_and_reported_as_warnings(tmp_path: Path):
    f = tmp_path / "ip_forward"
    f.write_text("0\n")
    check = SysctlFixCheck(f)
    assert check.name == f"FileContent-{str(f).replace('/', '-')}"
    assert check.check() == ([f"{f} contents were not set to 1; kapal set it to 1"], [])
    assert f.read_text().strip() == "1"
    assert check.check() == ([], [])


def test_a_dry_run_only_says_what_it_would_set(tmp_path: Path):
    f = tmp_path / "bridge-nf-call-iptables"
    f.write_text("0\n")
    assert SysctlFixCheck(f, fix=False).check() == ([f"{f} contents are not set to 1; kapal would set it"], [])
    assert f.read_text().strip() == "0"


def test_missing_tools_mandatory_or_not():
    assert InPathCheck("nothere", which=lambda _e: None).check() == ([], ["nothere not found in system path"])
    assert InPathCheck("socat", mandatory=False, which=lambda _e: None).check() == (
        ["socat not found in system path"], [])
    assert InPathCheck("ip").name == "FileExisting-ip"


def test_system_verification_on_cgroup_v1(tmp_path: Path):
    cgroups = tmp_path / "cgroups"
    cgroups.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n" + "".join(
        f"{c}\t1\t1\t1\n" for c in ("cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")))
    check = SystemVerificationCheck(cgroups, tmp_path, release=lambda: "6.1.0")
    assert check.check() == (["cgroups v1 support is in maintenance mode, please migrate to cgroups v2"], [])
    cgroups.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\n")
    assert "missing required cgroups: cpuacct cpuset devices freezer memory pids" in check.check()[1][0]
    assert SystemVerificationCheck(cgroups, tmp_path, release=lambda: "4.4.0").check()[1][0].startswith(
        "kernel release 4.4.0 is unsupported")


class Fixed:
    def __init__(self, name, warnings, errors):
        self.name, self._result = name, (warnings, errors)

    def check(self):
        return self._result


def test_run_checks_prints_warnings_and_collects_errors_in_kubeadm_form():
    lines: list[str] = []
    checks = [Fixed("Swap", [], ["swap is on"]), Fixed("Hostname", ["not resolvable"], []),
              Fixed("Port-6443", [], ["Port 6443 is in use"])]
    with pytest.raises(PreflightError) as e:
        run_checks(checks, set(), lines.append)
    assert lines == ["\t[WARNING Hostname]: not resolvable"]
    assert str(e.value) == (
        "[preflight] Some fatal errors occurred:\n"
        "\t[ERROR Swap]: swap is on\n"
        "\t[ERROR Port-6443]: Port 6443 is in use\n"
        "[preflight] If you know what you are doing, you can make a check non-fatal with "
        "`--ignore-preflight-errors=...`")


def test_ignored_errors_become_warnings_by_name_or_all():
    lines: list[str] = []
    run_checks([Fixed("Swap", [], ["swap is on"])], {"SWAP"}, lines.append)
    assert lines == ["\t[WARNING Swap]: swap is on"]
    run_checks([Fixed("Port-6443", [], ["Port 6443 is in use"])], {"all"}, lines.append)
    assert lines[-1] == "\t[WARNING Port-6443]: Port 6443 is in use"


def test_init_checks_cover_kubeadm_names(tmp_path: Path):
    cfg = load_init_config(None, {"apiserver-advertise-address": "192.0.2.10", "node-name": "n1"})
    names = [c.name for c in init_checks(cfg, KubeadmPaths().under(tmp_path), fix=False)]
    for expected in ("NumCPU", "Mem", "Port-6443", "Port-10259", "Port-10257", "Port-10250", "Swap", "CRI",
                     "SystemVerification", "Hostname", "FileExisting-iptables", "HTTPProxy", "HTTPProxyCIDR",
                     f"FileAvailable-{str(tmp_path).replace('/', '-')}-etc-kubernetes-manifests-kube-apiserver.yaml",
                     f"DirAvailable-{str(tmp_path).replace('/', '-')}-etc-kubernetes-manifests",
                     f"FileAvailable-{str(tmp_path).replace('/', '-')}-etc-kubernetes-admin.conf",
                     "FileContent--proc-sys-net-ipv4-ip_forward",
                     "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
                     "DirAvailable--var-lib-kapal-apiserver"):
        assert expected in names, expected
