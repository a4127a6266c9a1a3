"""Containers outlive the engine (SIGTERM and kill -9 with live restore, the default): the next engine
lists them with the right state, their logs are complete, and the exit of one that ended meanwhile is
known. With --live-restore=false, stopping the engine stops its containers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from engine_helpers import pid_alive
from image_helpers import busybox_rootfs_tar

pytestmark = pytest.mark.root


def test_containers_survive_sigterm_and_kill9_and_are_adopted(restartable, tmp_path):
    eng, docker = restartable()
    tar = tmp_path / "bb.tar"
    tar.write_bytes(busybox_rootfs_tar())
    docker("import", str(tar), "lr:1")
    docker("run", "-d", "--name", "ticker", "--health-cmd", "true", "--health-interval", "200ms", "lr:1", "sh", "-c",
           "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    docker("run", "-d", "--name", "ender", "lr:1", "sh", "-c", "sleep 4; echo bye; exit 7")
    ticker_pid = int(docker.out("inspect", "-f", "{{.State.Pid}}", "ticker"))
    ender_pid = int(docker.out("inspect", "-f", "{{.State.Pid}}", "ender"))

    eng.kill(signal.SIGTERM)  # live restore: the engine goes, the containers stay
    assert pid_alive(ticker_pid) and pid_alive(ender_pid)
    eng, docker = restartable()
    assert docker.out("ps", "--format", "{{.Names}} {{.State}}").splitlines() == ["ender running", "ticker running"]

    eng.kill(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(ender_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(ender_pid), "ender should have ended while no engine ran"
    assert pid_alive(ticker_pid)
    time.sleep(0.5)  # ticker keeps logging without an engine
    eng, docker = restartable()
    restarted = time.time()
    deadline = time.monotonic() + 10  # its health checks go on under the new engine
    while True:
        health = json.loads(docker.out("inspect", "-f", "{{json .State.Health}}", "ticker"))
        if health["Status"] == "healthy" and health["Log"] and \
                health["Log"][-1]["Start"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted)):
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    states = docker.out("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}").splitlines()
    assert states[0].startswith("ender exited Exited (7)") and states[1].startswith("ticker running Up")
    assert docker.out("inspect", "-f", "{{.State.ExitCode}} {{.State.Pid}}", "ender") == "7 0"
    assert docker.out("logs", "ender") == "bye"
    assert docker.out("inspect", "-f", "{{.State.Pid}}", "ticker") == str(ticker_pid)
    ticks = [int(n) for n in re.findall(r"tick (\d+)", docker.out("logs", "ticker"))]
    assert ticks == list(range(len(ticks))) and len(ticks) > 20, "the log has every line, including the engine-less"
    follow = subprocess.Popen([docker.binary, "logs", "-f", "--tail", "0", "ticker"], env=docker.env,
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    docker("stop", "-t", "1", "ticker")  # ends the follow: an adopted container's output still streams
    live = [int(n) for n in re.findall(r"tick (\d+)", follow.communicate(timeout=30)[0])]
    assert len(live) >= 5 and live == list(range(live[0], live[0] + len(live)))
    assert docker.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ticker") == "exited 137"
    assert not pid_alive(ticker_pid)
    docker("rm", "ticker", "ender")
    docker("rmi", "lr:1")


def test_without_live_restore_stopping_the_engine_stops_containers(restartable, tmp_path):
    eng, docker = restartable("--live-restore=false")
    tar = tmp_path / "bb.tar"
    tar.write_bytes(busybox_rootfs_tar())
    docker("import", str(tar), "nlr:1")
    docker("run", "-d", "--name", "polite", "nlr:1", "sh", "-c",
           "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done")
    pid = int(docker.out("inspect", "-f", "{{.State.Pid}}", "polite"))
    cid = docker.out("inspect", "-f", "{{.Id}}", "polite")
    shim = int((tmp_path / "data" / "containers" / cid / "shim.pid").read_text())
    t0 = time.monotonic()
    eng.kill(signal.SIGTERM)
    assert time.monotonic() - t0 < 10
    assert not pid_alive(pid) and not pid_alive(shim)
    eng, docker = restartable()
    doc = json.loads(docker.out("inspect", "polite"))[0]
    assert (doc["State"]["Status"], doc["State"]["ExitCode"]) == ("exited", 0)
    assert docker.out("logs", "polite") == "got TERM"
    assert not os.path.exists(doc["NetworkSettings"]["SandboxKey"] or "/nonexistent")
    docker("rm", "polite")
    docker("rmi", "nlr:1")
