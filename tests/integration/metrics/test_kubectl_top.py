"""`kubectl top` through metrics.k8s.io: the API server asks a kubelet's /stats/summary, computed from real
cgroups with real processes in them. The "kubelet" here is the stats module served over TLS on its own
(so the test needs no engine); the pods are API objects whose cgroups hold a CPU burner and a memory hog."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from services_harness import api_server, free_port, wait_until

from kapal.kube import pki
from kapal.kube.kubelet.stats import ContainerCgroup, PodCgroup, ResourceStats, add_routes
from kapal.linux.cgroups import is_unified, manager_for
from kapal.linux.cgroups.resources import Resources

pytestmark = pytest.mark.root

NODE = "node-metrics"
BURN = "while True:\n    pass\n"
HOG = ("import time\nb = bytearray(48 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n"
       "print('ready', flush=True)\ntime.sleep(600)\n")


def cgroup_working_set(path: str) -> int:
    """What the container's memory cgroup says, read straight from its files (v1)."""
    mem = manager_for(path).paths()["memory"]
    usage = int(Path(mem, "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in Path(mem, "memory.stat").read_text().splitlines())
    return max(0, usage - int(stat["total_inactive_file"]))


class FakeKubelet:
    """ResourceStats on HTTPS in a thread of its own, as the kubelet's server would mount it."""

    def __init__(self, stats: ResourceStats, tmp: Path) -> None:
        self.stats = stats
        self.port = free_port()
        ca = pki.new_ca("kubelet-ca")
        leaf = pki.issue(ca, NODE, ip_addresses=["127.0.0.1"], server=True)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        pki.load_cert_chain_pem(self.ctx, leaf.cert_pem(), leaf.key_pem())
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        from aiohttp import web

        async def serve():
            app = web.Application()
            add_routes(app, self.stats)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if is_unified():
        pytest.skip("these checks read cgroup v1 files")
    with api_server(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def workload(cluster, tmp_path_factory):
    """Node and pods in the API; cgroups and processes on the host; a fake kubelet that reports them."""
    tmp = tmp_path_factory.mktemp("metrics")
    root = f"/kapal-test-{uuid.uuid4().hex[:8]}"
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {"role": "test"}}})
    pods = []
    for name, app in (("burner", "burn"), ("hog", "hog")):
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                     "spec": {"nodeName": NODE, "containers": [{"name": app, "image": "busybox"}]}})
    cluster.apply(pods)
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.get("pods")["items"]}
    made: dict[str, object] = {}
    procs, layout = [], []
    try:
        for name, container, script, res in (
                ("burner", "burn", BURN, Resources(cpu_quota=20000, cpu_period=100000)),
                ("hog", "hog", HOG, Resources(memory_limit=256 << 20))):
            pod_cg = f"{root}/kubepods/burstable/pod{uids[name]}"
            ctr_cg = f"{pod_cg}/{uuid.uuid4().hex}"
            for path in (root, f"{root}/kubepods", f"{root}/kubepods/burstable", pod_cg, ctr_cg):
                if path not in made:
                    made[path] = manager_for(path)
                    made[path].create()
            manager_for(ctr_cg).set(res)
            mgr = manager_for(ctr_cg)
            proc = subprocess.Popen([sys.executable, "-S", "-c", script], stdout=subprocess.PIPE,
                                    preexec_fn=lambda mgr=mgr: mgr.apply(0))
            procs.append(proc)
            if name == "hog":
                assert proc.stdout.readline().strip() == b"ready"
            layout.append(PodCgroup("default", name, uids[name], pod_cg,
                                    (ContainerCgroup(container, ctr_cg, time.time()),), time.time()))

        class Source:
            def pod_cgroups(self):
                return list(layout)

        kubelet = FakeKubelet(ResourceStats(NODE, Source(), interval=2.0), tmp)
        kubelet.start()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}}
        cluster.kubectl("patch", "node", NODE, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        yield {"layout": {p.name: p for p in layout}, "kubelet": kubelet}
        kubelet.stop()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)
        for path in sorted(made, key=lambda p: -p.count("/")):  # children first
            m = made[path]
            deadline = time.monotonic() + 5
            while m.exists() and time.monotonic() < deadline:
                try:
                    m.destroy()
                except Exception:
                    time.sleep(0.05)


def top(cluster, *args):
    """`kubectl top ...` rows as {name: [columns...]} (waits for the metrics to be there)."""
    def rows():
        out = cluster.kubectl("top", *args, "--no-headers", check=False)
        found = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()
                 and not line.startswith("error")}
        return found or None
    return wait_until(rows, timeout=30, interval=0.5, what=f"kubectl top {' '.join(args)}")


def mi(text: str) -> int:
    assert text.endswith("Mi"), text
    return int(text[:-2])


def millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def test_discovery_lists_the_metrics_api(cluster):
    resources = cluster.kubectl("api-resources", "--api-group=metrics.k8s.io")
    assert "NodeMetrics" in resources and "PodMetrics" in resources


def test_top_pods_matches_the_cgroups(cluster, workload):
    rows = top(cluster, "pods")
    assert set(rows) == {"burner", "hog"}
    hog_cg = workload["layout"]["hog"].containers[0].cgroup
    expected = cgroup_working_set(hog_cg) >> 20
    assert abs(mi(rows["hog"][1]) - expected) <= 2, (rows["hog"], expected)
    assert mi(rows["hog"][1]) >= 48
    burn = millicores(rows["burner"][0])
    assert 50 <= burn <= 260, rows["burner"]  # a busy loop held to 200m by its CFS quota
    assert millicores(rows["hog"][0]) < 50


def test_top_pods_per_container_and_by_label(cluster, workload):
    out = cluster.kubectl("top", "pods", "--containers", "--no-headers")
    assert {tuple(line.split()[:2]) for line in out.splitlines()} == {("burner", "burn"), ("hog", "hog")}
    assert set(top(cluster, "pods", "-l", "app=hog")) == {"hog"}
    single = cluster.kubectl("top", "pod", "hog", "--no-headers").split()
    assert single[0] == "hog" and single[2].endswith("Mi")


def test_top_nodes(cluster, workload):
    rows = top(cluster, "nodes")
    cpu, cpu_pct, memory, memory_pct = rows[NODE][:4]
    assert millicores(cpu) > 0 and cpu_pct.endswith("%") and mi(memory) > 0 and memory_pct.endswith("%")


def test_metrics_api_objects_and_errors(cluster, workload):
    doc = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/hog"))
    assert doc["kind"] == "PodMetrics" and doc["containers"][0]["usage"]["memory"].endswith("Ki")
    assert doc["metadata"]["labels"] == {"app": "hog"}
    missing = cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
                              check=False)
    assert 'podmetrics.metrics.k8s.io "nope" not found' in missing


def test_kubelet_resource_metrics_through_the_node_proxy(cluster, workload):
    text = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource")
    hog = next(ln for ln in text.splitlines() if ln.startswith('container_memory_working_set_bytes{container="hog"'))
    assert int(hog.split()[1]) >> 20 >= 48
    assert any(ln.startswith('container_cpu_usage_seconds_total{container="burn"') for ln in text.splitlines())
