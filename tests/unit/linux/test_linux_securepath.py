"""Paths from config.json resolve inside the rootfs, whatever symlinks the image holds."""

from __future__ import annotations

import os

import pytest

from kapal.errors import Invalid
from kapal.linux.securepath import open_in_root, resolve_in_root


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr" / "lib").mkdir(parents=True)
    os.symlink("/", r / "etc" / "up")  # absolute: means the rootfs's /
    os.symlink("../../../../../..", r / "usr" / "lib" / "dots")  # climbs past the root
    os.symlink("usr/lib", r / "lib")  # relative, inside
    os.symlink(str(tmp_path / "outside"), r / "out")  # names a host path
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    (tmp_path / "outside").mkdir()
    return r


def where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_resolve_keeps_symlinks_inside(root):
    r = str(root)
    assert resolve_in_root(r, "/etc/up/etc") == r + "/etc"
    assert resolve_in_root(r, "/usr/lib/dots/x") == r + "/x"
    assert resolve_in_root(r, "/lib/y") == r + "/usr/lib/y"
    assert resolve_in_root(r, "/out/z") == r + str(root.parent / "outside") + "/z"
    assert resolve_in_root(r, "../../..") == r
    with pytest.raises(Invalid, match="too many levels"):
        resolve_in_root(r, "/loop1/x")


def test_open_in_root_creates_inside_and_never_outside(root, tmp_path):
    fd = open_in_root(str(root), "/out/new/dir", create="dir")
    assert where(fd) == str(root) + str(tmp_path / "outside") + "/new/dir"
    assert os.listdir(tmp_path / "outside") == []
    fd = open_in_root(str(root), "/usr/lib/dots/etc/hosts", create="file")
    assert where(fd) == str(root / "etc" / "hosts")
    assert (root / "etc" / "hosts").is_file()
    fd = open_in_root(str(root), "/lib/sub", create="dir")
    assert where(fd) == str(root / "usr" / "lib" / "sub")


def test_open_in_root_without_create_needs_the_path(root):
    with pytest.raises(FileNotFoundError):
        open_in_root(str(root), "/nope")
    assert where(open_in_root(str(root), "/")) == str(root)


def test_open_in_root_agrees_with_resolve(root):
    for path in ("/etc/up/usr/lib", "/usr/lib/dots/usr", "/lib"):
        assert where(open_in_root(str(root), path)) == resolve_in_root(str(root), path)
