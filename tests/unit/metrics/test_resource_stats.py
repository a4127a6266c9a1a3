"""Resource stats from cgroup files (a v1-shaped tree in a temp dir): working set, CPU rates, both outputs,
and the NodeMetrics/PodMetrics the API server makes of a summary."""

from __future__ import annotations

import asyncio

import pytest

from kapal.kube.api.resourcemetrics import node_metrics, pod_metrics
from kapal.kube.kubelet import stats
from kapal.kube.kubelet.stats import CgroupReader, ContainerCgroup, PodCgroup, ResourceStats

POD = "/kubepods/burstable/podu1"
CTR = POD + "/abc"


class FakeTree:
    def __init__(self, root):
        self.root = root
        self.reader = CgroupReader.__new__(CgroupReader)
        self.reader.unified = False
        self.reader._v1 = {"cpuacct": (str(root / "cpuacct"), "/"), "memory": (str(root / "memory"), "/"),
                           "pids": (str(root / "pids"), "/")}

    def set(self, cgroup, cpu_ns, usage, inactive_file, rss=1000):
        rel = cgroup.strip("/")
        cpu = self.root / "cpuacct" / rel
        mem = self.root / "memory" / rel
        cpu.mkdir(parents=True, exist_ok=True)
        mem.mkdir(parents=True, exist_ok=True)
        (cpu / "cpuacct.usage").write_text(f"{cpu_ns}\n")
        (mem / "memory.usage_in_bytes").write_text(f"{usage}\n")
        (mem / "memory.stat").write_text(f"cache 1\ntotal_inactive_file {inactive_file}\ntotal_rss {rss}\n"
                                         "total_pgfault 7\ntotal_pgmajfault 1\n")


class Source:
    def pod_cgroups(self):
        return [PodCgroup("default", "web", "u1", POD, (ContainerCgroup("app", CTR, 1700000000.0),), 1700000000.0)]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "MIN_WINDOW", 0.05)
    t = FakeTree(tmp_path)
    t.set("/", 10_000_000_000, 8 << 30, 1 << 30)
    t.set(POD, 1_000_000_000, 300 << 20, 100 << 20)
    t.set(CTR, 900_000_000, 250 << 20, 100 << 20)
    return t


def test_summary_reads_working_set_and_cpu_rate(tree):
    s = ResourceStats("node-1", Source(), reader=tree.reader)

    async def run():
        first = await s.summary()  # two samples, no CPU used between them
        tree.set(CTR, 900_000_000 + 50_000_000, 250 << 20, 100 << 20)
        await asyncio.sleep(0.06)
        return first, await s.summary(only_cpu_and_memory=True)

    first, second = asyncio.run(run())
    ctr = first["pods"][0]["containers"][0]
    assert ctr["name"] == "app" and ctr["memory"]["workingSetBytes"] == 150 << 20
    assert ctr["memory"]["usageBytes"] == 250 << 20 and ctr["memory"]["rssBytes"] == 1000
    assert ctr["cpu"]["usageNanoCores"] == 0 and ctr["cpu"]["usageCoreNanoSeconds"] == 900_000_000
    assert first["node"]["memory"]["workingSetBytes"] == 7 << 30 and "fs" in first["node"]
    rate = second["pods"][0]["containers"][0]["cpu"]["usageNanoCores"]
    assert 0 < rate <= 50_000_000 / 0.05
    assert "fs" not in second["node"] and first["pods"][0]["podRef"] == {"name": "web", "namespace": "default",
                                                                         "uid": "u1"}


def test_working_set_never_negative(tree):
    tree.set(CTR, 1, 10, 20)
    assert tree.reader.sample(CTR).working_set == 0


def test_missing_cgroups_are_left_out(tree):
    assert tree.reader.sample("/kubepods/nope") is None


def test_resource_metrics_text(tree):
    text = asyncio.run(ResourceStats("node-1", Source(), reader=tree.reader).resource_metrics())
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("container_memory_working_set_bytes{"))
    labels, value, stamp = line.split(" ")
    assert labels == 'container_memory_working_set_bytes{container="app",namespace="default",pod="web"}'
    assert int(value) == 150 << 20 and len(stamp) == 13
    assert any(ln.startswith("container_cpu_usage_seconds_total{") and " 0.9 " in ln for ln in text.splitlines())
    assert any(ln.startswith("node_memory_working_set_bytes ") for ln in text.splitlines())
    assert "resource_scrape_error 0" in text


def test_metrics_api_objects_from_a_summary():
    cpu = {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 250_000_000, "usageCoreNanoSeconds": 9}
    mem = {"time": "2026-01-01T00:00:00Z", "workingSetBytes": 64 << 20}
    node = {"metadata": {"name": "n1", "labels": {"a": "b"}}}
    nm = node_metrics(node, {"node": {"cpu": cpu, "memory": mem}})
    assert nm["usage"] == {"cpu": "250000000n", "memory": "65536Ki"} and nm["metadata"]["labels"] == {"a": "b"}
    pod = {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}}
    pm = pod_metrics(pod, {"containers": [{"name": "app", "cpu": cpu, "memory": mem}]})
    assert pm["kind"] == "PodMetrics" and pm["containers"] == [{"name": "app", "usage": {"cpu": "250000000n",
                                                                                          "memory": "65536Ki"}}]
    assert pod_metrics(pod, {"containers": [{"name": "app", "cpu": {"time": "x"}, "memory": mem}]}) is None
