"""OCI mount options as the kernel takes them."""

from __future__ import annotations

import pytest

from kapal.errors import Unsupported
from kapal.linux import mount as m


def test_flags_data_and_propagation():
    opts = m.parse_options(["rbind", "ro", "nosuid", "noexec", "rslave", "mode=755", "size=65536k"])
    assert opts.flags == m.MS_BIND | m.MS_REC | m.MS_RDONLY | m.MS_NOSUID | m.MS_NOEXEC
    assert opts.propagation == [m.MS_SLAVE | m.MS_REC]
    assert opts.data == "mode=755,size=65536k"
    assert opts.is_bind


def test_later_options_override_earlier_ones():
    assert m.parse_options(["ro", "rw"]).flags & m.MS_RDONLY == 0
    assert m.parse_options(["nosuid", "suid", "exec"]).flags == 0


def test_unsupported_options_are_refused_by_name():
    with pytest.raises(Unsupported, match="idmap"):
        m.parse_options(["bind", "idmap"])


def test_mount_attrs():
    assert m.mount_attrs(m.MS_RDONLY | m.MS_NODEV) == m.MOUNT_ATTR_RDONLY | m.MOUNT_ATTR_NODEV


def test_mountinfo_line():
    info = m.MountInfo("36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
    assert (info.mount_id, info.parent_id, info.root, info.mountpoint) == (36, 35, "/mnt1", "/mnt/with space")
    assert info.optional == ["master:1"] and info.fstype == "ext3" and info.super == "rw,errors=continue"


def test_mountpoint_of_picks_the_longest_prefix():
    infos = [m.MountInfo(line) for line in (
        "1 0 0:1 / / rw - ext4 /dev/vda rw",
        "2 1 0:2 / /sys rw - sysfs sysfs rw",
        "3 2 0:3 / /sys/fs/cgroup rw - tmpfs tmpfs rw",
    )]
    assert m.mountpoint_of("/sys/fs/cgroup/cpu", infos).mount_id == 3
    assert m.mountpoint_of("/sysx", infos).mount_id == 1
