"""unmount_tree: what engine clean-up, kubelet teardown, `kapal down` and `adm reset` use to leave no mount."""

from __future__ import annotations

import os

import pytest

from kapal.linux.mount import MNT_DETACH, mount, mountinfo, umount, unmount_tree

pytestmark = pytest.mark.root


def _mounted_under(root: str) -> list[str]:
    return sorted(m.mountpoint for m in mountinfo() if m.mountpoint == root or m.mountpoint.startswith(root + "/"))


def test_unmounts_deepest_first_and_keeps_the_root_when_asked(tmp_path):
    root = os.path.realpath(tmp_path / "tree")
    nested = [root, f"{root}/a", f"{root}/a/b c", f"{root}/d"]
    try:
        for path in nested:
            os.makedirs(path, exist_ok=True)
            mount("tmpfs", path, "tmpfs")
        os.makedirs(f"{root}-sibling", exist_ok=True)
        mount("tmpfs", f"{root}-sibling", "tmpfs")

        unmounted, problems = unmount_tree(root, include_root=False)
        assert problems == []
        assert sorted(unmounted) == sorted(nested[1:])
        assert unmounted.index(f"{root}/a/b c") < unmounted.index(f"{root}/a"), "deepest first"
        assert _mounted_under(root) == [root]

        unmounted, problems = unmount_tree(root)
        assert (unmounted, problems) == ([root], [])
        assert _mounted_under(root) == []
        assert _mounted_under(f"{root}-sibling") == [f"{root}-sibling"], "a sibling sharing the prefix stays"
        assert unmount_tree(root) == ([], [])
    finally:
        for path in reversed([*nested, f"{root}-sibling"]):
            try:
                umount(path, MNT_DETACH)
            except OSError:
                pass
