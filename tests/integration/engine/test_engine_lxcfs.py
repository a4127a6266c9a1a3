"""lxcfs that is dead, dies, or cannot be had never keeps a container from starting: the engine mounts a live
one where --lxcfs-dir says (a dead FUSE mount there is replaced), never binds a dead one, and without lxcfs
says so once. `--cleanup` stops the lxcfs the engine started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from engine_helpers import DockerCLI, host_programs_tar, pid_alive
from image_helpers import ENGINE_ARGS, KAPAL, EngineProcess, cleanup_tree, leftover_mounts

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("lxcfs") is None, reason="lxcfs is not installed")]


def _lxcfs_mounted(directory: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(directory) and "fuse.lxcfs" in line for line in f)


def _dead_lxcfs_mount(directory: Path) -> int:
    """lxcfs mounted at `directory`, then killed with SIGKILL: its FUSE mount stays and answers ENOTCONN."""
    binary = shutil.which("lxcfs")
    directory.mkdir(parents=True)
    proc = subprocess.Popen([binary, "-p", str(directory.with_name("dead.pid")), str(directory)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while not (directory / "proc" / "meminfo").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "lxcfs did not start"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    with pytest.raises(OSError) as e:
        (directory / "proc" / "meminfo").read_bytes()  # a read always reaches the daemon (a stat may be cached)
    assert e.value.errno == 107  # ENOTCONN: a dead FUSE mount
    return proc.pid


def _mem_total(docker: DockerCLI) -> int:
    out = docker.out("run", "--rm", "-m", "256m", IMAGE, "/bin/free", "-m")
    return int(re.search(r"^Mem:\s+(\d+)", out, re.M).group(1))


IMAGE = "lxcfs-free:1"


@pytest.fixture
def own_engine(tmp_path):
    """An engine of the test's own (the session's bridge) with extra flags and an image with the host's `free`
    (procps: it reads /proc/meminfo, busybox's asks sysinfo(2)), and its clean-up (`--cleanup`, then nothing
    mounted under tmp_path)."""
    engines: list[EngineProcess] = []
    image_tar = tmp_path / "image.tar"
    image_tar.write_bytes(host_programs_tar(["free"]))

    def start(*extra: str) -> tuple[EngineProcess, DockerCLI]:
        eng = EngineProcess(tmp_path, data_root=tmp_path / "data", extra=list(extra))
        eng.start()
        engines.append(eng)
        (tmp_path / "docker-config").mkdir(exist_ok=True)
        cli = DockerCLI(eng.host, tmp_path / "docker-config")
        cli("import", str(image_tar), IMAGE)
        return eng, cli

    yield start
    for eng in engines:
        eng.kill()
    r = subprocess.run([str(KAPAL), "engine", "--data-root", str(tmp_path / "data"), "-H", engines[-1].host,
                        *ENGINE_ARGS, "--cleanup"], capture_output=True, text=True, timeout=60) if engines else None
    left = leftover_mounts(tmp_path)
    cleanup_tree(tmp_path)
    assert r is None or r.returncode == 0, r.stderr
    assert left == []


def test_a_dead_lxcfs_mount_is_replaced_and_never_bound(own_engine, tmp_path):
    lxcfs_dir = tmp_path / "lxcfs"
    _dead_lxcfs_mount(lxcfs_dir)
    eng, docker = own_engine("--lxcfs-dir", str(lxcfs_dir))
    assert _mem_total(docker) == 256
    assert "does not answer" in eng.log_path.read_text()
    record = json.loads((eng.data_root / "lxcfs.json").read_text())
    assert record["dir"] == str(lxcfs_dir) and pid_alive(record["pid"])

    # the engine's own lxcfs dies under it: the next container still starts, with a new lxcfs
    os.kill(record["pid"], signal.SIGKILL)
    assert _mem_total(docker) == 256
    again = json.loads((eng.data_root / "lxcfs.json").read_text())
    assert again["pid"] != record["pid"] and pid_alive(again["pid"])

    eng.kill()
    r = subprocess.run([str(KAPAL), "engine", "--data-root", str(eng.data_root), "-H", eng.host, *ENGINE_ARGS,
                        "--lxcfs-dir", str(lxcfs_dir), "--cleanup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "lxcfs" in r.stderr and not pid_alive(again["pid"]) and not _lxcfs_mounted(lxcfs_dir)


def test_without_lxcfs_the_engine_says_so_once_and_containers_start(own_engine, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where lxcfs would be mounted\n")
    eng, docker = own_engine("--lxcfs-dir", str(blocker / "lxcfs"))
    for _ in range(2):
        assert _mem_total(docker) > 256  # the host's memory: no /proc view, but it runs
    assert eng.log_path.read_text().count("containers see the host's /proc files") == 1


def test_a_live_lxcfs_elsewhere_is_shared_a_dead_one_never(tmp_path, engine_session):
    """What the default, host-wide directory does: any lxcfs that answers will do, a dead mount never."""
    from kapal.engine.lxcfs import Lxcfs, mounted_dirs, probe

    dead = tmp_path / "dead"
    _dead_lxcfs_mount(dead)
    try:
        live_elsewhere = [d for d in mounted_dirs() if probe(Path(d)) is None]
        if not live_elsewhere:
            pytest.skip("no live lxcfs on this host (the session's did not start)")
        chosen = Lxcfs.ensure(tmp_path / "mine", share=True).dir
        assert chosen is not None and str(chosen) in live_elsewhere and chosen != dead
        assert not _lxcfs_mounted(tmp_path / "mine")  # nothing started: the live one is used
    finally:
        cleanup_tree(tmp_path)
