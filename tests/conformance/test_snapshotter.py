"""Snapshotter conformance: every implementation passes this suite on the real kernel."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from kapal.errors import AlreadyExists, FailedPrecondition, NotFound
from kapal.image.snapshots import Kind, Mount, OverlaySnapshotter

pytestmark = pytest.mark.root

IMPLEMENTATIONS = {"overlay": OverlaySnapshotter}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def sn(request, tmp_path):
    return IMPLEMENTATIONS[request.param](tmp_path / "snapshots")


def mount_all(mounts: list[Mount], target) -> None:
    for m in mounts:
        opts = ",".join(m.options)
        subprocess.run(["mount", "-t", m.type, "-o", opts, m.source, str(target)], check=True)


@pytest.fixture
def mounted(tmp_path):
    targets = []

    def do(mounts, name="mnt"):
        target = tmp_path / name
        target.mkdir()
        mount_all(mounts, target)
        targets.append(target)
        return target

    yield do
    for t in reversed(targets):
        subprocess.run(["umount", "-l", str(t)], check=False)


def write_layer(sn, key, files, parent=None, deleted=()):
    """Write files into a fresh active snapshot directly (what unpacking does) and commit it."""
    sn.prepare(key + "-active")
    upper = sn.upper_dir(key + "-active")
    for name, content in files.items():
        path = upper / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    for name in deleted:
        os.mknod(upper / name, stat.S_IFCHR, 0)
    sn.commit(key, key + "-active", parent=parent)


def test_layers_stack_and_whiteouts_hide(sn, mounted):
    write_layer(sn, "l1", {"a": "1", "b": "1"})
    write_layer(sn, "l2", {"a": "2"}, parent="l1", deleted=["b"])
    root = mounted(sn.prepare("ctr", "l2"))
    assert (root / "a").read_text() == "2"
    assert not (root / "b").exists()
    (root / "c").write_text("rw")
    assert (sn.upper_dir("ctr") / "c").read_text() == "rw"
    assert sn.lower_dirs("ctr") == [sn.upper_dir("l2"), sn.upper_dir("l1")]


def test_view_is_read_only(sn, mounted):
    write_layer(sn, "l1", {"a": "1"})
    root = mounted(sn.view("v", "l1"))
    assert (root / "a").read_text() == "1"
    with pytest.raises(OSError):
        (root / "x").write_text("no")


def test_lifecycle_errors(sn):
    write_layer(sn, "l1", {"a": "1"})
    with pytest.raises(AlreadyExists):
        sn.prepare("l1")
    with pytest.raises(NotFound):
        sn.prepare("x", "missing")
    sn.prepare("child", "l1")
    with pytest.raises(FailedPrecondition):
        sn.prepare("grandchild", "child")
    with pytest.raises(FailedPrecondition):
        sn.remove("l1")
    sn.remove("child")
    sn.remove("l1")
    with pytest.raises(NotFound):
        sn.stat("l1")
    assert list(sn.walk()) == []


def test_commit_sets_kind_parent_and_survives_restart(sn, tmp_path):
    write_layer(sn, "l1", {"a": "1"})
    write_layer(sn, "l2", {"b": "2" * 10000}, parent="l1")
    again = type(sn)(sn.root)
    info = again.stat("l2")
    assert info.kind is Kind.COMMITTED and info.parent == "l1"
    assert again.usage("l2") >= 10000


def test_deep_stacks_are_refused_by_name_when_they_do_not_fit(sn):
    parent = None
    for i in range(300):
        write_layer(sn, f"l{i}", {}, parent=parent)
        parent = f"l{i}"
    with pytest.raises(Exception, match="too deep"):
        sn.prepare("ctr", parent)
