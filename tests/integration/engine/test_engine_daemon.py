"""The daemon's socket: one engine per socket, stale sockets replaced, clients told how to start one."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from image_helpers import KAPAL, EngineProcess, cleanup_tree

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
