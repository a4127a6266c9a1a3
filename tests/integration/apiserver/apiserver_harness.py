"""Helpers for the API server tests: start a real `kapal apiserver` process, find kubectl binaries."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


@dataclass
class ApiServerProcess:
    proc: subprocess.Popen
    data_dir: Path
    url: str
    kubeconfig: Path
    args: list[str]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


def start_apiserver(data_dir: Path, *extra: str, port: int = 0, timeout: float = 30.0) -> ApiServerProcess:
    """Start `kapal apiserver --data-dir DIR` and wait until it says where it serves."""
    args = [sys.executable, "-m", "kapal.cli.main", "apiserver", "--data-dir", str(data_dir),
            "--secure-port", str(port), "--bind-address", "127.0.0.1", *extra]
    log = open(data_dir.parent / f"{data_dir.name}.log", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + timeout
    lines = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"kapal apiserver exited {proc.returncode}: {''.join(lines)}")
            continue
        lines.append(line)
        m = re.search(r"serving on (https://[\d.]+:\d+)", line)
        if m:
            # Keep draining stderr so the server never blocks on a full pipe.
            import threading

            def drain() -> None:
                for chunk in iter(lambda: proc.stderr.readline(), b""):  # type: ignore[union-attr]
                    log.write(chunk)
                    log.flush()

            threading.Thread(target=drain, daemon=True).start()
            return ApiServerProcess(proc, data_dir, m.group(1), data_dir / "admin.kubeconfig", args)
    proc.kill()
    raise RuntimeError(f"kapal apiserver did not start in {timeout}s: {''.join(lines)}")




def kubectl_versions() -> list[str]:
    wanted = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()
    return wanted


def kubectl_binary(version: str) -> Path:
    path = KUBECTL_DIR / f"kubectl.{version}"
    if not path.exists():
        pytest.skip(f"kubectl {version} is not installed at {path}")
    return path
