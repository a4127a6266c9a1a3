"""OCI resources in cgroup v1 terms -> the v2 files' units; device rules -> devices.allow lines."""

from __future__ import annotations

import pytest

from kapal.errors import Invalid
from kapal.linux.cgroups import common
from kapal.linux.cgroups.resources import Resources
from kapal.linux.cgroups.v2 import cpu_weight, io_weight, swap_max
from kapal.linux.devices import DeviceRule
from kapal.linux.mount import MountInfo


def test_cpu_shares_to_weight():
    assert cpu_weight(2) == 1 and cpu_weight(262144) == 10000 and cpu_weight(1024) == 39


def test_blkio_weight_to_io_weight():
    assert io_weight(10) == 1 and io_weight(1000) == 10000


def test_swap_is_memory_plus_swap_in_oci():
    assert swap_max(100, 300) == "200"
    assert swap_max(100, -1) == "max"
    assert swap_max(100, 0) is None
    with pytest.raises(Invalid):
        swap_max(300, 100)
    with pytest.raises(Invalid):
        swap_max(None, 100)


def test_device_rules():
    assert DeviceRule.from_oci({"allow": False, "access": "rwm"}).cgroup_v1() == "a"
    rule = DeviceRule.from_oci({"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"})
    assert rule.cgroup_v1() == "c 1:3 rw"
    assert DeviceRule.from_oci({"allow": True, "type": "c", "major": 136, "access": "rwm"}).cgroup_v1() == "c 136:* rwm"
    with pytest.raises(Invalid):
        DeviceRule.from_oci({"allow": True, "type": "x"})


def test_resources_from_oci():
    r = Resources.from_oci({"cpu": {"quota": 20000, "period": 100000, "cpus": "0"}, "memory": {"limit": 1 << 25},
                            "pids": {"limit": 10}, "devices": [{"allow": False, "access": "rwm"}],
                            "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]}})
    assert (r.cpu_quota, r.cpu_period, r.cpuset_cpus, r.memory_limit, r.pids_limit) == (20000, 100000, "0", 1 << 25, 10)
    assert r.blkio_read_bps[0].rate == 1000 and r.devices[0].cgroup_v1() == "a"
    assert Resources.from_oci(None).is_empty()


def test_hierarchies_separate_and_comounted():
    lines = [
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        "32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd",
        "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
    ]
    h = common.v1_hierarchies([MountInfo(line) for line in lines])
    assert h["cpu"] == h["cpuacct"] == ("/sys/fs/cgroup/cpu,cpuacct", "/")
    assert h["memory"][0] == "/sys/fs/cgroup/memory"
    assert h["name=systemd"][0] == "/sys/fs/cgroup/systemd" and h["unified"][0] == "/sys/fs/cgroup/unified"


def test_cgroup_paths_are_checked():
    with pytest.raises(Invalid):
        common.check_path("/a/../b")


def test_the_containers_cgroup_view_handles_comounted_cpu_cpuacct():
    from kapal.linux.cgroups.v1 import CgroupV1Manager
    from kapal.runtime.launcher import cgroup_mounts

    lines = [
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        "33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
    ]
    mounts = [MountInfo(line) for line in lines]
    manager = CgroupV1Manager.for_path("/ctr", common.v1_hierarchies(mounts))
    assert manager.paths()["cpu"] == manager.paths()["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/ctr"
    view, v2 = cgroup_mounts(manager, mounts)
    assert not v2
    assert [(m.name, m.host_dir, m.aliases) for m in view] == [
        ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/ctr", ("cpu", "cpuacct")),
        ("memory", "/sys/fs/cgroup/memory/ctr", ()),
    ]  # the empty hybrid cgroup2 tree is joined but not shown, as with runc
