"""The daemon's socket: one engine per socket, stale sockets replaced, clients told how to start one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
from image_helpers import ENGINE_ARGS, KAPAL, EngineProcess, cleanup_tree

pytestmark = pytest.mark.root


def test_refuses_a_socket_in_use_and_replaces_a_stale_one(engine, tmp_path):
    r = subprocess.run(
        [str(KAPAL), "engine", "--data-root", str(tmp_path / "other"), "-H", engine.host],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 125 and "already listening" in r.stderr
    assert engine.run("images").returncode == 0

    stale = tmp_path / "stale" / "engine.sock"
    stale.parent.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens: what a crashed engine leaves
    eng = EngineProcess(stale.parent)
    try:
        eng.start()
        assert eng.ok("images", "-q") == ""
    finally:
        eng.kill()
        cleanup_tree(eng.data_root)
    assert not stale.exists()


def test_clients_say_how_to_start_an_engine(tmp_path):
    env = {**os.environ, "KAPAL_HOST": f"unix://{tmp_path}/none.sock"}
    r = subprocess.run([str(KAPAL), "images"], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "Cannot connect to the kapal engine" in r.stderr and "kapal engine" in r.stderr
    r = subprocess.run(
        [str(KAPAL), "-H", f"unix://{tmp_path}/none.sock", "run", "busybox"], capture_output=True, text=True
    )
    assert r.returncode == 125 and "Cannot connect" in r.stderr


def test_sigterm_with_live_restore_does_not_wait_for_requests_in_flight(tmp_path):
    """A `docker stop -t 30` waiting out its grace and a `docker logs -f` do not hold the engine on SIGTERM: it
    goes at once, the container keeps running, and the next engine adopts it."""
    from engine_helpers import DockerCLI
    from image_helpers import busybox_rootfs_tar

    eng = EngineProcess(tmp_path, data_root=tmp_path / "data")
    eng.start()
    (tmp_path / "cfg").mkdir()
    docker = DockerCLI(eng.host, tmp_path / "cfg")
    streams: list[subprocess.Popen] = []
    try:
        tar = tmp_path / "bb.tar"
        tar.write_bytes(busybox_rootfs_tar())
        docker("import", str(tar), "sigterm-bb:1")
        cid = docker.out("run", "-d", "sigterm-bb:1", "sh", "-c",
                         "trap 'echo got-term' TERM; echo up; while :; do sleep 0.1; done")
        pid = int(docker.out("inspect", "-f", "{{.State.Pid}}", cid))
        for args in (["stop", "-t", "30", cid], ["logs", "-f", cid]):
            streams.append(subprocess.Popen([docker.binary, *args], env=docker.env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + 20
        while "got-term" not in docker.out("logs", cid):  # the stop request is in its grace period now
            assert time.monotonic() < deadline, "the stop never signalled the container"
            time.sleep(0.1)
        eng.proc.send_signal(signal.SIGTERM)
        eng.proc.wait(10)  # not the 30 s the stop would wait
        assert os.path.exists(f"/proc/{pid}"), "live restore: the container keeps running"
        for p in streams:
            p.wait(10)
        eng.start()
        assert docker.out("inspect", "-f", "{{.State.Running}} {{.State.Pid}}", cid) == f"true {pid}"
        docker("rm", "-f", cid)
    finally:
        for p in streams:
            if p.poll() is None:
                p.kill()
                p.wait()
        eng.kill()
        eng.sweep()
        subprocess.run([str(KAPAL), "engine", "--data-root", str(eng.data_root), "-H", eng.host, *ENGINE_ARGS,
                        "--cleanup"], capture_output=True, timeout=60)
        cleanup_tree(tmp_path)
