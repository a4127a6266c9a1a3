"""A real single-node cluster for kubelet tests: `kapal up` on a private directory, bridge names, pod range and
cgroup root, with HOME pointed at a temp dir; `stop()` runs `kapal down --purge` and returns what leaked."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
KAPAL = [sys.executable, "-m", "kapal.cli.main"]
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
BUSYBOX = "/bin/busybox"
IMAGE = "bar/busybox:1"


def kubectl_binary(version: str) -> Path:
    path = KUBECTL_DIR / f"kubectl.{version}"
    if not path.exists():
        pytest.skip(f"kubectl {version} is not installed at {path}")
    return path


def busybox_tar(path: Path) -> Path:
    """A busybox rootfs tar (relative applet links, /etc/passwd, /tmp) for `kapal import`."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (make deps installs it)")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "var", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
                           ("etc/group", "root:x:0:\nnobody:x:65534:\n"), ("www/index.html", "hello from a pod\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            import io

            tar.addfile(info, io.BytesIO(data))
    return path


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def _processes_under(prefix: str) -> list[str]:
    """Processes working in or started with a path under `prefix` (shims, lxcfs, the engine)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if int(pid) != os.getpid() and (prefix in cmdline or cwd.startswith(prefix + "/") or cwd == prefix):
            out.append(f"{pid} {cmdline[:120]}")
    return out


class UpCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        tag = uuid.uuid4().hex[:6]
        self.dir = workdir / "cluster"
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.pod_bridge = f"kp{tag}"
        self.engine_bridge = f"ke{tag}"
        self.cgroup_root = f"/kapal-test-{tag}"
        self.chain_prefix = f"KT{tag[:4].upper()}-"  # chain names stay within 28 characters
        b = random.randint(200, 249)
        self.pod_range = f"10.{b}.0.0/16"
        self.engine_bip = f"10.{b}.250.1/24"
        self.proc: subprocess.Popen | None = None
        self.out_lines: list[str] = []
        self.docker_host = f"unix://{self.dir / 'docker.sock'}"
        self.admin = self.dir / "admin.kubeconfig"
        self.node = ""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.admin)}

    def up_args(self) -> list[str]:
        return [*KAPAL, "up", "--data-dir", str(self.dir), "--secure-port", "0", "--kubelet-port", "0",
                "--pod-bridge-name", self.pod_bridge, "--pod-network-cidr", self.pod_range, "--cgroup-root",
                self.cgroup_root, f"--engine-arg=--bridge={self.engine_bridge}",
                f"--engine-arg=--bip={self.engine_bip}", "--dns-port", "0",
                "--proxy-chain-prefix", self.chain_prefix, "-v", "1"]

    def start(self, timeout: float = 60.0) -> float:
        """Start `kapal up`; seconds until it printed DOCKER_HOST (the node is Ready then)."""
        started = time.monotonic()
        self.log = open(self.workdir / "up.log", "ab")
        self.proc = subprocess.Popen(self.up_args(), stdout=subprocess.PIPE, stderr=self.log, env=self.env, cwd=ROOT,
                                     text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kapal up exited {self.proc.returncode}: "
                                       f"{(self.workdir / 'up.log').read_text()[-3000:]}")
                continue
            self.out_lines.append(line)
            if line.startswith("export DOCKER_HOST="):
                self.node = json.loads((self.dir / "up.json").read_text())["node"]
                return time.monotonic() - started
        raise RuntimeError("kapal up did not become ready")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kapal(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*KAPAL, "-H", self.docker_host, *args], input=input, capture_output=True,
                              timeout=timeout, env=self.env, cwd=ROOT)

    def import_busybox(self) -> None:
        tar = busybox_tar(self.workdir / "busybox.tar")
        r = self.kapal("import", str(tar), IMAGE)
        assert r.returncode == 0, r.stderr

    def kubectl(self, *args: str, version: str = "1.33", input: str | None = None, timeout: float = 60,
                check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(kubectl_binary(version)), "--kubeconfig", str(self.admin), "--cache-dir",
               str(self.workdir / f"kcache-{version}"), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)

    def wait_for(self, what: str, fn: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = fn()
            except (AssertionError, KeyError, IndexError, json.JSONDecodeError) as e:
                last = e
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}: last saw {last!r}")

    def pod_phase(self, name: str) -> str:
        return self.get("pod", name)["status"].get("phase", "")

    def container_state(self, name: str, index: int = 0) -> dict[str, Any]:
        statuses = self.get("pod", name)["status"].get("containerStatuses") or []
        return statuses[index] if statuses else {}

    def engine_supports_pods(self) -> str | None:
        """None when the engine joins namespace files (ns:/path for network, IPC and UTS); else why not."""
        from kapal.engine.client import APIError, EngineClient

        client = EngineClient(self.docker_host)
        body = {"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"NetworkMode": "ns:/proc/self/ns/net",
                                                                "IpcMode": "ns:/proc/self/ns/ipc",
                                                                "UTSMode": "ns:/proc/self/ns/uts"}}
        try:
            out = client.json("POST", "/containers/create", body=body)
        except APIError as e:
            return f"the engine cannot join a pod's namespaces yet ({e.message})"
        client.json("DELETE", f"/containers/{out['Id']}", {"force": True})
        return None

    def stop(self) -> list[str]:
        """`kapal down --purge`; what it left behind (mounts, bridges, cgroups, processes)."""
        self.terminate()
        r = subprocess.run([*KAPAL, "down", "--data-dir", str(self.dir), "--purge"], capture_output=True, text=True,
                           timeout=180, env=self.env, cwd=ROOT)
        leaks = [] if r.returncode == 0 else [f"kapal down: {r.returncode} {r.stderr}"]
        leaks += [f"mount {m}" for m in _mounts_under(str(self.workdir))]
        for dev in (self.pod_bridge, self.engine_bridge):
            if os.path.exists(f"/sys/class/net/{dev}"):
                leaks.append(f"bridge {dev}")
        for hierarchy in ("memory", "cpu", "pids"):
            if os.path.exists(f"/sys/fs/cgroup/{hierarchy}{self.cgroup_root}/kubepods"):
                pods = [p for p in os.listdir(f"/sys/fs/cgroup/{hierarchy}{self.cgroup_root}/kubepods")]
                leaks.append(f"cgroup {hierarchy}{self.cgroup_root}/kubepods: {pods}")
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        if self.pod_bridge in rules:
            leaks.append("iptables rules for the pod bridge")
        if self.engine_bridge in rules:
            leaks.append("iptables rules for the engine's bridge")
        leaks += [f"process {p}" for p in _processes_under(str(self.dir))]
        if f":{self.chain_prefix}" in rules or f"-j {self.chain_prefix}" in rules:
            leaks.append(f"iptables chains {self.chain_prefix}*")
        self.log.close()
        self._remove_cgroup_root()
        return leaks

    def _remove_cgroup_root(self) -> None:
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


class NodeProcesses:
    """`kapal apiserver`, `kapal engine` and `kapal kubelet` as three processes (no scheduler: pods name their node),
    so the kubelet alone can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster = UpCluster(workdir)  # for names, ranges and kubectl
        self.cluster.dir.mkdir(parents=True, exist_ok=True)
        self.node = f"n{uuid.uuid4().hex[:6]}"
        self.pod_cidr = self.cluster.pod_range.replace(".0.0/16", ".7.0/24")
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = {}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        self.logs[name] = log
        proc = subprocess.Popen([*KAPAL, *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=self.cluster.env)
        self.procs[name] = proc
        return proc

    def _wait_log(self, name: str, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = (self.workdir / f"{name}.log").read_text(errors="replace")
            if text in data:
                return data
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {data[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not say {text!r}")

    def start_apiserver(self) -> str:
        c = self.cluster
        if not hasattr(self, "api_port"):
            import socket

            with socket.socket() as s:
                s.bind(("0.0.0.0", 0))
                self.api_port = s.getsockname()[1]
        marker = (self.workdir / "apiserver.log").read_text().count("serving on") if (
            self.workdir / "apiserver.log").exists() else 0
        self._spawn("apiserver", ["apiserver", "--data-dir", str(c.dir), "--secure-port", str(self.api_port)])
        deadline = time.monotonic() + 30
        while (self.workdir / "apiserver.log").read_text().count("serving on") <= marker:
            if self.procs["apiserver"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "apiserver.log").read_text()[-2000:])
            time.sleep(0.05)
        return f"https://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        c = self.cluster
        url = self.start_apiserver()
        self._spawn("engine", ["engine", "--data-root", str(c.dir / "engine"), "-H", c.docker_host,
                               f"--bridge={c.engine_bridge}", f"--bip={c.engine_bip}", "--no-lxcfs"])
        self._wait_log("engine", "is ready")
        from kapal.kube.kubelet.credentials import node_kubeconfig

        node_kubeconfig(c.dir / "pki" / "ca.crt", c.dir / "pki" / "ca.key", url, self.node, c.dir / "kubelet.conf")
        c.node = self.node
        self.start_kubelet()

    def kubelet_args(self) -> list[str]:
        c = self.cluster
        manifests = ["--pod-manifest-path", str(self.manifests)] if getattr(self, "manifests", None) else []
        return ["kubelet", *manifests, "--kubeconfig", str(c.dir / "kubelet.conf"), "--node-name", self.node,
                "--root-dir", str(c.dir / "kubelet"), "--container-runtime-endpoint", c.docker_host, "--pod-cidr",
                self.pod_cidr, "--port", "0", "--healthz-port", "0", "--pod-bridge-name", c.pod_bridge, "--cgroup-root",
                c.cgroup_root, "-v", "1"]

    def start_kubelet(self) -> None:
        if "kubelet" in self.logs:
            self.logs["kubelet"].write(b"\n--- restarted ---\n")
            self.logs["kubelet"].flush()
        before = (self.workdir / "kubelet.log").read_text() if (self.workdir / "kubelet.log").exists() else ""
        self._spawn("kubelet", self.kubelet_args())
        deadline = time.monotonic() + 30
        while (self.workdir / "kubelet.log").read_text().count("ready (IP") <= before.count("ready (IP"):
            if self.procs["kubelet"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "kubelet.log").read_text()[-2000:])
            time.sleep(0.05)

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def terminate(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    def stop(self) -> list[str]:
        """Stop the kubelet and clean the node as `kapal down` would; the engine's containers go first."""
        c = self.cluster
        for name in ("kubelet",):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        from kapal.engine.client import EngineClient

        client = EngineClient(c.docker_host)
        for ctr in client.json("GET", "/containers/json", {"all": True}) or []:
            client.json("DELETE", f"/containers/{ctr['Id']}", {"force": True})
        for name in ("engine", "apiserver"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        for log in self.logs.values():
            log.close()
        from kapal.kube.kubelet.teardown import teardown_node

        leaks = teardown_node(c.dir / "kubelet", cgroup_root=c.cgroup_root, bridge=c.pod_bridge)
        subprocess.run([*KAPAL, "engine", "--data-root", str(c.dir / "engine"), "-H", c.docker_host,
                        f"--bridge={c.engine_bridge}", f"--bip={c.engine_bip}", "--cleanup"], capture_output=True,
                       timeout=60, cwd=ROOT)
        for m in sorted(_mounts_under(str(self.workdir)), reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        c._remove_cgroup_root()
        return leaks
