"""`exec`: a new process joins a running container's namespaces and cgroups."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from runtime_helpers import cgroups_of

pytestmark = pytest.mark.root


@pytest.fixture
def running(runtime, make_bundle, tmp_path):
    bundle = make_bundle(["/bin/sh", "-c", "mkdir -p /tmp/only-here; sleep 60"], hostname="inside")
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})
    bundle.write()
    with open(tmp_path / "init.out", "w") as out:
        runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=out, stderr=out, capture_output=False)
    deadline = time.monotonic() + 5
    while runtime("exec", bundle.id, "test", "-d", "/tmp/only-here", check=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return bundle


def test_exec_sees_the_same_hostname_pid_1_and_mounts(runtime, running):
    out = runtime("exec", running.id, "/bin/sh", "-c", "hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                                                        "ls /tmp; grep ' /tmp ' /proc/mounts").stdout
    lines = out.splitlines()
    assert lines[0] == "inside"
    assert lines[1].strip() == "sleep 60"  # sh exec'd its last command as PID 1
    assert lines[2] == "only-here"
    assert lines[3].startswith("tmpfs /tmp tmpfs")


def test_exec_exit_code_env_cwd_and_user(runtime, running):
    assert runtime("exec", running.id, "/bin/sh", "-c", "exit 4", check=False).returncode == 4
    out = runtime("exec", "-e", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000", running.id,
                  "/bin/sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g)").stdout
    assert out == "bar /tmp 1000:1000\n"


def test_exec_with_a_process_file_like_conmon(runtime, running, tmp_path):
    process = {
        "args": ["/bin/sh", "-c", "echo hi from exec; exit 4"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "HOME="],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "capabilities": {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    }
    spec = tmp_path / "exec-process.json"
    spec.write_text(json.dumps(process))
    result = runtime("exec", "--process", str(spec), running.id, check=False)
    assert result.returncode == 4
    assert result.stdout == "hi from exec\n"


def test_detached_exec_writes_the_pid_file_and_joins_the_cgroup(runtime, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    with open(tmp_path / "exec.out", "w") as out:
        runtime("exec", "--detach", "--pid-file", str(pid_file), running.id, "/bin/sleep", "30",
                stdout=out, stderr=out, capture_output=False)
    pid = int(pid_file.read_text())
    assert pid in json.loads(runtime("ps", "--format", "json", running.id).stdout)
    assert cgroups_of(pid) == cgroups_of(int(runtime.state(running.id)["pid"]))
    assert all(path == running.cgroup_path for path in cgroups_of(pid).values()), cgroups_of(pid)


def test_exec_of_a_missing_program_says_not_found(runtime, running):
    result = runtime("exec", running.id, "/no/such/program", check=False)
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr
    result = runtime("exec", running.id, "nosuchprogram", check=False)
    assert "executable file not found in $PATH" in result.stderr


def test_exec_into_a_stopped_or_unknown_container_fails(runtime, make_bundle, tmp_path):
    result = runtime("exec", "no-such-container", "true", check=False)
    assert result.returncode == 1 and "does not exist" in result.stderr
    bundle = make_bundle(["/bin/true"])
    runtime("create", "--bundle", str(bundle.path), bundle.id, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            capture_output=False)
    runtime("start", bundle.id)
    deadline = time.monotonic() + 5
    while runtime.state(bundle.id)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    result = runtime("exec", bundle.id, "true", check=False)
    assert result.returncode == 1 and "stopped" in result.stderr
