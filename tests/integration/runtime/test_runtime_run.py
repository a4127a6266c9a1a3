"""`kapal-runtime run`: an isolated process tree, hostname and mount table; foreground and detached."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.root


def test_run_prints_pid_1_and_the_configs_hostname(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "echo $$ $(hostname)"], hostname="seedbox")
    result = runtime("run", "--bundle", str(bundle.path), bundle.id)
    assert result.stdout == "1 seedbox\n"
    assert result.stderr == ""
    assert runtime.ids() == []  # foreground run removes its state


def test_host_processes_and_mounts_are_invisible(runtime, make_bundle, tmp_path):
    marker = tmp_path / "host-only-mount"
    marker.mkdir()
    bundle = make_bundle(["/bin/sh", "-c", "ps -o pid,comm; echo ---; cat /proc/mounts"])
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    processes, mounts = out.split("---\n")
    pids = [line.split()[0] for line in processes.splitlines()[1:]]
    assert pids == ["1", "2"] or pids == ["1"], processes  # sh, and ps forked from it
    assert str(os.getpid()) not in pids
    assert str(tmp_path) not in mounts
    assert "/work" not in mounts
    assert mounts.splitlines()[0].split()[1] == "/"


def test_exit_code_of_the_container_is_the_exit_code_of_run(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "exit 42"])
    assert runtime("run", "--bundle", str(bundle.path), bundle.id, check=False).returncode == 42


def test_killed_by_a_signal_exits_128_plus_the_signal(runtime, make_bundle):
    bundle = make_bundle(["/bin/sleep", "60"])
    run = subprocess.Popen(runtime.cmd("run", "--bundle", str(bundle.path), bundle.id))
    try:
        deadline = time.monotonic() + 10
        while bundle.id not in runtime.ids() and time.monotonic() < deadline:
            time.sleep(0.01)
        runtime("kill", bundle.id, "KILL")
        assert run.wait(10) == 137
    finally:
        run.kill()
        run.wait()


def test_stdin_is_passed_through(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "read line; echo got:$line"])
    out = runtime("run", "--bundle", str(bundle.path), bundle.id, input="hello\n").stdout
    assert out == "got:hello\n"


def test_detached_run_keeps_running_until_deleted(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sleep", "60"])
    pid_file = tmp_path / "pid"
    output = tmp_path / "output"
    with open(output, "w") as out:  # the container keeps its stdio: no pipe a test would wait on
        runtime("run", "-d", "--pid-file", str(pid_file), "--bundle", str(bundle.path), bundle.id,
                stdout=out, stderr=out, capture_output=False)
    assert output.read_text() == ""
    pid = int(pid_file.read_text())
    assert pid_file.read_text() == str(pid)  # no newline, as runc writes it
    state = runtime.state(bundle.id)
    assert state["status"] == "running" and state["pid"] == pid
    assert os.readlink(f"/proc/{pid}/exe").endswith("busybox")
    runtime("delete", "--force", bundle.id)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reparented to us if we are a subreaper; harmless otherwise
        except ChildProcessError:
            pass
        time.sleep(0.01)
    with open(f"/proc/{pid}/stat") if os.path.exists(f"/proc/{pid}") else open(os.devnull) as f:
        stat = f.read()
    assert stat == "" or stat.split(") ")[1][0] in "ZX"
    assert runtime.ids() == []


def test_the_container_sees_its_own_cgroups_read_only(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/cgroup.procs; "
                                           "echo 5 > /sys/fs/cgroup/pids/pids.max && echo WROTE"])
    result = runtime("run", "--bundle", str(bundle.path), bundle.id, check=False)
    listing = result.stdout.split()
    for controller in ("cpu", "cpuacct", "memory", "pids", "freezer", "devices", "cpuset", "blkio"):
        assert controller in listing
    assert "1" in listing  # PID 1 is in the container's own pids cgroup
    assert "WROTE" not in result.stdout
    assert "Read-only file system" in result.stderr


def test_rootfs_and_proc_sys_and_sys_are_read_only(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "touch /x 2>&1; (echo 1 > /proc/sys/kernel/domainname) 2>&1; "
                                           "touch /sys/kernel/x 2>&1; touch /tmp/y 2>&1; true"])
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    assert out.count("Read-only file system") == 4, out


def test_default_dev_nodes_exist(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "ls -l /dev; echo x > /dev/null && head -c 4 /dev/zero | wc -c"])
    out = runtime("run", "--bundle", str(bundle.path), bundle.id).stdout
    for node in ("null", "zero", "full", "random", "urandom", "tty", "ptmx -> pts/ptmx", "fd -> /proc/self/fd"):
        assert node in out
    assert out.strip().endswith("4")
