"""A restarted `kapal proxy` keeps traffic flowing (the old rules stay until the new full sync replaces them in
one restore) and leaves nothing stale: Services deleted while it was down lose their chains, and chains of our
prefix that nobody wants are removed."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest
from services_harness import (
    chain_rules,
    endpoint_slice,
    iptables_save,
    proxy_process,
    rules_mentioning,
    service,
    wait_until,
)

from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.kinds import ENDPOINTSLICES, NAMESPACES, SERVICES
from kapal.kube.pki import load_kubeconfig
from kapal.kube.proxy.app import cleanup_rules

pytestmark = pytest.mark.root

HTTP = [("http", 80, "TCP")]
TARGET = [("http", 8080, "TCP")]


class Traffic(threading.Thread):
    """Requests from the client pod to a ClusterIP, back to back, counting failures, until stopped."""

    def __init__(self, pod, ip):
        super().__init__(daemon=True)
        self.pod, self.ip = pod, ip
        self.ok = self.failed = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            if self.pod.http_get(self.ip, 80, timeout=2):
                self.ok += 1
            else:
                self.failed += 1
            time.sleep(0.01)

    def stop(self):
        self.halt.set()
        self.join(10)


def owned_chains(prefix):
    out = set()
    for table in ("nat", "filter"):
        out |= {f"{table}/{ln[1:].split()[0]}" for ln in iptables_save(table).splitlines()
                if ln.startswith(":" + prefix)}
    return out


def orphans(prefix):
    """SVC/SEP/EXT chains no rule jumps to: what a stale sync would leave."""
    nat = iptables_save("nat").splitlines()
    chains = {ln[1:].split()[0] for ln in nat if ln.startswith(f":{prefix}") and
              any(k in ln for k in ("-SVC-", "-SEP-", "-EXT-", "-SVL-"))}
    targets = {ln.split(" -j ")[1].split()[0] for ln in nat if ln.startswith("-A ") and " -j " in ln}
    return chains - targets


@pytest.fixture(autouse=True, scope="module")
def no_rules_left(prefix):
    yield
    cleanup_rules(prefix)
    assert owned_chains(prefix) == set(), "the proxy's chains outlived the test"


def test_restart_keeps_traffic_and_removes_what_went_stale(cluster, pods, prefix, tmp_path):
    p = {pod.name: pod for pod in pods.pods}
    cluster.apply([service("keep", HTTP), endpoint_slice("keep", [{"ip": p["web-a"].ip}, {"ip": p["web-b"].ip}],
                                                          TARGET),
                   service("doomed", HTTP), endpoint_slice("doomed", [{"ip": p["web-c"].ip}], TARGET)])
    proxy = proxy_process(cluster, prefix, tmp_path, "--cluster-cidr", str(pods.net.subnet)).start()
    traffic = None
    try:
        keep_ip = cluster.get("service", "keep")["spec"]["clusterIP"]
        client = p["client"]
        wait_until(lambda: client.http_get(keep_ip, 80), what="keep's ClusterIP")
        wait_until(lambda: rules_mentioning('"default/doomed:http cluster IP"'), what="doomed's rules")
        doomed_chains = {ln.split()[-1] for ln in rules_mentioning('"default/doomed:http cluster IP"')
                         if "-SVC-" in ln.split()[-1]}
        assert len(doomed_chains) == 1
        traffic = Traffic(client, keep_ip)
        traffic.start()
        assert proxy.stop() == 0, proxy.log()
        # while the proxy is down: a Service goes, another comes, and someone leaves a chain of our prefix
        cluster.kubectl("delete", "service", "doomed")
        cluster.kubectl("delete", "endpointslice", "doomed-test")
        cluster.apply([service("fresh", HTTP), endpoint_slice("fresh", [{"ip": p["web-c"].ip}], TARGET)])
        stray = f"{prefix}SVC-AAAAAAAAAAAAAAAA"
        subprocess.run(["iptables", "-w", "-t", "nat", "-N", stray], check=True)
        time.sleep(0.5)
        assert rules_mentioning('"default/doomed:http cluster IP"'), "rules must stay while the proxy is down"
        syncs = proxy.log().count("full sync")
        proxy.start()
        wait_until(lambda: proxy.log().count("full sync") > syncs, what="the first sync after the restart")
        fresh_ip = cluster.get("service", "fresh")["spec"]["clusterIP"]
        assert client.http_get(fresh_ip, 80) == "web-c"
        time.sleep(0.3)
        traffic.stop()
        assert traffic.failed == 0 and traffic.ok > 10, (traffic.ok, traffic.failed)
        assert not rules_mentioning("default/doomed")
        assert all(chain_rules(c) == [] for c in doomed_chains)
        assert chain_rules(stray) == [] and f"nat/{stray}" not in owned_chains(prefix)
        assert orphans(prefix) == set()
    finally:
        if traffic is not None:
            traffic.stop()
        proxy.stop()
        for name in ("keep", "doomed", "fresh"):
            cluster.kubectl("delete", "service", name, "--wait=false", check=False)
            cluster.kubectl("delete", "endpointslice", f"{name}-test", "--wait=false", check=False)


async def _bulk(kubeconfig, namespace, count, endpoints):
    """count Services with an EndpointSlice of `endpoints` each, created 32 at a time."""
    client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig)))
    sem = asyncio.Semaphore(32)

    async def one(i):
        async with sem:
            await client.create(SERVICES, service(f"bulk-{i}", HTTP, namespace=namespace), namespace)
            await client.create(ENDPOINTSLICES, endpoint_slice(f"bulk-{i}", [{"ip": ip} for ip in endpoints],
                                                               TARGET, namespace=namespace), namespace)
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await client.close()


def test_restart_with_a_thousand_services(cluster, pods, prefix, tmp_path):
    p = {pod.name: pod for pod in pods.pods}
    real = [p["web-a"].ip, p["web-b"].ip, p["web-c"].ip]
    fake = [f"{pods.net.subnet.network_address + 200 + i}" for i in range(7)]  # 10 endpoints a Service
    asyncio.run(_bulk(cluster.kubeconfig, "bulk", 1000, real + fake))
    cluster.apply([service("live", HTTP), endpoint_slice("live", [{"ip": ip} for ip in real], TARGET)])
    proxy = proxy_process(cluster, prefix, tmp_path, "--cluster-cidr", str(pods.net.subnet)).start()
    traffic = None
    try:
        wait_until(lambda: len(rules_mentioning("bulk/bulk-")) >= 1000 * 32, timeout=120, interval=1,
                   what="1,000 Services programmed")
        before = owned_chains(prefix)
        live_ip = cluster.get("service", "live")["spec"]["clusterIP"]
        wait_until(lambda: p["client"].http_get(live_ip, 80), what="live's ClusterIP")
        traffic = Traffic(p["client"], live_ip)
        traffic.start()
        syncs = proxy.log().count("full sync")
        assert proxy.stop() == 0, proxy.log()
        proxy.start()
        wait_until(lambda: proxy.log().count("full sync") > syncs, timeout=120, interval=0.5,
                   what="the first sync after the restart")
        time.sleep(0.5)
        traffic.stop()
        assert traffic.failed == 0 and traffic.ok > 10, (traffic.ok, traffic.failed)
        after = owned_chains(prefix)
        assert after == before, (sorted(after - before)[:5], sorted(before - after)[:5])
        assert orphans(prefix) == set()
        cluster.kubectl("delete", "service", "bulk-7", "-n", "bulk")
        wait_until(lambda: not rules_mentioning('"bulk/bulk-7:http'), what="bulk-7's rules to go")
        gone = before - owned_chains(prefix)
        assert len(gone) == 11 and all("-SVC-" in c or "-SEP-" in c for c in gone), gone
    finally:
        if traffic is not None:
            traffic.stop()
        proxy.stop()
        cluster.kubectl("delete", "namespace", "bulk", "--wait=false", check=False)
        cluster.kubectl("delete", "service", "live", "--wait=false", check=False)
