"""Helpers for the engine's integration tests: a rootfs of host programs (the seed's `ldd` recipe),
the docker CLI against an engine, a pty driver for `-it` sessions, and host-side checks."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tarfile
import termios
import time
from pathlib import Path

import pytest


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"(/[^\s]+)\s+\(0x", out)))


def host_programs_tar(programs: list[str]) -> bytes:
    """A rootfs tar with host programs and every library `ldd` names (chapter 2's chroot recipe), plus
    the directories and /etc files a container expects."""
    paths: dict[str, str] = {}
    for program in programs:
        found = shutil.which(program)
        if found is None:
            pytest.skip(f"{program} is not installed on the host")
        real = os.path.realpath(found)
        paths[f"bin/{program}"] = real
        for lib in _libraries(real):
            paths[lib.lstrip("/")] = os.path.realpath(lib)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"bin", "etc", "tmp", "root", "proc", "sys", "dev", "home", "lib", "lib64", "usr", "var"}
        for name in paths:
            parent = os.path.dirname(name)
            while parent:
                dirs.add(parent)
                parent = os.path.dirname(parent)
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, 1_700_000_000
            tar.addfile(info)
        for name, source in sorted(paths.items()):
            with open(source, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"), ("etc/group", "root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(text), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


class DockerCLI:
    """The real docker CLI against one engine (its own DOCKER_CONFIG)."""

    def __init__(self, host: str, config_dir: Path) -> None:
        binary = shutil.which("docker")
        if binary is None:
            pytest.skip("the docker CLI is not installed")
        self.binary = binary
        self.env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config_dir)}

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, input=input,
                           timeout=timeout)
        assert not check or r.returncode == 0, f"docker {' '.join(args)} -> {r.returncode}: {r.stderr}"
        return r

    def out(self, *args: str, **kw) -> str:
        return self(*args, **kw).stdout.strip()


class PtySession:
    """A command on a pseudo-terminal (as a user types at a shell): send lines, read the screen."""

    def __init__(self, argv: list[str], env: dict, rows: int = 40, cols: int = 120) -> None:
        pid, fd = pty.fork()
        if pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvpe(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None

    def read_until(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output.decode(errors="replace")
            if re.search(pattern, text):
                return text
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                self.output += data
        text = self.output.decode(errors="replace")
        if re.search(pattern, text):
            return text
        raise AssertionError(f"{pattern!r} did not appear within {timeout} s; screen:\n{text[-3000:]}")

    def ask_until(self, line: str, pattern: str, timeout: float = 20) -> str:
        """Type `line` again each second until `pattern` shows (for state that changes asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            self.send(line)
            try:
                return self.read_until(pattern, timeout=1)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = os.read(self.fd, 65536)
                if data:
                    self.output += data
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                os.close(self.fd)
                return self.status
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"the session did not end; screen:\n{self.output.decode(errors='replace')[-2000:]}")


def pid_alive(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead (its state letter in /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


def cgroup_dir(controller: str, container_id: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / "kapal" / container_id


def host_veths(bridge: str) -> set[str]:
    base = Path("/sys/class/net")
    return {p.name for p in base.iterdir() if (p / "master").exists() and os.readlink(p / "master").endswith(
        "/" + bridge)}


def iptables_rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def kapal_cgroups() -> set[str]:
    """Every container cgroup under kapal/ in any controller."""
    out = set()
    for parent in Path("/sys/fs/cgroup").glob("*/kapal"):
        out |= {p.name for p in parent.iterdir() if p.is_dir()}
    return out
