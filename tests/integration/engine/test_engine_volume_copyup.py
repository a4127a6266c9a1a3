"""Docker's volume pre-fill: a new, empty volume mounted where the image has content takes that content
first (files, directories, modes, owners, symlinks), once; nocopy and bind mounts never copy."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SEED = (
    "mkdir -p /data/sub && echo seeded > /data/seed.txt && chown 1000:2000 /data/seed.txt"
    " && chmod 640 /data/seed.txt && ln -s seed.txt /data/link && ln /data/seed.txt /data/hard"
    " && echo deep > /data/sub/deep.txt && chmod 4755 /data/sub/deep.txt && chmod 750 /data/sub"
    " && chown 7:8 /data && chmod 710 /data && mkfifo /data/fifo"
)


@pytest.fixture(scope="module")
def seeded(docker, busybox, unique_module):
    """An image whose /data has a file with an owner and mode, a symlink, a hardlink, a subdirectory, a fifo."""
    maker = f"{unique_module}-seedmaker"
    docker("run", "--name", maker, busybox, "sh", "-c", SEED)
    ref = f"{unique_module}-seeded:1"
    docker("commit", maker, ref)
    docker("rm", maker)
    yield ref
    docker("rmi", "-f", ref, check=False)


def _mount_of(docker, name: str, dest: str) -> dict:
    mounts = json.loads(docker.out("inspect", "-f", "{{json .Mounts}}", name))
    return next(m for m in mounts if m["Destination"] == dest)


def test_anonymous_volume_takes_the_image_content(docker, seeded, unique):
    name = f"{unique}-anon"
    r = docker("run", "--name", name, "-v", "/data", seeded, "sh", "-c",
               "cat /data/seed.txt; readlink /data/link; cat /data/sub/deep.txt")
    try:
        assert r.stdout.split() == ["seeded", "seed.txt", "deep"]
        m = _mount_of(docker, name, "/data")
        data = Path(m["Source"])
        assert m["Type"] == "volume" and data.name == "_data"
        assert (data / "seed.txt").read_text() == "seeded\n"
        st = os.lstat(data / "seed.txt")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o640)
        assert os.readlink(data / "link") == "seed.txt"
        assert os.lstat(data / "hard").st_ino == st.st_ino
        assert stat.S_ISFIFO(os.lstat(data / "fifo").st_mode)
        assert stat.S_IMODE(os.lstat(data / "sub").st_mode) == 0o750
        assert stat.S_IMODE(os.lstat(data / "sub/deep.txt").st_mode) == 0o4755
        top = os.lstat(data)
        assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (7, 8, 0o710)
    finally:
        docker("rm", "-v", name, check=False)


def test_named_volume_is_filled_once_and_keeps_the_users_change(docker, seeded, unique):
    vol = f"{unique}-vol"
    try:
        out = docker.out("run", "--rm", "-v", f"{vol}:/data", seeded, "sh", "-c",
                         "cat /data/seed.txt; echo changed > /data/seed.txt; rm /data/link")
        assert out == "seeded"
        out = docker.out("run", "--rm", "-v", f"{vol}:/data", seeded, "sh", "-c",
                         "cat /data/seed.txt; ls /data")
        assert out.split() == ["changed", "fifo", "hard", "seed.txt", "sub"]
        # an image without /data content mounts the same volume as it is
        out = docker.out("run", "--rm", "-v", f"{vol}:/elsewhere", seeded, "cat", "/elsewhere/seed.txt")
        assert out == "changed"
    finally:
        docker("volume", "rm", vol, check=False)


def test_nocopy_and_bind_mounts_stay_empty(docker, seeded, unique, tmp_path):
    vol = f"{unique}-nocopy"
    try:
        assert docker.out("run", "--rm", "-v", f"{vol}:/data:nocopy", seeded, "ls", "-A", "/data") == ""
        assert docker.out("run", "--rm", "--mount", f"type=volume,source={vol}-m,target=/data,volume-nocopy",
                          seeded, "ls", "-A", "/data") == ""
        host = tmp_path / "bind"
        host.mkdir()
        assert docker.out("run", "--rm", "-v", f"{host}:/data", seeded, "ls", "-A", "/data") == ""
        assert list(host.iterdir()) == []
        # the volume filled by --mount without nocopy
        assert docker.out("run", "--rm", "--mount", f"type=volume,source={vol}-c,target=/data",
                          seeded, "cat", "/data/seed.txt") == "seeded"
    finally:
        docker("volume", "rm", vol, f"{vol}-m", f"{vol}-c", check=False)


def test_a_symlink_in_the_image_never_leads_the_copy_or_the_mountpoint_out(docker, busybox, unique, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host\n")
    maker, ref = f"{unique}-linkmaker", f"{unique}-links:1"
    docker("run", "--name", maker, busybox, "sh", "-c",
           f"ln -s {outside} /data && ln -s {tmp_path}/made /made")
    docker("commit", maker, ref)
    docker("rm", maker)
    try:
        out = docker.out("run", "--rm", "-v", "/data", "-v", "/made/sub", ref, "ls", "-A", "/data")
        assert out == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]
    finally:
        docker("rmi", "-f", ref, check=False)
