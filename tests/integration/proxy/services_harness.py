"""Helpers for the Service, DNS and metrics tests: an in-process API server with real kubectl, "pods" that are
network namespaces on a unique test bridge serving HTTP with busybox, and `kapal proxy` / `kapal dns` processes.

Import it after putting this directory on sys.path (the dns and metrics tests do that too).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kapal.network import netns
from kapal.network.bridge import BridgeNetwork

ROOT = Path(__file__).resolve().parents[3]
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (an AssertionError counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def newest_kubectl() -> str:
    versions = os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()
    for v in sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")), reverse=True):
        if (KUBECTL_DIR / f"kubectl.{v}").exists():
            return v
    pytest.skip("no kubectl.1.NN under /usr/lib/google-cloud-sdk/bin")


def free_subnet(prefix: int = 24, second: int = 250) -> str:
    """A 10.<second>.X.0/PREFIX no route on the host overlaps."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        words = line.split()
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.ip_network(words[1] if words[0] in ("local", "broadcast") else words[0],
                                             strict=False))
    for _ in range(200):
        step = 2 ** max(0, 24 - prefix)
        candidate = ipaddress.ip_network(f"10.{second}.{random.randrange(0, 256, step)}.0/{prefix}")
        if not any(candidate.overlaps(u) for u in used if u.prefixlen > 0):
            return str(candidate)
    raise RuntimeError(f"no free 10.{second}.X.0 subnet")


# --- the API server and kubectl --------------------------------------------------------------------------------------

@dataclass
class Cluster:
    url: str
    kubeconfig: Path
    home: Path
    service_cidr: str
    kubectl_version: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> str:
        binary = KUBECTL_DIR / f"kubectl.{self.kubectl_version}"
        proc = subprocess.run([str(binary), "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                               str(self.home / "cache"), *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "HOME": str(self.home)})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc.stdout if check else proc.stdout + proc.stderr

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]]) -> str:
        items = obj if isinstance(obj, list) else [obj]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(doc))

    def get(self, *what: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *what, "-o", "json"))


@contextlib.contextmanager
def api_server(tmp: Path, **config: Any) -> Iterator[Cluster]:
    from kapal.kube.api.config import ApiServerConfig
    from kapal.kube.api.server import ServerThread

    cidr = config.pop("service_cluster_ip_range", None) or free_subnet(20, 252)
    version = newest_kubectl()
    cfg = ApiServerConfig(data_dir=tmp / "apiserver", secure_port=0, bind_address="127.0.0.1",
                          service_cluster_ip_range=cidr, **config)
    with ServerThread(cfg) as server:
        assert server.admin_kubeconfig is not None
        home = tmp / "kubectl-home"
        home.mkdir(parents=True, exist_ok=True)
        yield Cluster(server.url, server.admin_kubeconfig, home, cidr, version)


def service(name: str, ports: list[tuple[str, int, str]], *, namespace: str = "default", headless: bool = False,
            node_port: bool = False, selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A Service manifest; ports are (name, port, protocol)."""
    body: dict[str, Any] = {"ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
                            "type": "NodePort" if node_port else "ClusterIP", **spec}
    if selector:
        body["selector"] = selector
    if headless:
        body["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": body}


def endpoint_slice(svc_name: str, endpoints: list[dict[str, Any]], ports: list[tuple[str, int, str]], *,
                   name: str | None = None, namespace: str = "default") -> dict[str, Any]:
    """An EndpointSlice for `svc_name`; endpoints are dicts with ip, and optional ready/hostname/node."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{svc_name}-test", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": svc_name,
                                "endpointslice.kubernetes.io/managed-by": "tests.kapal.dev"}},
        "addressType": "IPv4",
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        "endpoints": [{"addresses": [e["ip"]],
                       "conditions": {"ready": e.get("ready", True), "serving": e.get("ready", True),
                                      "terminating": e.get("terminating", False)},
                       **({"hostname": e["hostname"]} if e.get("hostname") else {}),
                       **({"nodeName": e["node"]} if e.get("node") else {})} for e in endpoints],
    }


# --- pods: network namespaces on a test bridge ---------------------------------------------------------------------

@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *argv: str, timeout: float = 10, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={self.netns}", *argv], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def wget(self, url: str, timeout: int = 3) -> str:
        """busybox wget from inside the pod; the body, or '' when it failed. (Debian's busybox 1.35 wget
        crashes with -T, so the subprocess timeout bounds it instead.)"""
        try:
            proc = self.run(BUSYBOX, "wget", "-q", "-O", "-", url, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return proc.stdout if proc.returncode == 0 else ""

    def http_get(self, ip: str, port: int, timeout: float = 2.0, source_port: int = 0) -> str:
        """One HTTP/1.0 GET from this pod's namespace with a Python socket; the body, or '' on failure."""
        def fetch() -> str:
            try:
                with socket.socket() as s:
                    s.settimeout(timeout)
                    if source_port:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind(("0.0.0.0", source_port))
                    s.connect((ip, port))
                    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                return data.partition(b"\r\n\r\n")[2].decode().strip()
            except OSError:
                return ""
        return netns.call_in(self.netns, fetch)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return netns.call_in(self.netns, fn, *args)

    def serve_udp(self, port: int) -> None:
        """A UDP server in the pod answering every datagram with the pod's name."""
        script = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  f"s.bind(('0.0.0.0', {port}))\nwhile True:\n    d, a = s.recvfrom(2048)\n"
                  f"    s.sendto(b'{self.name}', a)\n")
        self.procs.append(subprocess.Popen(["nsenter", f"--net={self.netns}", sys.executable, "-S", "-c", script],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: self.udp_ask("127.0.0.1", port) == self.name, 10, what=f"UDP server in {self.name}")

    def udp_ask(self, ip: str, port: int, source_port: int = 0, timeout: float = 1.0) -> str:
        """One datagram from this pod (from `source_port` when given); the answer, or '' when none came."""
        def ask() -> str:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", source_port))
                try:
                    s.sendto(b"ping", (ip, port))
                    return s.recvfrom(2048)[0].decode()
                except OSError:
                    return ""
        return netns.call_in(self.netns, ask)


class PodNetwork:
    """A unique bridge with pods that each serve their own name over HTTP on port 8080 (busybox httpd)."""

    def __init__(self, tmp: Path, unique: str) -> None:
        self.tmp = tmp
        self.unique = unique
        self.net = BridgeNetwork(f"{unique}-pods", f"{unique[:11]}b", free_subnet(24, 250), tmp / "podnet")
        self.pods: list[Pod] = []

    @property
    def gateway(self) -> str:
        return str(self.net.gateway)

    def pod(self, name: str, serve: bool = True) -> Pod:
        path = netns.create(self.tmp / "netns" / name)
        try:
            att = self.net.attach(f"{self.unique}-{name}", path)
        except BaseException:
            netns.remove(path)
            raise
        pod = Pod(name, path, str(att.ip))
        self.pods.append(pod)
        if serve:
            www = self.tmp / "www" / name
            www.mkdir(parents=True, exist_ok=True)
            (www / "index.html").write_text(name + "\n")
            pod.procs.append(subprocess.Popen(["nsenter", f"--net={path}", BUSYBOX, "httpd", "-f", "-p", "8080",
                                               "-h", str(www)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            wait_until(lambda: pod.http_get("127.0.0.1", 8080) == name, 10, what=f"httpd in {name}")
        return pod

    def close(self) -> None:
        for pod in self.pods:
            for proc in pod.procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(5)
            with contextlib.suppress(Exception):
                self.net.detach(f"{self.unique}-{pod.name}", pod.netns)
            netns.remove(pod.netns)
        self.net.teardown()


# --- kapal proxy / kapal dns processes -----------------------------------------------------------------------------

class KapalProcess:
    """A `kapal VERB ...` subprocess with its log in a file; stopped with SIGTERM (then SIGKILL) by PID."""

    def __init__(self, verb: str, args: list[str], log: Path) -> None:
        self.verb = verb
        self.args = args
        self.log_path = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> KapalProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kapal.cli.main", self.verb, *self.args],
                                     stdout=log, stderr=log, cwd=ROOT)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def proxy_process(cluster: Cluster, prefix: str, tmp: Path, *extra: str) -> KapalProcess:
    return KapalProcess("proxy", ["--kubeconfig", str(cluster.kubeconfig), "--chain-prefix", prefix,
                                  "--hostname-override", "node-1", "--iptables-min-sync-period", "0.05s",
                                  "--healthz-bind-address", f"127.0.0.1:{free_port()}",
                                  "--metrics-bind-address", f"127.0.0.1:{free_port()}", "-v", "2", *extra],
                        tmp / f"proxy-{prefix}.log")


def iptables_save(table: str = "nat") -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout


def chains_with_prefix(prefix: str) -> list[str]:
    out = []
    for table in ("nat", "filter"):
        out += [f"{table}/{ln[1:].split()[0]}" for ln in iptables_save(table).splitlines()
                if ln.startswith(":" + prefix)]
    return out


def rules_mentioning(text: str, table: str = "nat") -> list[str]:
    return [ln for ln in iptables_save(table).splitlines() if text in ln]


def chain_rules(chain: str, table: str = "nat") -> list[str]:
    proc = subprocess.run(["iptables", "-w", "-t", table, "-S", chain], capture_output=True, text=True)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


@contextlib.contextmanager
def pod_network(tmp: Path, unique: str, servers: tuple[str, ...]) -> Iterator[PodNetwork]:
    """A PodNetwork with one serving pod per name and a `client` pod that serves nothing."""
    net = PodNetwork(tmp, unique)
    try:
        for name in servers:
            net.pod(name)
        net.pod("client", serve=False)
        yield net
    finally:
        net.close()
