"""The CgroupManager suite: CgroupV1Manager and CgroupV2Manager behave the same through the Protocol.

Placement, freezing, signalling and stats run on the real kernel: v1 on this host's hierarchies, v2 on
the hybrid cgroup2 mount at /sys/fs/cgroup/unified (which has no controllers here). Limits need
controllers, so v1 limits are checked on the real files and v2 limits on a fake tree in a temp dir,
each read back in the version's own units.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kapal.errors import Unsupported
from kapal.linux.cgroups import common, manager_for, manager_from_paths
from kapal.linux.cgroups.resources import Resources
from kapal.linux.cgroups.v1 import CgroupV1Manager
from kapal.linux.cgroups.v2 import CgroupV2Manager

pytestmark = pytest.mark.root

UNIFIED = "/sys/fs/cgroup/unified"
# A fresh cgroup2 directory's files and their defaults, for the fake tree.
V2_FILES = {"cpu.max": "max 100000", "cpu.weight": "100", "memory.max": "max", "memory.swap.max": "max",
            "memory.low": "0", "pids.max": "max", "cpuset.cpus": "", "cpuset.mems": "", "io.max": "",
            "cgroup.procs": ""}


def _unified_available() -> bool:
    return any(m.fstype == "cgroup2" and m.mountpoint == UNIFIED for m in common.mountinfo())


@pytest.fixture(params=["v1", "v2"])
def real(request, unique):
    """A manager on the real kernel, destroyed afterwards."""
    if request.param == "v1":
        manager = CgroupV1Manager.for_path("/" + unique)
    else:
        if not _unified_available():
            pytest.skip("no cgroup2 mount at /sys/fs/cgroup/unified")
        manager = CgroupV2Manager(f"{UNIFIED}/{unique}", UNIFIED)
    yield manager
    if manager.exists():
        manager.signal(signal.SIGKILL)
        manager.thaw()
        time.sleep(0.05)
        manager.destroy()


@pytest.fixture
def sleeper():
    procs = []

    def start(*argv: str) -> subprocess.Popen:
        p = subprocess.Popen(list(argv) or ["sleep", "60"])
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_create_is_idempotent_and_destroy_removes(real):
    assert not real.exists()
    real.create()
    real.create()
    assert real.exists()
    real.destroy()
    real.destroy()
    assert not real.exists()


def test_apply_places_a_process(real, sleeper):
    real.create()
    p = sleeper()
    real.apply(p.pid)
    assert real.pids() == [p.pid]
    with open(f"/proc/{p.pid}/cgroup") as f:
        assert f"/{Path(next(iter(real.paths().values()))).name}\n" in f.read()


SELF_MOVER = """
import os, sys, time
for path in sys.argv[1:]:
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, b"0")
    os.close(fd)
print("moved", flush=True)
time.sleep(60)
"""


def test_a_process_moves_itself_then_apply_moves_it_into_the_rest(real, sleeper):
    """self_move_files (v1 `tasks`, no global lock) plus apply(skip_self_movable) into cgroup2_dir = every
    hierarchy."""
    import sys

    real.create()
    files = real.self_move_files()
    assert real.cgroup2_dir() == (real.paths().get("unified") if real.version == 1 else real.path())
    assert all(f.endswith("/tasks") for f in files)
    p = subprocess.Popen([sys.executable, "-c", SELF_MOVER, *files], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "moved\n"
        if real.cgroup2_dir() is not None:
            real.apply(p.pid, skip_self_movable=True)
        assert real.pids() == [p.pid]
        placed = {}  # subsystem ("unified" for the cgroup2 line) -> the process's cgroup there
        for line in Path(f"/proc/{p.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for subsystem in controllers.split(",") if controllers else ["unified"]:
                placed[subsystem] = path
        for subsystem, directory in real.paths().items():
            if subsystem != "mountpoint":
                assert directory.endswith(placed[subsystem]), (subsystem, directory, placed)
    finally:
        p.kill()
        p.wait()


BORN_IN = """
import os, sys
sys.path.insert(0, sys.argv[2])
from kapal.linux import clone
assert clone.usable(), "one thread, kernel 5.7+: clone3(CLONE_INTO_CGROUP) should be usable"
pid = clone.fork_into_cgroup(sys.argv[1])
if pid == 0:
    with open("/proc/self/cgroup") as f:
        print([line for line in f.read().splitlines() if line.startswith("0::")][0], flush=True)
    os._exit(0)
assert pid is not None, "clone3 refused"
os.waitpid(pid, 0)
"""


def test_a_child_can_be_born_in_the_cgroup2_directory(real):
    """kapal.linux.clone: no move (and no migration lock) for the cgroup2 part either."""
    import sys

    if real.cgroup2_dir() is None:
        pytest.skip("no cgroup2 tree on this host")
    real.create()
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", BORN_IN, real.cgroup2_dir(), src], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("/" + Path(real.cgroup2_dir()).name)


def test_paths_rebuild_an_equivalent_manager(real, sleeper):
    real.create()
    p = sleeper()
    real.apply(p.pid)
    again = manager_from_paths(real.version, real.paths())
    assert again.pids() == [p.pid]


def test_freeze_and_thaw(real, sleeper, tmp_path):
    real.create()
    counter = tmp_path / "counter"
    p = sleeper("sh", "-c", f"while :; do echo x >> {counter}; sleep 0.01; done")
    real.apply(p.pid)
    deadline = time.monotonic() + 5
    while not counter.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    real.freeze()
    assert real.frozen()
    size = counter.stat().st_size
    time.sleep(0.2)
    assert counter.stat().st_size == size
    real.thaw()
    assert not real.frozen()
    deadline = time.monotonic() + 5
    while counter.stat().st_size == size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counter.stat().st_size > size


def test_signal_reaches_every_process(real, sleeper):
    real.create()
    procs = [sleeper() for _ in range(3)]
    for p in procs:
        real.apply(p.pid)
    real.signal(signal.SIGKILL)
    for p in procs:
        assert p.wait(5) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while real.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert real.pids() == []


def test_stats_count_cpu_time(real, sleeper):
    real.create()
    p = sleeper("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 60")
    real.apply(p.pid)
    time.sleep(0.3)
    assert real.stats().get("cpu_usage_ns", 0) > 10_000_000


def test_destroy_refuses_while_processes_remain(real, sleeper):
    from kapal.errors import FailedPrecondition

    real.create()
    real.apply(sleeper().pid)
    with pytest.raises(FailedPrecondition):
        common.remove_dir(next(iter(real.paths().values())), timeout=0.1)


# Limits: one reader per version turns the files back into OCI numbers.

def read_v1(manager: CgroupV1Manager) -> dict:
    def get(sub: str, name: str) -> str:
        return Path(manager.path(sub), name).read_text().strip()

    return {
        "cpu_quota": int(get("cpu", "cpu.cfs_quota_us")),
        "cpu_period": int(get("cpu", "cpu.cfs_period_us")),
        "memory_limit": int(get("memory", "memory.limit_in_bytes")),
        "pids_limit": get("pids", "pids.max"),
        "cpus": get("cpuset", "cpuset.cpus"),
    }


def read_v2(manager: CgroupV2Manager) -> dict:
    def get(name: str) -> str:
        return Path(manager.path(), name).read_text().strip()

    quota, period = get("cpu.max").split()
    return {
        "cpu_quota": -1 if quota == "max" else int(quota),
        "cpu_period": int(period),
        "memory_limit": -1 if get("memory.max") == "max" else int(get("memory.max")),
        "pids_limit": get("pids.max"),
        "cpus": get("cpuset.cpus"),
    }


@pytest.fixture(params=["v1", "v2-fake"])
def limited(request, unique, tmp_path):
    if request.param == "v1":
        manager = CgroupV1Manager.for_path("/" + unique)
        manager.create()
        yield manager, read_v1
        manager.destroy()
    else:
        mountpoint = tmp_path / "fake-cgroup2"
        manager = CgroupV2Manager(str(mountpoint / unique), str(mountpoint))
        manager.create()
        for name, default in V2_FILES.items():
            (mountpoint / unique / name).write_text(default + "\n")
        yield manager, read_v2


def test_limits_are_written_in_the_versions_units(limited):
    manager, read = limited
    manager.set(Resources.from_oci({
        "cpu": {"quota": 20000, "period": 100000, "cpus": "0"},
        "memory": {"limit": 32 << 20},
        "pids": {"limit": 50},
    }))
    assert read(manager) == {"cpu_quota": 20000, "cpu_period": 100000, "memory_limit": 32 << 20,
                             "pids_limit": "50", "cpus": "0"}


def test_unlimited_pids(limited):
    manager, read = limited
    manager.set(Resources.from_oci({"pids": {"limit": -1}}))
    assert read(manager)["pids_limit"] == "max"


def test_options_a_version_lacks_fail_by_name(limited):
    manager, _ = limited
    lacking = {"rdma": {"mlx4_0": {"hcaHandles": 3}}}
    with pytest.raises(Unsupported, match="rdma"):
        manager.set(Resources.from_oci(lacking))
    other = {"unified": {"memory.high": "1"}} if manager.version == 1 else {"memory": {"swappiness": 10}}
    with pytest.raises(Unsupported):
        manager.set(Resources.from_oci(other))


def test_the_chooser_picks_v1_on_this_host(unique):
    manager = manager_for("/" + unique)
    assert manager.version == (2 if common.mountinfo() and os.path.exists("/sys/fs/cgroup/cgroup.controllers")
                               else 1)
    assert not manager.exists()


def test_device_rules_allow_the_listed_and_deny_the_rest(real):
    """v1: devices.allow/deny; v2: an eBPF program attached to the cgroup (checked on the real unified mount)."""
    real.create()
    real.set(Resources.from_oci({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"},  # /dev/kmsg, write only
    ]}))
    script = ("read go; echo a > /dev/null && echo null-ok; (head -c1 /dev/kmsg > /dev/null) 2>/dev/null "
              "&& echo kmsg-read-ok || echo kmsg-read-denied; (: > /dev/kmsg) && echo kmsg-write-ok")
    p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    real.apply(p.pid)
    out, _ = p.communicate("go\n", timeout=10)
    assert out.split() == ["null-ok", "kmsg-read-denied", "kmsg-write-ok"]
    # a later allow-all replaces the list
    real.set(Resources.from_oci({"devices": [{"allow": True, "access": "rwm"}]}))
    p = subprocess.Popen(["sh", "-c", "read go; (: < /dev/kmsg) && echo kmsg-open-ok"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    real.apply(p.pid)
    out, _ = p.communicate("go\n", timeout=10)
    assert out.strip() == "kmsg-open-ok"
