"""The kubelet's resource metrics, read from cgroups: `/stats/summary` and `/metrics/resource`.

Numbers follow cAdvisor's definitions, which `kubectl top` and metrics-server assume:

- cpu `usageCoreNanoSeconds`: the cgroup's cumulative CPU time (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`);
  `usageNanoCores`: its rate between two samples at least `MIN_WINDOW` apart (the sampler keeps a short history
  per cgroup, refreshed every `interval` seconds and whenever someone asks).
- memory `workingSetBytes` = usage - inactive_file (v1 `memory.usage_in_bytes` - `total_inactive_file`; v2
  `memory.current` - `inactive_file`), never below 0; `rssBytes` (v1 total_rss, v2 anon), page faults.
- the node is the root cgroup; its `availableBytes` is MemTotal - working set.

Which cgroups belong to which pod and container is the kubelet's knowledge: it hands a `PodCgroupSource`
(the pods it runs, each with its pod cgroup and its containers' cgroups, absolute paths as given to the
engine). `add_routes(app, stats)` mounts both endpoints on an aiohttp application.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kapal.kube.meta import prometheus

if TYPE_CHECKING:
    from aiohttp import web

MIN_WINDOW = 1.0
HISTORY = 30.0


@dataclass(frozen=True)
class ContainerCgroup:
    name: str
    cgroup: str  # absolute cgroup path, e.g. /kubepods/burstable/pod<uid>/<container id>
    start_time: float = 0.0  # unix seconds


@dataclass(frozen=True)
class PodCgroup:
    namespace: str
    name: str
    uid: str
    cgroup: str  # absolute pod cgroup path, e.g. /kubepods/burstable/pod<uid>
    containers: tuple[ContainerCgroup, ...] = ()
    start_time: float = 0.0


class PodCgroupSource(Protocol):
    """What the kubelet tells the stats provider: the pods it runs now and where their cgroups are."""

    def pod_cgroups(self) -> list[PodCgroup]: ...


@dataclass(frozen=True)
class Sample:
    time: float  # unix seconds
    cpu_ns: int | None
    memory_usage: int | None = None
    working_set: int | None = None
    rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


class CgroupReader:
    """Reads one sample of a cgroup (by absolute path) on this host's hierarchy, v1 or v2."""

    def __init__(self) -> None:
        from kapal.linux.cgroups import is_unified
        from kapal.linux.cgroups.common import v1_hierarchies
        from kapal.linux.mount import mountinfo

        mounts = mountinfo()
        self.unified = is_unified(mounts)
        self._v1 = {} if self.unified else v1_hierarchies(mounts)

    def _dir(self, subsystem: str, cgroup: str) -> str | None:
        rel = "/" + cgroup.strip("/")
        if self.unified:
            return "/sys/fs/cgroup" + (rel if rel != "/" else "")
        where = self._v1.get(subsystem)
        if where is None:
            return None
        return where[0] + (rel if rel != "/" else "")

    def exists(self, cgroup: str) -> bool:
        d = self._dir("memory", cgroup) or self._dir("cpuacct", cgroup)
        return d is not None and os.path.isdir(d)

    def sample(self, cgroup: str) -> Sample | None:
        now = time.time()
        if self.unified:
            d = self._dir("", cgroup)
            if d is None or not os.path.isdir(d):
                return None
            usec = _kv(d + "/cpu.stat").get("usage_usec")
            stat = _kv(d + "/memory.stat")
            usage = _int(d + "/memory.current")
            if usage is None and cgroup.strip("/") == "":
                usage = _host_memory_used()
            inactive = stat.get("inactive_file", 0)
            return Sample(now, usec * 1000 if usec is not None else None, usage,
                          max(0, usage - inactive) if usage is not None else None, stat.get("anon"),
                          stat.get("pgfault"), stat.get("pgmajfault"))
        cpu_dir, mem_dir = self._dir("cpuacct", cgroup), self._dir("memory", cgroup)
        if not ((cpu_dir and os.path.isdir(cpu_dir)) or (mem_dir and os.path.isdir(mem_dir))):
            return None
        cpu = _int(cpu_dir + "/cpuacct.usage") if cpu_dir else None
        usage = _int(mem_dir + "/memory.usage_in_bytes") if mem_dir else None
        stat = _kv(mem_dir + "/memory.stat") if mem_dir else {}
        inactive = stat.get("total_inactive_file", 0)
        return Sample(now, cpu, usage, max(0, usage - inactive) if usage is not None else None,
                      stat.get("total_rss"), stat.get("total_pgfault"), stat.get("total_pgmajfault"))

    def first_pid(self, cgroup: str) -> int | None:
        d = self._dir("" if self.unified else "pids", cgroup) or self._dir("memory", cgroup)
        text = _read((d or "") + "/cgroup.procs") if d else None
        pids = (text or "").split()
        return int(pids[0]) if pids else None


def _host_memory_used() -> int | None:
    info = _meminfo()
    if "MemTotal" not in info or "MemAvailable" not in info:
        return None
    return info["MemTotal"] - info["MemAvailable"]


def _meminfo() -> dict[str, int]:
    out = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words:
            out[key] = int(words[0]) * (1024 if len(words) > 1 and words[1] == "kB" else 1)
    return out


def _net_dev(pid: int) -> dict[str, tuple[int, int, int, int]]:
    """interface -> (rx bytes, rx errors, tx bytes, tx errors) in the network namespace of `pid`."""
    out = {}
    for line in (_read(f"/proc/{pid}/net/dev") or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 11:
            out[name.strip()] = (int(f[0]), int(f[2]), int(f[8]), int(f[10]))
    return out


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _History:
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=64))

    def add(self, s: Sample) -> None:
        self.samples.append(s)
        while len(self.samples) > 2 and s.time - self.samples[0].time > HISTORY:
            self.samples.popleft()

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def nano_cores(self) -> int | None:
        """CPU rate between the latest sample and the newest one at least MIN_WINDOW older."""
        if not self.samples:
            return None
        last = self.samples[-1]
        for s in reversed(self.samples):
            if last.time - s.time >= MIN_WINDOW and s.cpu_ns is not None and last.cpu_ns is not None:
                return max(0, int((last.cpu_ns - s.cpu_ns) / (last.time - s.time)))
        return None


class ResourceStats:
    """Samples the node's and the pods' cgroups and renders the summary and the Prometheus metrics."""

    def __init__(self, node_name: str, pods: PodCgroupSource, *, root_dir: str = "/", interval: float = 10.0,
                 reader: CgroupReader | None = None) -> None:
        self.node_name = node_name
        self.pods = pods
        self.root_dir = root_dir
        self.interval = interval
        self.reader = reader or CgroupReader()
        self.history: dict[str, _History] = {}
        self.boot_time = _boot_time()
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0

    # --- sampling ----------------------------------------------------------------------------------------------

    def _sample_all(self, pods: list[PodCgroup]) -> None:
        paths = {"/"} | {p.cgroup for p in pods} | {c.cgroup for p in pods for c in p.containers}
        for path in paths:
            s = self.reader.sample(path)
            if s is not None:
                self.history.setdefault(path, _History()).add(s)
        for gone in set(self.history) - paths:
            del self.history[gone]

    async def refresh(self, pods: list[PodCgroup] | None = None) -> list[PodCgroup]:
        """Take a sample of every cgroup now; on the first call, a second one MIN_WINDOW later (for rates)."""
        pods = self.pods.pod_cgroups() if pods is None else pods
        async with self._lock:
            first = not self.history
            await asyncio.to_thread(self._sample_all, pods)
            if first:
                await asyncio.sleep(MIN_WINDOW)
                await asyncio.to_thread(self._sample_all, pods)
            self._last_refresh = time.monotonic()
        return pods

    async def run(self, stop: asyncio.Event) -> None:
        """Housekeeping: a sample every `interval` seconds, so rates are ready when asked for."""
        while not stop.is_set():
            if time.monotonic() - self._last_refresh >= self.interval:
                await self.refresh()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    # --- /stats/summary ----------------------------------------------------------------------------------------

    def _cpu(self, path: str) -> dict[str, Any] | None:
        h = self.history.get(path)
        s = h.latest if h else None
        if s is None or s.cpu_ns is None:
            return None
        out: dict[str, Any] = {"time": _rfc3339(s.time), "usageCoreNanoSeconds": s.cpu_ns}
        rate = h.nano_cores() if h else None
        if rate is not None:
            out["usageNanoCores"] = rate
        return out

    def _memory(self, path: str, node: bool = False) -> dict[str, Any] | None:
        h = self.history.get(path)
        s = h.latest if h else None
        if s is None or s.memory_usage is None:
            return None
        out: dict[str, Any] = {"time": _rfc3339(s.time), "usageBytes": s.memory_usage,
                               "workingSetBytes": s.working_set}
        for key, value in (("rssBytes", s.rss), ("pageFaults", s.page_faults),
                           ("majorPageFaults", s.major_page_faults)):
            if value is not None:
                out[key] = value
        if node:
            total = _meminfo().get("MemTotal")
            if total is not None and s.working_set is not None:
                out["availableBytes"] = max(0, total - s.working_set)
        return out

    def _network(self, pod: PodCgroup) -> dict[str, Any] | None:
        pid = next((p for c in pod.containers if (p := self.reader.first_pid(c.cgroup))), None)
        if pid is None:
            return None
        devs = _net_dev(pid)
        interfaces = [{"name": n, "rxBytes": rx, "rxErrors": rxe, "txBytes": tx, "txErrors": txe}
                      for n, (rx, rxe, tx, txe) in sorted(devs.items()) if n != "lo"]
        if not interfaces:
            return None
        first = next((i for i in interfaces if i["name"] == "eth0"), interfaces[0])
        return {"time": _rfc3339(time.time()), **first, "interfaces": interfaces}

    async def summary(self, only_cpu_and_memory: bool = False) -> dict[str, Any]:
        pods = await self.refresh()
        node: dict[str, Any] = {"nodeName": self.node_name, "startTime": _rfc3339(self.boot_time)}
        for key, value in (("cpu", self._cpu("/")), ("memory", self._memory("/", node=True))):
            if value is not None:
                node[key] = value
        if not only_cpu_and_memory:
            try:
                st = os.statvfs(self.root_dir)
                node["fs"] = {"time": _rfc3339(time.time()), "availableBytes": st.f_bavail * st.f_frsize,
                              "capacityBytes": st.f_blocks * st.f_frsize,
                              "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
                              "inodesFree": st.f_ffree, "inodes": st.f_files, "inodesUsed": st.f_files - st.f_ffree}
            except OSError:
                pass
        out_pods = []
        for p in pods:
            entry: dict[str, Any] = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                                     "startTime": _rfc3339(p.start_time or time.time()), "containers": []}
            for c in p.containers:
                ce: dict[str, Any] = {"name": c.name, "startTime": _rfc3339(c.start_time or p.start_time or
                                                                            time.time())}
                for key, value in (("cpu", self._cpu(c.cgroup)), ("memory", self._memory(c.cgroup))):
                    if value is not None:
                        ce[key] = value
                entry["containers"].append(ce)
            for key, value in (("cpu", self._cpu(p.cgroup)), ("memory", self._memory(p.cgroup))):
                if value is not None:
                    entry[key] = value
            if not only_cpu_and_memory:
                net = await asyncio.to_thread(self._network, p)
                if net is not None:
                    entry["network"] = net
            out_pods.append(entry)
        return {"node": node, "pods": out_pods}

    # --- /metrics/resource -------------------------------------------------------------------------------------

    async def resource_metrics(self) -> str:
        pods = await self.refresh()
        lines: list[str] = []

        def block(name: str, kind: str, text: str, samples: list[tuple[dict[str, str], float, float]]) -> None:
            lines.extend([f"# HELP {name} [STABLE] {text}", f"# TYPE {name} {kind}"])
            lines.extend(prometheus.sample(name, labels, value, int(t * 1000)) for labels, value, t in samples)

        def cpu(path: str) -> tuple[float, float] | None:
            h = self.history.get(path)
            s = h.latest if h else None
            return (s.cpu_ns / 1e9, s.time) if s is not None and s.cpu_ns is not None else None

        def mem(path: str) -> tuple[float, float] | None:
            h = self.history.get(path)
            s = h.latest if h else None
            return (float(s.working_set), s.time) if s is not None and s.working_set is not None else None

        containers = [(p, c) for p in pods for c in p.containers]

        def labels(p: PodCgroup, c: ContainerCgroup | None = None) -> dict[str, str]:
            base = {"namespace": p.namespace, "pod": p.name}
            return {"container": c.name, **base} if c is not None else base

        block("container_cpu_usage_seconds_total", "counter",
              "Cumulative cpu time consumed by the container in core-seconds",
              [(labels(p, c), *v) for p, c in containers if (v := cpu(c.cgroup))])
        block("container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes",
              [(labels(p, c), *v) for p, c in containers if (v := mem(c.cgroup))])
        block("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds",
              [(labels(p, c), c.start_time, c.start_time) for p, c in containers if c.start_time])
        node_cpu, node_mem = cpu("/"), mem("/")
        block("node_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the node in core-seconds",
              [({}, *node_cpu)] if node_cpu else [])
        block("node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes",
              [({}, *node_mem)] if node_mem else [])
        block("pod_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the pod in core-seconds",
              [(labels(p), *v) for p in pods if (v := cpu(p.cgroup))])
        block("pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes",
              [(labels(p), *v) for p in pods if (v := mem(p.cgroup))])
        lines += ["# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, "
                  "0 otherwise", "# TYPE resource_scrape_error gauge", "resource_scrape_error 0"]
        return "\n".join(lines) + "\n"


def _boot_time() -> float:
    for line in (_read("/proc/stat") or "").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return time.time()


def add_routes(app: web.Application, stats: ResourceStats) -> None:
    """GET /stats/summary[?only_cpu_and_memory=true] and GET /metrics/resource on the kubelet's server."""
    from aiohttp import web

    async def summary(request: web.Request) -> web.Response:
        only = request.query.get("only_cpu_and_memory", "").lower() in ("1", "true")
        return web.json_response(await stats.summary(only))

    async def resource(_: web.Request) -> web.Response:
        return web.Response(text=await stats.resource_metrics(), headers={"Content-Type": prometheus.CONTENT_TYPE})

    app.router.add_get("/stats/summary", summary)
    app.router.add_get("/stats/summary/", summary)
    app.router.add_get("/metrics/resource", resource)
