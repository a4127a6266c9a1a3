"""Limits as the seed shows them: cpu quota, memory (OOM kill), pids (fork bomb), cpuset."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from runtime_helpers import cgroups_of

pytestmark = pytest.mark.root


def start_detached(runtime, bundle, tmp_path):
    with open(tmp_path / f"{bundle.id}.out", "w") as out:
        runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=out, stderr=out, capture_output=False)


def test_init_joins_its_cgroup_in_every_hierarchy(runtime, make_bundle, tmp_path):
    """v1 hierarchies (the init moves itself in) and a hybrid host's cgroup2 tree (the runtime moves it)."""
    bundle = make_bundle(["/bin/sleep", "60"])
    start_detached(runtime, bundle, tmp_path)
    placed = cgroups_of(int(runtime.state(bundle.id)["pid"]))
    assert len(placed) > 1
    assert all(path == bundle.cgroup_path for path in placed.values()), placed


def test_a_cgroup_namespace_is_rooted_at_the_containers_cgroups(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "cat /proc/self/cgroup; sleep 60"])
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.write()
    start_detached(runtime, bundle, tmp_path)
    placed = cgroups_of(int(runtime.state(bundle.id)["pid"]))
    assert all(path == bundle.cgroup_path for path in placed.values()), placed
    out = tmp_path / f"{bundle.id}.out"
    deadline = time.monotonic() + 5
    while len(out.read_text().splitlines()) < len(placed):
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.02)
    inside = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in out.read_text().splitlines()}
    assert {hierarchy: inside[hierarchy] for hierarchy in placed} == {hierarchy: "/" for hierarchy in placed}


def test_cpu_quota_holds_a_busy_loop_near_20_percent(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "while :; do :; done"])
    bundle.config["linux"]["resources"]["cpu"] = {"quota": 20000, "period": 100000}
    bundle.write()
    start_detached(runtime, bundle, tmp_path)
    usage = Path(f"/sys/fs/cgroup/cpuacct{bundle.cgroup_path}/cpuacct.usage")
    assert Path(f"/sys/fs/cgroup/cpu{bundle.cgroup_path}/cpu.cfs_quota_us").read_text().strip() == "20000"
    time.sleep(0.3)  # let the loop settle into its quota
    used0, t0 = int(usage.read_text()), time.monotonic()
    time.sleep(1.5)
    used1, t1 = int(usage.read_text()), time.monotonic()
    share = (used1 - used0) / 1e9 / (t1 - t0)
    assert 0.10 <= share <= 0.35, f"{share:.0%} of one CPU"


def test_memory_limit_oom_kills_with_137(runtime, make_bundle):
    # 32 MiB limit; the shell grows a 64 MiB string in memory
    bundle = make_bundle(["/bin/sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"])
    bundle.config["linux"]["resources"]["memory"] = {"limit": 32 << 20, "swap": 32 << 20}
    bundle.write()
    result = runtime("run", "--bundle", str(bundle.path), bundle.id, check=False)
    assert result.returncode == 137, (result.returncode, result.stdout, result.stderr)
    assert "survived" not in result.stdout


def test_pids_limit_stops_a_fork_bomb(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 60"])
    bundle.config["linux"]["resources"]["pids"] = {"limit": 20}
    bundle.write()
    start_detached(runtime, bundle, tmp_path)
    pids = Path(f"/sys/fs/cgroup/pids{bundle.cgroup_path}")
    deadline = time.monotonic() + 10
    while "max 0" in (pids / "pids.events").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert int((pids / "pids.current").read_text()) <= 20
    refused = int((pids / "pids.events").read_text().split()[1])
    assert refused > 0, "the bomb never hit the limit"
    runtime("delete", "--force", bundle.id)  # killing PID 1 takes the whole pid namespace with it
    assert runtime.ids() == []


def test_cpuset_pins_the_container(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"])
    bundle.config["linux"]["resources"]["cpu"] = {"cpus": "0"}
    bundle.write()
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    assert out.split() == ["Cpus_allowed_list:", "0"]


def test_limits_reach_the_cgroup_files(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    bundle.config["linux"]["resources"].update({
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "memory": {"limit": 100 << 20, "reservation": 50 << 20},
        "pids": {"limit": 30},
        "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
    })
    bundle.write()
    start_detached(runtime, bundle, tmp_path)
    base = bundle.cgroup_path

    def read(controller: str, name: str) -> str:
        return Path(f"/sys/fs/cgroup/{controller}{base}/{name}").read_text().strip()

    assert read("cpu", "cpu.shares") == "512"
    assert read("memory", "memory.limit_in_bytes") == str(100 << 20)
    assert read("memory", "memory.soft_limit_in_bytes") == str(50 << 20)
    assert read("pids", "pids.max") == "30"
    if Path("/sys/block/vda").exists():
        assert "254:0 1048576" in read("blkio", "blkio.throttle.read_bps_device")
    devices = read("devices", "devices.list").splitlines()
    assert "c 1:3 rwm" in devices and "a *:* rwm" not in devices
    subprocess.run(runtime.cmd("delete", "--force", bundle.id), check=True)
