"""Terminals: the pty master sent over --console-socket (as conmon receives it), and foreground relay."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from runtime_helpers import read_until

pytestmark = pytest.mark.root


@pytest.fixture
def console_socket(tmp_path):
    path = tmp_path / "console.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)

    def receive() -> tuple[int, bytes]:
        conn, _ = listener.accept()
        with conn:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1
        return fds[0], msg

    yield str(path), receive
    listener.close()


def test_create_sends_the_pty_master_over_the_console_socket(runtime, make_bundle, console_socket, tmp_path):
    path, receive = console_socket
    bundle = make_bundle(["/bin/sh", "-c", "tty; ls -l /dev/console | cut -c1; read line; echo got:$line; exit 5"])
    bundle.config["process"]["terminal"] = True
    bundle.write()
    pid_file = tmp_path / "pid"
    result = runtime("create", "--console-socket", path, "--pid-file", str(pid_file), "--bundle",
                     str(bundle.path), bundle.id, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                     capture_output=False)
    assert result.returncode == 0
    master, payload = receive()
    assert payload  # runc sends the name of the pty; conmon needs a non-empty message
    try:
        assert runtime.state(bundle.id)["pid"] == int(pid_file.read_text())
        runtime("start", bundle.id)
        out = read_until(master, b"c")
        assert b"/dev/pts/0" in out  # the pty comes from the container's own devpts
        os.write(master, b"hello\n")
        read_until(master, b"got:hello")
        deadline = time.monotonic() + 10
        while runtime.state(bundle.id)["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.close(master)


def test_exec_tty_with_a_console_socket(runtime, make_bundle, console_socket, tmp_path):
    path, receive = console_socket
    bundle = make_bundle(["/bin/sleep", "60"])
    with open(tmp_path / "o", "w") as o:
        runtime("run", "-d", "--bundle", str(bundle.path), bundle.id, stdout=o, stderr=o, capture_output=False)
    pid_file = tmp_path / "exec.pid"
    with open(tmp_path / "e", "w") as e:
        runtime("exec", "--tty", "--detach", "--console-socket", path, "--pid-file", str(pid_file), bundle.id,
                "/bin/sh", "-c", "tty; exit 8", stdout=e, stderr=e, capture_output=False)
    master, _ = receive()
    try:
        out = read_until(master, b"/dev/pts/")
        assert b"/dev/pts/" in out
    finally:
        os.close(master)


def test_foreground_run_relays_the_terminal(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh"])
    bundle.config["process"]["terminal"] = True
    bundle.write()
    master, slave = os.openpty()
    proc = subprocess.Popen(runtime.cmd("run", "--bundle", str(bundle.path), bundle.id), stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    try:
        read_until(master, b"\x1b[6n")  # busybox's shell asks the terminal where the cursor is
        os.write(master, b"\x1b[1;1R")
        os.write(master, b"echo in-$((40+2)); tty; exit 3\n")
        out = read_until(master, b"in-42")
        out += read_until(master, b"/dev/pts/")
        assert proc.wait(10) == 3
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_input_typed_before_the_shell_starts_is_kept(runtime, make_bundle):
    """As runc: the terminal goes raw without flushing, so a line typed ahead reaches the container's shell."""
    bundle = make_bundle(["/bin/sh"])
    bundle.config["process"]["terminal"] = True
    bundle.write()
    master, slave = os.openpty()
    os.write(master, b"echo ahead-$((40+2)); exit 3\n")
    proc = subprocess.Popen(runtime.cmd("run", "--bundle", str(bundle.path), bundle.id), stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    try:
        read_until(master, b"ahead-42")
        assert proc.wait(10) == 3
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_terminal_without_console_socket_in_detached_mode_fails_clearly(runtime, make_bundle):
    bundle = make_bundle(["/bin/sh"])
    bundle.config["process"]["terminal"] = True
    bundle.write()
    result = runtime("create", "--bundle", str(bundle.path), bundle.id, check=False)
    assert result.returncode == 1 and "--console-socket" in result.stderr
    assert runtime.ids() == []
