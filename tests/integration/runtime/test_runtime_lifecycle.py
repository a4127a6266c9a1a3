"""create / start / state / kill / pause / resume / ps / list / update / delete, as podman and conmon call them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def create(runtime, bundle, tmp_path: Path, *extra: str) -> int:
    pid_file = tmp_path / f"{bundle.id}.pid"
    with open(tmp_path / f"{bundle.id}.out", "w") as out:
        runtime("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), *extra, bundle.id,
                stdout=out, stderr=out, capture_output=False)
    return int(pid_file.read_text())


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_create_waits_for_start_then_runs(runtime, make_bundle, tmp_path):
    marker = tmp_path / "marker"
    bundle = make_bundle(["/bin/sh", "-c", "echo started > /out/marker; sleep 60"])
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                                    "options": ["rbind", "rw"]})
    bundle.write()
    pid = create(runtime, bundle, tmp_path)
    state = runtime.state(bundle.id)
    assert state["status"] == "created" and state["pid"] == pid
    assert state["bundle"] == str(bundle.path)
    time.sleep(0.2)
    assert not marker.exists(), "the process ran before start"
    assert runtime("start", bundle.id).stdout == ""
    wait_for(lambda: marker.exists() and marker.read_text() == "started\n")
    assert runtime.state(bundle.id)["status"] == "running"
    runtime("kill", bundle.id, "9")
    wait_for(lambda: runtime.state(bundle.id)["status"] == "stopped")
    assert runtime.state(bundle.id)["pid"] == 0
    runtime("delete", bundle.id)
    assert runtime("state", bundle.id, check=False).returncode == 1


def test_init_stays_a_descendant_of_a_subreaper_caller(runtime, make_bundle, tmp_path):
    """conmon is a child subreaper and reaps the init for its exit code: the init must end up its child."""
    bundle = make_bundle(["/bin/sh", "-c", "exit 7"])
    script = (
        "import ctypes, os, subprocess, sys\n"
        "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"  # PR_SET_CHILD_SUBREAPER
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "pid = int(open(sys.argv[sys.argv.index('--pid-file') + 1]).read())\n"
        "stat = open(f'/proc/{pid}/stat').read().rsplit(') ', 1)[1].split()\n"
        "assert int(stat[1]) == os.getpid(), stat\n"
        "assert int(stat[3]) == pid, 'init leads its own session'\n"
        "subprocess.run([sys.argv[1], '--root', sys.argv[3], 'start', sys.argv[-1]], check=True)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    pid_file = tmp_path / "pid"
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", script, *runtime.cmd("create", "--bundle", str(bundle.path), "--pid-file",
                                                     str(pid_file), bundle.id)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7"


def test_kill_accepts_numbers_and_names(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "trap 'echo usr1 >> /out/log' USR1; trap 'exit 3' TERM; "
                                           "while true; do sleep 0.05; done"])
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                                    "options": ["bind"]})
    bundle.write()
    create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    log = tmp_path / "log"
    runtime("kill", bundle.id, "10")
    wait_for(lambda: log.exists() and log.read_text().count("usr1") == 1)
    runtime("kill", bundle.id, "SIGUSR1")
    wait_for(lambda: log.read_text().count("usr1") == 2)
    runtime("kill", bundle.id, "USR1")
    wait_for(lambda: log.read_text().count("usr1") == 3)
    runtime("kill", bundle.id)  # default SIGTERM
    wait_for(lambda: runtime.state(bundle.id)["status"] == "stopped")
    assert runtime("kill", bundle.id, "9", check=False).returncode == 1
    result = runtime("kill", bundle.id, "NOSUCH", check=False)
    assert result.returncode == 1 and "unknown signal" in result.stderr


def test_kill_all_signals_every_process(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])
    create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    wait_for(lambda: len(json.loads(runtime("ps", "--format", "json", bundle.id).stdout)) == 3)
    pids = json.loads(runtime("ps", "--format", "json", bundle.id).stdout)
    runtime("kill", "--all", bundle.id, "KILL")
    wait_for(lambda: all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in pids))


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


def test_pause_and_resume_freeze_the_container(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "while true; do echo tick >> /out/ticks; sleep 0.02; done"])
    bundle.config["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path),
                                    "options": ["bind"]})
    bundle.write()
    create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    ticks = tmp_path / "ticks"
    wait_for(lambda: ticks.exists() and ticks.stat().st_size > 0)
    runtime("pause", bundle.id)
    assert runtime.state(bundle.id)["status"] == "paused"
    size = ticks.stat().st_size
    time.sleep(0.3)
    assert ticks.stat().st_size == size
    assert runtime("pause", bundle.id, check=False).returncode == 1
    runtime("resume", bundle.id)
    assert runtime.state(bundle.id)["status"] == "running"
    wait_for(lambda: ticks.stat().st_size > size)
    assert runtime("resume", bundle.id, check=False).returncode == 1
    runtime("delete", "--force", bundle.id)


def test_delete_refuses_a_running_container_without_force(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    result = runtime("delete", bundle.id, check=False)
    assert result.returncode == 1 and "not stopped" in result.stderr
    runtime("delete", "--force", bundle.id)
    assert runtime.ids() == []


def test_delete_of_a_created_container_kills_its_init(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    pid = create(runtime, bundle, tmp_path)
    runtime("delete", bundle.id)
    wait_for(lambda: _zombie(pid))


def test_delete_force_of_an_unknown_container_succeeds(runtime):
    assert runtime("delete", "--force", "no-such-container").returncode == 0
    result = runtime("delete", "no-such-container", check=False)
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_list_and_ps(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "sleep 60 & wait"])
    pid = create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    listing = json.loads(runtime("list", "--format", "json").stdout)
    assert [(c["id"], c["pid"], c["status"]) for c in listing] == [(bundle.id, pid, "running")]
    table = runtime("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[:3] == [bundle.id, str(pid), "running"]
    assert runtime("list", "-q").stdout.split() == [bundle.id]
    wait_for(lambda: len(json.loads(runtime("ps", "--format", "json", bundle.id).stdout)) == 2)
    assert pid in json.loads(runtime("ps", "--format", "json", bundle.id).stdout)
    ps_table = runtime("ps", bundle.id).stdout.splitlines()
    assert "PID" in ps_table[0] and len(ps_table) == 3


def test_update_changes_limits(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    create(runtime, bundle, tmp_path)
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"memory": {"limit": 64 << 20}, "pids": {"limit": 77},
                                     "cpu": {"quota": 30000, "period": 100000}}))
    runtime("update", "--resources", str(resources), bundle.id)
    base = bundle.cgroup_path
    assert Path(f"/sys/fs/cgroup/memory{base}/memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert Path(f"/sys/fs/cgroup/pids{base}/pids.max").read_text().strip() == "77"
    assert Path(f"/sys/fs/cgroup/cpu{base}/cpu.cfs_quota_us").read_text().strip() == "30000"
    runtime("update", "--pids-limit", "88", bundle.id)
    assert Path(f"/sys/fs/cgroup/pids{base}/pids.max").read_text().strip() == "88"


def test_state_of_a_container_whose_init_died_is_stopped(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/true"])
    create(runtime, bundle, tmp_path)
    runtime("start", bundle.id)
    wait_for(lambda: runtime.state(bundle.id)["status"] == "stopped")
    assert runtime("start", bundle.id, check=False).returncode == 1
    runtime("delete", bundle.id)


def test_state_is_written_atomically_under_root(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    create(runtime, bundle, tmp_path)
    directory = runtime.root / bundle.id
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "exec.fifo", "state.json"]
    assert json.loads((directory / "state.json").read_text())["id"] == bundle.id
    runtime("start", bundle.id)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "state.json"]
