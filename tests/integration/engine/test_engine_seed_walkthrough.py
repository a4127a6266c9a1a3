"""The seed's chapter 2, typed into the real docker CLI: `run -it` with a cfs quota on bash (host
programs + their libraries) and on busybox, `docker exec` into it, `-v /test` and `-v /home:/test`,
`docker commit`, and `RootFS.Layers`."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from engine_helpers import PtySession, cgroup_dir

pytestmark = pytest.mark.root


def _cpu_usage_ns(cid: str) -> int:
    for controller in ("cpuacct", "cpu,cpuacct"):
        path = cgroup_dir(controller, cid) / "cpuacct.usage"
        if path.exists():
            return int(path.read_text())
    raise AssertionError(f"no cpuacct cgroup for {cid}")


@pytest.mark.parametrize("image_fixture,shell", [("hostimage", "/bin/bash"), ("busybox", "/bin/sh")])
def test_run_it_with_a_cpu_quota_then_exec(request, docker, image_fixture, shell, unique):
    image = request.getfixturevalue(image_fixture)
    name = f"{unique}-it"
    session = PtySession(
        [docker.binary, "run", "-it", "--name", name, "--cpu-period=100000", "--cpu-quota=20000", image, shell],
        docker.env,
    )
    try:
        session.read_until(r"[#$] ")  # typing before the shell's prompt would be flushed by its line editor
        session.send("echo pid=$$")
        session.read_until(r"pid=1\r\n")
        cid = docker.out("inspect", "-f", "{{.Id}}", name)
        assert (cgroup_dir("cpu", cid) / "cpu.cfs_quota_us").read_text().strip() == "20000"
        assert (cgroup_dir("cpu", cid) / "cpu.cfs_period_us").read_text().strip() == "100000"
        session.send("cd /sys/fs/cgroup/cpu && echo quota=$(cat cpu.cfs_quota_us)/$(cat cpu.cfs_period_us) && cd /")
        session.read_until(r"quota=20000/100000\r\n")
        session.send("while :; do :; done & echo loop=$!")
        loop_pid = re.search(r"loop=(\d+)\r\n", session.read_until(r"loop=\d+\r\n")).group(1)
        time.sleep(0.3)
        before, t0 = _cpu_usage_ns(cid), time.monotonic()
        time.sleep(2)
        share = (_cpu_usage_ns(cid) - before) / ((time.monotonic() - t0) * 1e9)
        assert 0.05 < share < 0.35, f"a busy loop under a 20 % quota used {share:.0%} of a CPU"
        seen = docker.out("exec", name, shell, "-c", "cd /proc && echo [0-9]*").split()
        assert "1" in seen and loop_pid in seen, f"exec sees {seen}, not the shell (1) and its loop ({loop_pid})"
        pid = docker.out("inspect", "-f", "{{.State.Pid}}", name)
        assert os.path.exists(f"/proc/{pid}") and cid in open(f"/proc/{pid}/cgroup").read()
        session.send("kill %1; exit 3")
        assert session.wait() == 3
    finally:
        docker("rm", "-f", name, check=False)
    assert not cgroup_dir("cpu", cid).exists()


def test_volume_file_from_exec_reaches_the_host_but_not_commit(docker, busybox, unique):
    name = f"{unique}-vol"
    committed = f"{unique}-committed:1"
    docker("run", "-d", "--name", name, "-v", "/test", busybox, "sleep", "600")
    try:
        docker("exec", name, "sh", "-c", "cd /test && touch text.txt")
        mounts = json.loads(docker.out("inspect", "-f", "{{json .Mounts}}", name))
        assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/test")]
        data = mounts[0]["Source"]
        assert data.endswith("/_data") and os.listdir(data) == ["text.txt"]
        docker("commit", name, committed)
        out = docker.out("run", "--rm", committed, "sh", "-c", "test -d /test && echo dir; ls -A /test | wc -l")
        assert out.split() == ["dir", "0"]
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("rmi", committed, check=False)


def test_bind_mount_of_a_host_directory(docker, hostimage, tmp_path):
    (tmp_path / "from-host.txt").write_text("hello\n")
    out = docker.out("run", "--rm", "-v", f"{tmp_path}:/test", hostimage, "/bin/ls", "/test")
    assert out.split() == ["from-host.txt"]
    out = docker.out("run", "--rm", "-v", "/home:/test", hostimage, "/bin/ls", "-A", "/test")
    assert sorted(out.split()) == sorted(os.listdir("/home"))


def test_inspect_shows_the_image_layers(docker, hostimage):
    layers = json.loads(docker.out("inspect", "-f", "{{json .RootFS.Layers}}", hostimage))
    assert len(layers) == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", layers[0])
    assert docker.out("inspect", "-f", "{{.RootFS.Type}}", hostimage) == "layers"
