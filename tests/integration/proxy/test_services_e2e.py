"""The issue's end-to-end checks on a real single-node cluster (`kapal up`, real pods from a busybox image):
`kubectl expose deployment web --port 80`, then from a pod `wget http://web/` and the FQDN, requests spread over
the replicas, NodePort from the host on the node's InternalIP, a pod failing readiness drops out, a headless
Service resolves to pod IPs, pods' resolv.conf, and `kubectl top pods` against the containers' cgroups.

`kapal up` runs the proxy (here with its own chain prefix) and the DNS server (published at .10 of a private
service range, on a free port); with an older `kapal up` that does not, they run next to it as processes."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kubelet"))

from kubelet_harness import IMAGE, KAPAL, ROOT, UpCluster
from services_harness import KapalProcess, free_port, free_subnet

from kapal.kube.dns.forward import nameservers
from kapal.kube.proxy.app import cleanup_rules

pytestmark = pytest.mark.root

WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: IMAGE
        command: ["sh", "-c", "hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports: [{containerPort: 80, name: http}]
        readinessProbe:
          exec: {command: ["sh", "-c", "test ! -f /tmp/unready"]}
          periodSeconds: 1
          failureThreshold: 1
""".replace("IMAGE", IMAGE)


class ServicesCluster(UpCluster):
    """`kapal up` on a private service range whose .10 is the cluster DNS address."""

    def __init__(self, workdir: Path, prefix: str) -> None:
        super().__init__(workdir)
        self.service_cidr = free_subnet(20, 253)
        self.dns_ip = str(ipaddress.ip_network(self.service_cidr)[10])
        self.prefix = prefix
        usage = subprocess.run([*KAPAL, "up", "--help"], capture_output=True, text=True, cwd=ROOT).stdout
        self.runs_services = "--proxy-chain-prefix" in usage

    def up_args(self) -> list[str]:
        if self.runs_services:
            return [*super().up_args(), "--service-cidr", self.service_cidr, "--dns-port", str(free_port()),
                    "--proxy-chain-prefix", self.prefix]
        return [*super().up_args(), "--service-cidr", self.service_cidr, "--cluster-dns", self.dns_ip]


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    prefix = f"E{uuid.uuid4().hex[:6]}-"
    c = ServicesCluster(tmp_path_factory.mktemp("services-e2e"), prefix)
    procs: list[KapalProcess] = []
    try:
        c.start()
        c.import_busybox()
        assert c.runs_services, "kapal up runs the Service proxy and the cluster DNS itself"
        why = c.engine_supports_pods()
        assert why is None, why
        node = c.get("node", c.node, namespace="")
        c.node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        if not c.runs_services:
            procs.append(KapalProcess("proxy", ["--kubeconfig", str(c.admin), "--chain-prefix", prefix,
                                                "--hostname-override", c.node, "--cluster-cidr", c.pod_range,
                                                "--healthz-bind-address", "", "--metrics-bind-address", ""],
                                      c.workdir / "proxy.log").start())
            upstream = [ip for ip in nameservers(open("/etc/resolv.conf").read())
                        if not ipaddress.ip_address(ip).is_loopback][:1]
            procs.append(KapalProcess("dns", ["--kubeconfig", str(c.admin), "--dns-address", c.node_ip,
                                              "--dns-port", str(free_port()), "--publish-service", "--service-ip",
                                              c.dns_ip, "--hostname-override", c.node, "--metrics-address", "",
                                              "--health-address", "", "--ready-address", "",
                                              *[f"--upstream={u}" for u in upstream]],
                                      c.workdir / "dns.log").start())
        c.kubectl("apply", "-f", "-", input=WEB)
        c.kubectl("expose", "deployment", "web", "--port", "80")
        c.kubectl("run", "client", f"--image={IMAGE}", "--restart=Never", "--", "sleep", "3600")
        c.wait_for("3 web replicas ready", lambda: c.get("deployment", "web")["status"].get("readyReplicas") == 3,
                   timeout=90)
        c.wait_for("the client pod", lambda: c.get("pod", "client")["status"].get("phase") == "Running", timeout=60)
        yield c
    finally:
        for p in reversed(procs):
            p.stop()
        cleanup_rules(prefix)
        if c.proc is not None:
            leaks = c.stop()
            assert not leaks, leaks


def web_pods(c) -> dict[str, str]:
    """pod name -> pod IP of the web replicas."""
    pods = json.loads(c.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods}


def wget_from_client(c, url: str, times: int = 1) -> list[str]:
    script = f"for i in $(seq {times}); do wget -q -O - {url} || echo FAILED; done"
    out = c.kubectl("exec", "client", "--", "sh", "-c", script, timeout=120).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_pod_resolv_conf_points_at_cluster_dns(up):
    conf = up.kubectl("exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {up.dns_ip}" in conf
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in conf
    assert "options ndots:5" in conf


def test_wget_by_service_name_spreads_over_the_replicas(up):
    names = set(web_pods(up))
    up.wait_for("http://web/ from the client", lambda: wget_from_client(up, "http://web/")[0] in names, timeout=30)
    # readyReplicas can run ahead of the EndpointSlice and the proxy's next sync: wait until every replica
    # is in the rules, then 30 requests must reach all three.
    up.wait_for("3 ready endpoints", lambda: sum(
        1 for s in json.loads(up.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web",
                                         "-o", "json").stdout)["items"]
        for e in s.get("endpoints") or () if (e.get("conditions") or {}).get("ready")) == 3, timeout=30)
    seen: list[str] = []
    for _ in range(5):
        seen = wget_from_client(up, "http://web/", 30)
        if set(seen) == names:
            break
        time.sleep(1)
    assert set(seen) == names, seen
    fqdn = wget_from_client(up, "http://web.default.svc.cluster.local/", 3)
    assert set(fqdn) <= names and len(fqdn) == 3


def test_node_port_answers_from_the_host(up):
    up.kubectl("expose", "deployment", "web", "--name", "web-np", "--type", "NodePort", "--port", "80")
    port = up.get("service", "web-np")["spec"]["ports"][0]["nodePort"]
    names = set(web_pods(up))

    def fetch():
        try:
            with urllib.request.urlopen(f"http://{up.node_ip}:{port}/", timeout=3) as r:
                return r.read().decode().strip() in names
        except OSError:
            return False
    up.wait_for(f"NodePort {port} on {up.node_ip}", fetch, timeout=30)


def test_headless_service_resolves_to_pod_ips(up):
    up.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
""")
    ips = set(web_pods(up).values())

    def resolved():
        out = up.kubectl("exec", "client", "--", "nslookup", "web-headless.default.svc.cluster.local",
                         check=False).stdout
        found = {w for line in out.splitlines() for w in line.replace(":", " ").split() if w in ips}
        return found == ips
    up.wait_for("the headless Service's A records", resolved, timeout=30)


def test_unready_pod_stops_receiving_traffic(up):
    pods = web_pods(up)
    victim = sorted(pods)[0]
    up.kubectl("exec", victim, "--", "touch", "/tmp/unready")
    try:
        def gone():
            eps = json.loads(up.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o",
                                        "json").stdout)["items"]
            ready = {a for s in eps for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
                     for a in e["addresses"]}
            return pods[victim] not in ready and len(ready) == 2
        up.wait_for(f"{victim} out of the ready endpoints", gone, timeout=30)
        time.sleep(1.5)  # the proxy's minimum sync interval
        seen = wget_from_client(up, "http://web/", 20)
        assert victim not in seen and len(set(seen)) == 2, seen
    finally:
        up.kubectl("exec", victim, "--", "rm", "-f", "/tmp/unready")


def test_kubectl_top_pods_matches_the_cgroups(up):
    summary = json.loads(up.kubectl("get", "--raw", f"/api/v1/nodes/{up.node}/proxy/stats/summary").stdout)
    assert summary["node"]["nodeName"] == up.node
    up.kubectl("run", "hog", f"--image={IMAGE}", "--restart=Never", "--",
               "sh", "-c", "head -c 40000000 /dev/zero > /tmp/fill; exec sleep 3600")  # /tmp is the rootfs
    up.wait_for("the hog pod", lambda: up.get("pod", "hog")["status"].get("phase") == "Running", timeout=60)

    def row():
        out = up.kubectl("top", "pod", "hog", "--containers", "--no-headers", check=False).stdout.split()
        return out if len(out) == 4 else None
    cols = up.wait_for("kubectl top pod hog", row, timeout=60, interval=1)
    pod = up.get("pod", "hog")
    uid = pod["metadata"]["uid"]
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    mem_dir = next(
        (os.path.join(r, cid) for r, ds, _ in os.walk(f"/sys/fs/cgroup/memory{up.cgroup_root}")
         if r.endswith(f"pod{uid}") and cid in ds), None)
    assert mem_dir is not None, "the container's memory cgroup"
    usage = int(Path(mem_dir, "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in Path(mem_dir, "memory.stat").read_text().splitlines())
    expected = max(0, usage - int(stat["total_inactive_file"])) >> 20
    assert abs(int(cols[3].removesuffix("Mi")) - expected) <= 2, (cols, expected)
    node = up.kubectl("top", "node", up.node, "--no-headers").stdout.split()
    assert node[0] == up.node and node[1].endswith("m") and node[2].endswith("%") and node[3].endswith("Mi"), node
