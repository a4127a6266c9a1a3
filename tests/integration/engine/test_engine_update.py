"""`docker update` of resources with the docker CLI: applied at once to a running or paused container
(its host cgroup, lxcfs's `free` inside, pids enforced), kept in HostConfig for the next start, refused
with dockerd's words (and nothing changed) when the values are bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import cgroup_dir

pytestmark = pytest.mark.root

MB = 1 << 20


def _cg(controller: str, cid: str, name: str) -> str:
    return (cgroup_dir(controller, cid) / name).read_text().strip()


def _hc(docker, name: str) -> dict:
    return json.loads(docker.out("inspect", name))[0]["HostConfig"]


def test_update_of_a_running_container(docker, busybox, unique, engine_session):
    name = f"{unique}-upd"
    cid = docker.out("run", "-d", "--name", name, "-m", "64m", busybox, "sleep", "1000")
    try:
        assert _hc(docker, name)["MemorySwap"] == 128 * MB  # dockerd's default: twice the memory
        assert docker.out("update", "-m", "96m", name) == name
        assert int(_cg("memory", cid, "memory.limit_in_bytes")) == 96 * MB
        if engine_session and engine_session["lxcfs"]:
            # lxcfs's view (busybox's free asks sysinfo(2), which lxcfs does not serve)
            assert docker.out("exec", name, "head", "-1", "/proc/meminfo").split()[1:] == ["98304", "kB"]
        # above the swap limit already set: refused as dockerd does, nothing changes
        r = docker("update", "-m", "200m", name, check=False)
        assert r.returncode != 0 and f"Cannot update container {cid}: Memory limit should be smaller than " \
            "already set memoryswap limit, update the memoryswap at the same time" in r.stderr
        docker("update", "-m", "200m", "--memory-swap", "400m", name)
        assert int(_cg("memory", cid, "memory.limit_in_bytes")) == 200 * MB
        assert int(_cg("memory", cid, "memory.memsw.limit_in_bytes")) == 400 * MB
        for args, words in ((["-m", "4m"], "Minimum memory limit allowed is 6MB"),
                            (["-m", "64m", "--memory-swap", "32m"], "Minimum memoryswap limit should be larger"),
                            (["--cpu-period", "100"], "CPU cfs period can not be less than 1ms"),
                            (["--cpuset-cpus", "0-4096"], "Requested CPUs are not available"),
                            (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000")):
            r = docker("update", *args, name, check=False)
            assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
        assert int(_cg("memory", cid, "memory.limit_in_bytes")) == 200 * MB
        docker("update", "--cpu-period", "100000", "--cpu-quota", "30000", name)
        assert _cg("cpu", cid, "cpu.cfs_quota_us") == "30000"
        r = docker("update", "--cpus", "0.5", name, check=False)
        assert r.returncode != 0 and "Nano CPUs cannot be updated as CPU Period has already been set" in r.stderr
        docker("update", "--pids-limit", "6", name)
        assert _cg("pids", cid, "pids.max") == "6"
        r = docker("exec", name, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait", check=False)
        assert r.returncode != 0 and "fork" in r.stderr
        docker("update", "--pids-limit", "-1", name)
        assert _cg("pids", cid, "pids.max") == "max"
        docker("pause", name)
        docker("update", "--cpu-shares", "512", name)  # a paused container takes it too
        assert _cg("cpu", cid, "cpu.shares") == "512"
        docker("unpause", name)
        hc = _hc(docker, name)
        assert (hc["Memory"], hc["MemorySwap"], hc["CpuQuota"], hc["CpuPeriod"], hc["CpuShares"], hc["PidsLimit"]) \
            == (200 * MB, 400 * MB, 30000, 100000, 512, 0)
        docker("restart", "-t", "0", name)  # the next start keeps them
        assert int(_cg("memory", cid, "memory.limit_in_bytes")) == 200 * MB
        assert (_cg("cpu", cid, "cpu.cfs_quota_us"), _cg("cpu", cid, "cpu.shares")) == ("30000", "512")
    finally:
        docker("rm", "-f", name, check=False)


def test_update_of_a_stopped_container_applies_at_start(docker, busybox, unique):
    name = f"{unique}-later"
    cid = docker.out("create", "--name", name, busybox, "sleep", "1000")
    try:
        docker("update", "--cpus", "0.5", "--pids-limit", "20", "-m", "32m", "--memory-swap", "-1", name)
        hc = _hc(docker, name)
        assert (hc["NanoCpus"], hc["PidsLimit"], hc["Memory"], hc["MemorySwap"]) == (500_000_000, 20, 32 * MB, -1)
        assert not Path(cgroup_dir("cpu", cid)).exists()
        docker("start", name)
        assert (_cg("cpu", cid, "cpu.cfs_quota_us"), _cg("pids", cid, "pids.max")) == ("50000", "20")
        assert int(_cg("memory", cid, "memory.limit_in_bytes")) == 32 * MB
    finally:
        docker("rm", "-f", name, check=False)
