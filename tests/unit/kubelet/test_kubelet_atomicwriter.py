"""Secret/ConfigMap volume contents swap atomically through the ..data symlink."""

from __future__ import annotations

import os

import pytest

from kapal.errors import Invalid
from kapal.kube.kubelet.atomicwriter import FileProjection, write


def test_layout_and_updates(tmp_path):
    d = tmp_path / "vol"
    assert write(d, {"user": FileProjection(b"admin"), "conf/app.ini": FileProjection(b"[x]", 0o600)})
    assert os.readlink(d / "user") == "..data/user" and os.readlink(d / "conf") == "..data/conf"
    assert (d / "user").read_bytes() == b"admin"
    assert (d / "conf" / "app.ini").stat().st_mode & 0o777 == 0o600
    first = os.readlink(d / "..data")
    assert not write(d, {"user": FileProjection(b"admin"), "conf/app.ini": FileProjection(b"[x]", 0o600)})
    assert os.readlink(d / "..data") == first  # nothing changed, nothing rewritten
    held = open(d / "user", "rb")  # a reader holding the old file keeps the old contents
    assert write(d, {"user": FileProjection(b"root"), "pass": FileProjection(b"s3cret")})
    assert (d / "user").read_bytes() == b"root" and (d / "pass").read_bytes() == b"s3cret"
    assert not (d / "conf").exists() and not (d / first).exists()
    assert held.read() == b"admin"
    held.close()
    entries = sorted(os.listdir(d))
    assert entries[0].startswith("..20") and entries[1:] == ["..data", "pass", "user"]


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../b", "..hidden", ""])
def test_paths_are_checked(tmp_path, bad):
    with pytest.raises(Invalid):
        write(tmp_path / "v", {bad: FileProjection(b"x")})
