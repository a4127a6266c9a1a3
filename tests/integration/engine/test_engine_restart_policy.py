"""Restart policies with Docker's semantics, driven by the docker CLI and SDK: the engine restarts a
container that exits per its policy (through a new shim) with Docker's backoff and RestartCount, the
user's stop and kill are respected, `docker update --restart` changes it, `--rm` with a policy is refused,
and `always` / `unless-stopped` containers come back when the engine starts (also after kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import docker as docker_sdk
import pytest
from image_helpers import KAPAL, busybox_rootfs_tar

pytestmark = pytest.mark.root


def _state(docker, name: str) -> dict:
    doc = json.loads(docker.out("inspect", name))[0]
    return {**doc["State"], "RestartCount": doc["RestartCount"], "Policy": doc["HostConfig"]["RestartPolicy"]}


def _until(docker, name: str, check, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(docker, name)
        if check(state):
            return state
        assert time.monotonic() < deadline, f"{name}: gave up waiting, last state {state}"
        time.sleep(0.05)


def _actions(docker, name: str, since: float) -> list[str]:
    out = docker.out("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                     "--filter", f"container={name}", "--format", "{{.Action}}")
    return [a for a in out.split() if a in ("start", "die", "stop", "kill")]


def test_on_failure_restarts_n_times_with_the_backoff(docker, busybox, unique, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    name = f"{unique}-onfail"
    since = time.time() - 0.1
    docker("run", "-d", "--name", name, "--restart", "on-failure:3", "-v", f"{runs}:/runs", busybox,
           "sh", "-c", "touch /runs/$(cat /proc/sys/kernel/random/uuid); exit 3")
    try:
        state = _until(docker, name, lambda s: s["Status"] == "exited" and s["RestartCount"] == 3)
        assert (state["ExitCode"], state["Restarting"], state["Running"]) == (3, False, False)
        assert state["Policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        time.sleep(0.5)
        assert _state(docker, name)["RestartCount"] == 3 and len(list(runs.iterdir())) == 4
        starts = sorted(p.stat().st_mtime_ns for p in runs.iterdir())
        gaps = [(b - a) / 1e9 for a, b in zip(starts, starts[1:], strict=False)]
        for gap, least in zip(gaps, (0.1, 0.2, 0.4), strict=True):
            assert gap >= least * 0.95, f"restarted after {gap:.3f} s, before the backoff's {least} s: {gaps}"
        assert _actions(docker, name, since) == ["start", "die"] * 4
        # the user's start begins the count again
        docker("start", name)
        _until(docker, name, lambda s: s["Status"] == "exited" and s["RestartCount"] == 3)
        assert len(list(runs.iterdir())) == 8
    finally:
        docker("rm", "-f", name, check=False)


def test_always_restarts_until_the_users_stop_or_kill(docker, busybox, unique):
    name = f"{unique}-always"
    docker("run", "-d", "--name", name, "--restart", "always", busybox, "sh", "-c", "exit 0")
    try:
        # the waits grow (0.1, 0.2, 0.4 … s): it is soon seen waiting, Running and Restarting as in Docker
        # (a 5th restart waits 1.6 s: long enough to look at it)
        state = _until(docker, name, lambda s: s["Status"] == "restarting" and s["RestartCount"] >= 5)
        assert state["Running"] and state["Restarting"] and state["Pid"] == 0
        r = docker("exec", name, "true", check=False)
        assert r.returncode != 0 and "is restarting, wait until the container is running" in r.stderr
        assert docker.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}").startswith("Restarting (0)")
        r = docker("rm", name, check=False)
        assert r.returncode != 0 and "container is restarting" in r.stderr
        docker("stop", name)
        state = _state(docker, name)
        assert (state["Status"], state["Running"], state["Restarting"]) == ("exited", False, False)
        count = state["RestartCount"]
        time.sleep(1.0)
        assert _state(docker, name)["Status"] == "exited" and _state(docker, name)["RestartCount"] == count
    finally:
        docker("rm", "-f", name, check=False)

    name = f"{unique}-killed"
    docker("run", "-d", "--name", name, "--restart", "always", busybox, "sleep", "300")
    try:
        docker("kill", name)
        _until(docker, name, lambda s: s["Status"] == "exited")
        time.sleep(0.5)
        state = _state(docker, name)
        assert (state["Status"], state["ExitCode"], state["RestartCount"]) == ("exited", 137, 0)
    finally:
        docker("rm", "-f", name, check=False)


def test_update_restart_policy_of_a_running_container(engine, docker, busybox, unique):
    name = f"{unique}-upd"
    docker("run", "-d", "--name", name, busybox, "sh", "-c",
           "while [ ! -f /tmp/go ]; do sleep 0.05; done; exit 5")
    try:
        kapal = subprocess.run([str(KAPAL), "update", "--restart", "unless-stopped", name], capture_output=True,
                               text=True, env={**os.environ, "KAPAL_HOST": engine.host}, timeout=60)
        assert kapal.returncode == 0, kapal.stderr
        assert _state(docker, name)["Policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
        docker("update", "--restart", "on-failure:1", name)
        assert _state(docker, name)["Policy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
        docker("exec", name, "touch", "/tmp/go")  # the rw layer keeps it: the restarted run exits 5 at once
        state = _until(docker, name, lambda s: s["Status"] == "exited" and s["RestartCount"] == 1)
        assert state["ExitCode"] == 5
        r = docker("update", "--memory", "64m", name, check=False)  # no swap limit set: dockerd refuses too
        assert r.returncode != 0 and "update the memoryswap at the same time" in r.stderr
        assert _state(docker, name)["Policy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
    finally:
        docker("rm", "-f", name, check=False)


def test_rm_with_a_restart_policy_and_bad_policies_are_refused(engine, docker, busybox, unique):
    r = docker("run", "--rm", "--restart", "always", busybox, "true", check=False)
    assert r.returncode != 0 and "restart" in r.stderr.lower() and "--rm" in r.stderr.replace("AutoRemove", "--rm")
    client = docker_sdk.DockerClient(base_url=engine.host)
    try:
        with pytest.raises(docker_sdk.errors.APIError) as e:
            client.containers.create(busybox, "true", auto_remove=True, restart_policy={"Name": "on-failure"})
        assert e.value.status_code == 400 and "can't create 'AutoRemove' container with restart policy" in str(e.value)
        with pytest.raises(docker_sdk.errors.APIError) as e:
            client.containers.create(busybox, "true", restart_policy={"Name": "always", "MaximumRetryCount": 2})
        assert e.value.status_code == 400 and "can only be used with 'on-failure'" in str(e.value)
        assert not [c for c in client.containers.list(all=True) if c.image.tags == [busybox]
                    and c.attrs["Config"]["Cmd"] == ["true"]]
    finally:
        client.close()


# ------------------------------------------------------------------ engine start-up


def _pid_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_policies_at_engine_start_after_kill9(restartable, tmp_path):
    _, docker = restartable()
    tar = tmp_path / "bb.tar"
    tar.write_bytes(busybox_rootfs_tar())
    docker("import", str(tar), "rp:1")
    for name, policy in (("always", "always"), ("unless", "unless-stopped"), ("stopped-unless", "unless-stopped"),
                         ("stopped-always", "always"), ("none", "no"), ("dies-always", "always")):
        docker("run", "-d", "--name", name, "--restart", policy, "rp:1", "sleep", "300")
    docker("stop", "-t", "0", "stopped-unless", "stopped-always")
    dying = int(docker.out("inspect", "-f", "{{.State.Pid}}", "dies-always"))
    none_pid = int(docker.out("inspect", "-f", "{{.State.Pid}}", "none"))

    restartable.engines[-1].kill(signal.SIGKILL)  # type: ignore[attr-defined]
    os.kill(dying, signal.SIGKILL)  # dies while no engine runs
    assert _pid_gone(dying)
    _, docker = restartable()

    # as dockerd: what died meanwhile is started by the engine's start-up, which is not a counted restart
    state = _until(docker, "dies-always", lambda s: s["Status"] == "running")
    assert state["Pid"] != dying and state["RestartCount"] == 0
    for name in ("always", "unless", "stopped-always"):
        assert _until(docker, name, lambda s: s["Status"] == "running")["Status"] == "running"
    assert int(docker.out("inspect", "-f", "{{.State.Pid}}", "none")) == none_pid
    time.sleep(0.5)
    assert _state(docker, "stopped-unless")["Status"] == "exited"
    # what the engine restarted still answers to the user
    assert docker.out("exec", "dies-always", "echo", "ok") == "ok"
    docker("stop", "-t", "0", "always")
    assert _state(docker, "always")["Status"] == "exited"


@pytest.mark.full
def test_policies_at_engine_start_without_live_restore(restartable, tmp_path):
    _, docker = restartable("--live-restore=false")
    tar = tmp_path / "bb.tar"
    tar.write_bytes(busybox_rootfs_tar())
    docker("import", str(tar), "rp:1")
    for name, policy in (("always", "always"), ("unless", "unless-stopped"), ("failing", "on-failure"),
                         ("none", "no")):
        docker("run", "-d", "--name", name, "--restart", policy, "--stop-signal", "KILL", "rp:1", "sleep", "300")
    restartable.engines[-1].kill(signal.SIGTERM)  # type: ignore[attr-defined]  # stops them: not the user's stop
    _, docker = restartable("--live-restore=false")
    for name in ("always", "unless", "failing"):
        assert _until(docker, name, lambda s: s["Status"] == "running")["RestartCount"] == 0
    assert _state(docker, "none")["Status"] == "exited"
    assert Path(tmp_path / "data").is_dir()
