"""podman 4.3 drives kapal-runtime: run, run -it (console socket), exec, exec -it, stop, kill, pause, rm -f.

podman runs with a private --root/--runroot/--tmpdir in a temp dir, the cgroupfs manager, and the ulimits
these machines need (no CAP_SYS_RESOURCE, nofile hard limit 20000).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from runtime_helpers import RUNTIME, read_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


class Podman:
    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base = base
        self.rootfs = rootfs
        self.globals = [
            "podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"), "--tmpdir",
            str(base / "tmp"), "--cgroup-manager", "cgroupfs", "--runtime", str(RUNTIME),
        ]

    def cmd(self, *args: str) -> list[str]:
        return [*self.globals, *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def run_detached(self, *argv: str) -> str:
        return self("run", "-d", *ULIMITS, "--rootfs", str(self.rootfs), *argv).stdout.strip()

    def status(self, cid: str) -> str:
        return json.loads(self("inspect", cid).stdout)[0]["State"]["Status"]


@pytest.fixture(scope="module")
def podman(tmp_path_factory, rootfs):
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman/conmon not installed (make deps installs them)")
    base = tmp_path_factory.mktemp("podman")
    default_root = Path("/run/kapal-runtime")  # podman passes no --root: its containers live in the default
    had_default_root = default_root.exists()
    conmon_cgroups = [h / "libpod_parent" for h in Path("/sys/fs/cgroup").iterdir()]
    had_conmon_cgroups = any(p.exists() for p in conmon_cgroups)
    p = Podman(base, rootfs)
    yield p
    p("rm", "-af", "-t", "0", check=False)
    # Not `system reset`: it would also drop networks, which are global. --rootfs containers use no
    # image layers, so the private directories hold no mounts once the containers are gone.
    shutil.rmtree(base, ignore_errors=True)
    if not had_conmon_cgroups:  # conmon puts itself in /libpod_parent/conmon
        for parent in conmon_cgroups:
            for path in (parent / "conmon", parent):
                try:
                    path.rmdir()
                except OSError:
                    pass
    if not had_default_root:
        shutil.rmtree(default_root / ".seccomp", ignore_errors=True)
        try:
            default_root.rmdir()
        except OSError:
            pass


def with_pty(argv: list[str], script: bytes, needle: bytes) -> tuple[int, bytes]:
    """Run argv on a fresh pty, answer busybox's cursor query, type `script`, wait for `needle` and the exit."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    try:
        out = read_until(master, b"\x1b[6n", 20)  # the shell's prompt asks where the cursor is
        os.write(master, b"\x1b[1;1R")
        os.write(master, script)
        out += read_until(master, needle, 20)
        return proc.wait(30), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_run_rm_with_a_rootfs(podman):
    result = podman("run", "--rm", *ULIMITS, "--rootfs", str(podman.rootfs), "/bin/sh", "-c",
                    "echo $$ $(hostname); exit 7", check=False)
    assert result.returncode == 7
    pid, hostname = result.stdout.split()
    assert pid == "1" and len(hostname) == 12
    assert podman("ps", "-aq").stdout.strip() == ""


def test_run_it_uses_the_console_socket(podman):
    code, out = with_pty(podman.cmd("run", "--rm", "-it", *ULIMITS, "--rootfs", str(podman.rootfs), "/bin/sh"),
                         b"tty; echo in-$((4*10+2)); exit 9\n", b"in-42")
    assert b"/dev/pts/0" in out
    assert code == 9


def test_exec_and_exec_it(podman):
    cid = podman.run_detached("/bin/sleep", "300")
    try:
        result = podman("exec", cid, "/bin/sh", "-c", "echo hi from exec; exit 4", check=False)
        assert (result.returncode, result.stdout) == (4, "hi from exec\n")
        result = podman("exec", "-u", "1000:1000", "-w", "/tmp", "-e", "FOO=bar", cid, "/bin/sh", "-c",
                        "echo $FOO $(pwd) $(id -u):$(id -g)")
        assert result.stdout == "bar /tmp 1000:1000\n"
        assert podman("exec", cid, "/no/such/binary", check=False).returncode == 127
        code, out = with_pty(podman.cmd("exec", "-it", cid, "/bin/sh"), b"tty; exit 8\n", b"/dev/pts/")
        assert code == 8
    finally:
        podman("rm", "-f", "-t", "0", cid)


def test_stop_kill_pause_unpause_rm_f(podman):
    cid = podman.run_detached("/bin/sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done")
    podman("pause", cid)
    assert podman.status(cid) == "paused"
    podman("unpause", cid)
    assert podman.status(cid) == "running"
    podman("stop", "-t", "5", cid)
    info = json.loads(podman("inspect", cid).stdout)[0]["State"]
    assert (info["Status"], info["ExitCode"]) == ("exited", 3)
    podman("rm", cid)

    cid = podman.run_detached("/bin/sleep", "300")
    podman("kill", cid)
    deadline = time.monotonic() + 10
    while podman.status(cid) != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json.loads(podman("inspect", cid).stdout)[0]["State"]["ExitCode"] == 137
    podman("rm", cid)

    cid = podman.run_detached("/bin/sh", "-c", "trap 'exit 10' USR1; while :; do sleep 0.1; done")
    time.sleep(0.3)  # let the shell set its trap
    podman("kill", "-s", "USR1", cid)  # podman passes the number: kapal-runtime kill ID 10
    deadline = time.monotonic() + 10
    while podman.status(cid) != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json.loads(podman("inspect", cid).stdout)[0]["State"]["ExitCode"] == 10
    podman("rm", cid)

    cid = podman.run_detached("/bin/sleep", "300")
    podman("rm", "-f", "-t", "0", cid)
    assert podman("ps", "-aq").stdout.strip() == ""


def test_podman_info_shows_the_runtime_version(podman):
    info = json.loads(podman("info", "--format", "json").stdout)
    assert "kapal-runtime version" in info["host"]["ociRuntime"]["version"]
