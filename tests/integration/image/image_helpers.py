"""Shared by the image and engine integration tests: a local registry and a busybox rootfs tar."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from kapal.engine.client import EngineClient, EngineUnavailable

BUSYBOX = "/bin/busybox"
KAPAL = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "kapal"
# Flags every test engine gets (the engine tests' session sets a private bridge and lxcfs here); without
# them an engine leaves the host's kapal0 and lxcfs alone.
ENGINE_ARGS: list[str] = ["--no-lxcfs", "--network-pool", "0", "--bridge", "ktnone0", "--bip", "10.196.255.1/24"]


def free_port(bind: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


class LocalRegistry:
    """Debian's docker-registry on a free loopback port with a temp storage dir; stopped by PID."""

    def __init__(
        self, workdir: Path, htpasswd: Path | None = None, bind: str = "127.0.0.1", tls: tuple[Path, Path] | None = None
    ) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.skip("docker-registry is not installed (make deps installs it)")
        self.port = free_port(bind)
        self.host = f"{bind}:{self.port}"
        self.storage = workdir / "registry-storage"
        self.storage.mkdir(parents=True)
        config = workdir / "registry.yml"
        auth = f"auth:\n  htpasswd:\n    realm: kapal-test\n    path: {htpasswd}\n" if htpasswd else ""
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {bind}:{self.port}\n"
            + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
            + f"{auth}"
        )
        self.log = open(workdir / "registry.log", "wb")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection((bind, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start on {self.host}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def busybox_rootfs_tar(extra: dict[str, str] | None = None) -> bytes:
    """A rootfs tar: /bin/busybox (static) with relative applet links, /etc files, /tmp."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (make deps installs it)")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 1_700_000_000
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "var"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "busybox", 1_700_000_000
            tar.addfile(info)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\n")
        for name, content in (extra or {}).items():
            add_file(name, content.encode())
    return buf.getvalue()


def leftover_mounts(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def cleanup_tree(path: Path) -> None:
    """Unmount whatever is left below path (deepest first), then remove it."""
    for m in sorted(leftover_mounts(path), reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(path, ignore_errors=True)


class EngineProcess:
    """`kapal engine` in the foreground on a private socket; stopped by PID; mounts checked after."""

    def __init__(self, workdir: Path, data_root: Path | None = None, extra: list[str] | None = None) -> None:
        self.workdir = workdir
        self.data_root = data_root or workdir / "data"
        self.socket = workdir / "engine.sock"
        self.host = f"unix://{self.socket}"
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "engine.log"

    def start(self) -> EngineProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(KAPAL),
                "engine",
                "--data-root",
                str(self.data_root),
                "-H",
                self.host,
                "--log-level",
                "debug",
                *ENGINE_ARGS,
                *self.extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited: {self.log_path.read_text()[-2000:]}")
            if self.socket.exists():
                try:
                    EngineClient(self.host).json("GET", "/version")
                    return self
                except (EngineUnavailable, OSError):
                    pass
            time.sleep(0.05)
        raise RuntimeError("engine did not answer within 20 s")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None and not self.log.closed:
            self.log.close()

    def leftover_containers(self) -> list[str]:
        """Containers still recorded under the data root (a test that forgot to remove one)."""
        root = self.data_root / "containers"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def sweep(self) -> list[str]:
        """Kill, by PID, the shims and container inits an engine left behind; returns what it found.
        A PID counts only while it is still that process (the shim works in the container's directory,
        the init is in the container's cgroup)."""
        found = []
        for cdir in (self.data_root / "containers").glob("*"):
            try:
                init = int((cdir / "init.pid").read_text().strip())
                if cdir.name in Path(f"/proc/{init}/cgroup").read_text():
                    os.kill(init, signal.SIGKILL)
                    found.append(f"{cdir.name[:12]} init {init}")
            except (OSError, ValueError):
                pass
            try:
                shim = int((cdir / "shim.pid").read_text().strip())
                if os.readlink(f"/proc/{shim}/cwd") == str(cdir.resolve()):
                    os.kill(shim, signal.SIGKILL)
                    found.append(f"{cdir.name[:12]} shim {shim}")
            except (OSError, ValueError):
                pass
        return found

    def run(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "KAPAL_HOST": self.host}
        return subprocess.run([str(KAPAL), *args], input=input, capture_output=True, env=env, timeout=timeout)

    def ok(self, *args: str, input: bytes | None = None, timeout: float = 120) -> str:
        r = self.run(*args, input=input, timeout=timeout)
        assert r.returncode == 0, f"kapal {' '.join(args)} -> {r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
        return r.stdout.decode()
