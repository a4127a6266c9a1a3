"""A throwaway `kapal up` cluster for benchmarks: private directory, bridges, pod range and cgroup root;
`down()` runs `kapal down --purge`. Shared by bench/pod_startup and bench/cluster_up."""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAPAL = [sys.executable, "-m", "kapal.cli.main"]
IMAGE = "bar/busybox:1"


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(") ", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def busybox_tar(path: Path) -> Path:
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


class BenchCluster:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="kapal-bench-up-"))
        tag = uuid.uuid4().hex[:6]
        self.dir = self.work / "cluster"
        self.home = self.work / "home"
        self.home.mkdir()
        b = random.randint(200, 249)
        self.args = [*KAPAL, "up", "--data-dir", str(self.dir), "--secure-port", "0", "--kubelet-port", "0",
                     "--pod-bridge-name", f"bp{tag}", "--pod-network-cidr", f"10.{b}.0.0/16", "--cgroup-root",
                     f"/kapal-bench-{tag}", f"--engine-arg=--bridge=be{tag}", f"--engine-arg=--bip=10.{b}.250.1/24",
                     "--engine-arg=--no-lxcfs", "--dns-port", "0", "--proxy-chain-prefix", f"KB{tag[:4].upper()}-"]
        self.cgroup_root = f"/kapal-bench-{tag}"
        self.proc: subprocess.Popen | None = None
        self.docker_host = f"unix://{self.dir / 'docker.sock'}"
        self.admin = self.dir / "admin.kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.admin)}

    def up(self) -> float:
        """Seconds from starting `kapal up` until it reports the node Ready."""
        started = time.monotonic()
        log = open(self.work / "up.log", "ab")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, env=self.env, cwd=ROOT, text=True)
        log.close()
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("export DOCKER_HOST="):
                return time.monotonic() - started
        raise RuntimeError(f"kapal up failed: {(self.work / 'up.log').read_text()[-2000:]}")

    def stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def engine_pid(self) -> int:
        return int((self.dir / "engine.pid").read_text())

    def import_busybox(self) -> None:
        tar = busybox_tar(self.work / "busybox.tar")
        subprocess.run([*KAPAL, "-H", self.docker_host, "import", str(tar), IMAGE], check=True, capture_output=True,
                       env=self.env, cwd=ROOT)

    def core(self):  # type: ignore[no-untyped-def]
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(str(self.admin)))

    def rss(self) -> dict[str, int]:
        """kB: the kapal up process (API server, controllers, scheduler, kubelet), the engine, its shims."""
        assert self.proc is not None
        engine = self.engine_pid()
        shims = [p for p in children(engine)]
        return {"kapal_up": rss_kb(self.proc.pid), "engine": rss_kb(engine),
                "shims": sum(rss_kb(p) for p in shims), "shim_count": len(shims)}

    def down(self) -> None:
        self.stop_process()
        subprocess.run([*KAPAL, "down", "--data-dir", str(self.dir), "--purge"], env=self.env, cwd=ROOT,
                       capture_output=True, timeout=300)
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            path = f"/sys/fs/cgroup/{hierarchy}{self.cgroup_root}"
            for d in sorted((os.path.join(r, n) for r, ds, _ in os.walk(path) for n in ds), key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            try:
                os.rmdir(path)
            except OSError:
                pass
        shutil.rmtree(self.work, ignore_errors=True)
