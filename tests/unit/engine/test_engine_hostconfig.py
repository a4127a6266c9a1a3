"""HostConfig → OCI: dockerd's validation rules and words, resources, capabilities, tmpfs, security options,
and the default seccomp profile."""

from __future__ import annotations

import pytest

from kapal.engine import hostconfig as hcfg
from kapal.engine.seccomp_profile import CLONE_NAMESPACE_FLAGS, default_profile
from kapal.errors import Invalid, Unsupported

ALL = {f"CAP_{n}" for n in hcfg.CAP_NAMES}


@pytest.mark.parametrize(
    "hc,message",
    [
        ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
        ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap limit"),
        ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger than memory"),
        ({"NanoCpus": 10**9, "CpuQuota": 5000}, "Conflicting options: Nano CPUs and CPU Quota"),
        ({"NanoCpus": 10**9, "CpuPeriod": 5000}, "Conflicting options: Nano CPUs and CPU Period"),
        ({"CpuPeriod": 500}, "CPU cfs period can not be less than 1ms"),
        ({"CpuQuota": 500}, "CPU cfs quota can not be less than 1ms"),
        ({"CpusetCpus": "0-x"}, "Invalid value 0-x for cpuset cpus"),
        ({"CpusetCpus": "0-4095"}, "Requested CPUs are not available - requested 0-4095"),
        ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
        ({"MemorySwappiness": 101}, "valid memory swappiness range is 0-100"),
        ({"OomScoreAdj": 2000}, "range for oom score adj is [-1000, 1000]"),
        ({"CapAdd": ["NOT_A_CAP"]}, "invalid capability"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "soft limit must be less than or equal"),
        ({"Tmpfs": {"run": ""}}, "mount path must be absolute"),
        ({"LogConfig": {"Type": "json-file", "Config": {"max-file": "3"}}}, "max-file cannot be set without"),
        ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
        ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "can't create 'AutoRemove' container with"),
    ],
)
def test_invalid_resources_in_dockerds_words(hc, message):
    with pytest.raises(Invalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        hcfg.validate(hc, {})


@pytest.mark.parametrize(
    "hc,what",
    [
        ({"LogConfig": {"Type": "syslog"}}, "log driver 'syslog'"),
        ({"Links": ["a:b"]}, "HostConfig.Links"),
        ({"UsernsMode": "host"}, "HostConfig.UsernsMode"),
        ({"SecurityOpt": ["apparmor=docker-default"]}, "--security-opt 'apparmor=docker-default'"),
        ({"PidMode": "weird"}, "HostConfig.PidMode 'weird'"),
        ({"LogConfig": {"Type": "json-file", "Config": {"fancy": "1"}}}, "json-file log options \\['fancy'\\]"),
    ],
)
def test_unsupported_options_are_refused_by_name(hc, what):
    with pytest.raises(Unsupported, match=what):
        hcfg.validate(hc, {})


def test_the_docker_clis_zero_values_pass():
    zeros = {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
             "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
             "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "Links": None,
             "MemorySwappiness": -1, "Isolation": "", "CpuRealtimePeriod": 0, "DeviceRequests": None}
    assert hcfg.validate(zeros, {}) == []


def test_resources():
    res = hcfg.resources({"Memory": 256 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512, "PidsLimit": 50,
                          "CpusetCpus": "0"}, [])
    assert res["memory"]["limit"] == 256 << 20
    assert res["memory"].get("swap") in (None, 512 << 20)  # twice the limit where swap is accounted
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0"}
    assert res["pids"] == {"limit": 50}
    seed = hcfg.resources({"CpuPeriod": 100000, "CpuQuota": 20000}, [])
    assert seed["cpu"] == {"period": 100000, "quota": 20000}
    assert "pids" not in hcfg.resources({"PidsLimit": -1}, [])


def test_capabilities():
    default = hcfg.capabilities({}, ALL)
    assert set(default) == set(hcfg.DEFAULT_CAPS) and len(default) == 14
    assert hcfg.capabilities({"CapDrop": ["ALL"], "CapAdd": ["chown"]}, ALL) == ["CAP_CHOWN"]
    assert "CAP_NET_RAW" not in hcfg.capabilities({"CapDrop": ["NET_RAW"]}, ALL)
    assert "CAP_SYS_ADMIN" in hcfg.capabilities({"CapAdd": ["CAP_SYS_ADMIN"]}, ALL)
    without = ALL - {"CAP_SYS_RESOURCE"}
    assert set(hcfg.capabilities({"Privileged": True}, without)) == without
    with pytest.raises(Invalid, match="CAP_SYS_RESOURCE are not available"):
        hcfg.capabilities({"CapAdd": ["SYS_RESOURCE"]}, without)


def test_tmpfs_options_follow_docker():
    [m] = hcfg.tmpfs_mounts({"Tmpfs": {"/run": "rw,size=64m,exec"}})
    assert m["destination"] == "/run" and m["type"] == "tmpfs"
    assert m["options"] == ["nosuid", "nodev", "rw", f"size={64 << 20}", "exec"]
    assert hcfg.tmpfs_mounts({"Tmpfs": {"/tmp": ""}})[0]["options"] == ["noexec", "nosuid", "nodev"]
    assert hcfg.mount_tmpfs("/cache", {"SizeBytes": 1024, "Mode": 0o1777})["options"][-2:] == ["size=1024",
                                                                                              "mode=1777"]


def test_security_options_and_log_options():
    assert hcfg.security_options({"SecurityOpt": ["no-new-privileges"]}) == (True, "default")
    assert hcfg.security_options({"SecurityOpt": ["no-new-privileges:false"]}) == (False, "default")
    assert hcfg.security_options({"SecurityOpt": ["seccomp=unconfined"]}) == (False, "unconfined")
    assert hcfg.security_options({"Privileged": True}) == (False, "unconfined")
    assert hcfg.log_options({"LogConfig": {"Config": {"max-size": "10m", "max-file": "3"}}}) == (10 << 20, 3)
    assert hcfg.parse_size("1.5k") == 1536 and hcfg.parse_size("2g") == 2 << 30 and hcfg.parse_size("100") == 100


def test_devices_and_rules():
    nodes, rules = hcfg.devices({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
                                              "CgroupPermissions": "r"}]})
    assert nodes[0]["path"] == "/dev/mynull" and (nodes[0]["type"], nodes[0]["major"], nodes[0]["minor"]) == (
        "c", 1, 3)
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"} in rules
    with pytest.raises(Invalid, match="no such file or directory"):
        hcfg.devices({"Devices": [{"PathOnHost": "/dev/nonexistent-kapal"}]})


def test_default_seccomp_profile():
    profile = default_profile(list(hcfg.DEFAULT_CAPS))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    allowed = set(profile["syscalls"][0]["names"])
    assert {"read", "write", "execve", "openat"} <= allowed and "clone" not in allowed and "mount" not in allowed
    assert "reboot" not in allowed and "unshare" not in allowed and "pidfd_getfd" not in allowed
    assert {"getrandom", "statx", "rseq", "close_range", "faccessat2", "epoll_pwait2", "ptrace"} <= allowed
    assert not any(name.startswith("io_uring") for name in allowed)  # as Docker's default since 2023
    clone = next(s for s in profile["syscalls"] if s["names"] == ["clone"])
    assert clone["args"][0]["value"] == CLONE_NAMESPACE_FLAGS and clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert any(s["names"] == ["clone3"] and s["errnoRet"] == 38 for s in profile["syscalls"])
    admin = default_profile([*hcfg.DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    admin_allowed = set(admin["syscalls"][0]["names"])
    assert {"mount", "unshare", "setns", "clone", "clone3", "pidfd_getfd"} <= admin_allowed
    sockets = [s["args"][0] for s in profile["syscalls"] if s["names"] == ["socket"]]
    assert [(a["op"], a["value"]) for a in sockets] == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]
