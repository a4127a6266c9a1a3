"""Shared by bench/scheduler and bench/controllers: a real API server, hollow nodes and components as
processes (stopped by PID), pods created concurrently, and a watch that timestamps when pods get bound/run."""

from __future__ import annotations

import asyncio
import os
import pstats
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "apiserver"))
sys.path.insert(0, str(ROOT / "src"))

from apiserver_harness import start_apiserver  # noqa: E402

from kapal.kube.client.client import ApiClient  # noqa: E402
from kapal.kube.client.config import ClientConfig  # noqa: E402
from kapal.kube.client.kinds import NODES, PODS  # noqa: E402
from kapal.kube.pki import load_kubeconfig  # noqa: E402


@dataclass
class Cluster:
    tmp: Path
    api: object
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig  # type: ignore[attr-defined]

    def start(self, name: str, *args: str, profile: Path | None = None) -> subprocess.Popen:
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += ["-m", "kapal.cli.main", *args] if profile is None else [
            str(ROOT / "src" / "kapal" / "cli" / "main.py"), *args]
        log = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 30) -> None:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self.api.stop()  # type: ignore[attr-defined]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_cluster(tmp: Path) -> Cluster:
    return Cluster(tmp, start_apiserver(tmp / "data", "--watch-cache-size", "100000"))


def client(kubeconfig: Path) -> ApiClient:
    return ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig), user_agent="kapal-bench"))


async def wait_nodes(c: ApiClient, n: int, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        items, _ = await c.list_all(NODES)
        if len(items) >= n:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"only {len(items)} of {n} nodes registered in {timeout}s")


async def create_pods(c: ApiClient, namespace: str, pods: list[dict], concurrency: int = 32) -> float:
    started = time.monotonic()
    queue = list(reversed(pods))

    async def worker() -> None:
        while queue:
            pod = queue.pop()
            await c.create(PODS, pod, namespace)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


class PodClock:
    """Watches a namespace and records when each pod was first seen bound and first seen Running."""

    def __init__(self, c: ApiClient, namespace: str) -> None:
        self.c, self.namespace = c, namespace
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.task: asyncio.Task | None = None

    async def _run(self, rv: str) -> None:
        while True:
            async for ev in self.c.watch(PODS, self.namespace, resource_version=rv, timeout_seconds=600):
                obj = ev.object
                rv = obj["metadata"].get("resourceVersion", rv)
                if ev.type == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                now = time.monotonic()
                if (obj.get("spec") or {}).get("nodeName") and name not in self.bound:
                    self.bound[name] = now
                if (obj.get("status") or {}).get("phase") == "Running" and name not in self.running:
                    self.running[name] = now

    async def start(self) -> None:
        page = await self.c.list(PODS, self.namespace, limit=1)
        self.task = asyncio.create_task(self._run(page["metadata"]["resourceVersion"]))

    async def wait(self, what: str, n: int, timeout: float) -> None:
        started = time.monotonic()
        target = self.bound if what == "bound" else self.running
        while len(target) < n:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"only {len(target)}/{n} pods {what} after {timeout}s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def plain_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "plain"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "automountServiceAccountToken": False}}


def anti_affinity_pod(name: str, group: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"group": group}},
            "spec": {"automountServiceAccountToken": False,
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": {"group": group}},
                          "topologyKey": "kubernetes.io/hostname"}]}},
                     "containers": [{"name": "c", "image": "busybox"}]}}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def profile_summary(path: Path, top: int = 14) -> str:
    if not path.exists():
        return "  (no profile written)"
    import io

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join("  " + ln for ln in lines[start:start + top + 1])
