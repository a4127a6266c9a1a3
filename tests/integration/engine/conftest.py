"""An engine on a private data root and socket per test module, a local registry, and a `kapal` runner."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kapal.engine.client import EngineClient, EngineUnavailable

ROOT = Path(__file__).resolve().parents[3]
KAPAL = ROOT / ".venv" / "bin" / "kapal"

_spec = importlib.util.spec_from_file_location("image_helpers", ROOT / "tests/integration/image/image_helpers.py")
image_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["image_helpers"] = image_helpers
_spec.loader.exec_module(image_helpers)  # type: ignore[union-attr]
LocalRegistry = image_helpers.LocalRegistry
busybox_rootfs_tar = image_helpers.busybox_rootfs_tar
cleanup_tree = image_helpers.cleanup_tree
leftover_mounts = image_helpers.leftover_mounts


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
        if self.proc is not None:
            self.log.close()

    def run(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "KAPAL_HOST": self.host}
        return subprocess.run([str(KAPAL), *args], input=input, capture_output=True, env=env, timeout=timeout)

    def ok(self, *args: str, input: bytes | None = None, timeout: float = 120) -> str:
        r = self.run(*args, input=input, timeout=timeout)
        assert r.returncode == 0, f"kapal {' '.join(args)} -> {r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
        return r.stdout.decode()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine")
    yield path
    cleanup_tree(path)


@pytest.fixture(scope="module")
def registry(workdir):
    reg = LocalRegistry(workdir / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def engine(workdir):
    eng = EngineProcess(workdir / "engine-main")
    eng.workdir.mkdir()
    eng.start()
    yield eng
    eng.kill()
    assert leftover_mounts(eng.data_root) == [], "the engine left mounts behind"


@pytest.fixture(scope="module")
def rootfs_tar(workdir) -> Path:
    path = workdir / "busybox-rootfs.tar"
    path.write_bytes(busybox_rootfs_tar({"etc/motd": "original\n"}))
    return path
