"""A real control plane per test module: `kapal apiserver`, `kapal controller-manager`, `kapal scheduler` and
`kapal hollow-nodes` as separate processes, each with its own identity (client certificates for
system:kube-controller-manager and system:kube-scheduler signed by the API server's CA; the controller manager
runs every controller as its own service account, as kubeadm configures it).

Processes are stopped by PID; every file lives under the module's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "apiserver"))

from apiserver_harness import ApiServerProcess, start_apiserver  # noqa: E402

ROOT = HERE.parents[2]
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def component_kubeconfig(api: ApiServerProcess, user: str, groups: list[str], path: Path) -> Path:
    """A kubeconfig for `user` with a client certificate from the API server's CA (as kubeadm writes them)."""
    from kapal.kube import pki

    pki_dir = api.data_dir / "pki"
    ca = pki.load(pki_dir / "ca.crt", pki_dir / "ca.key")
    cert = pki.issue(ca, user, organizations=groups, client=True)
    text = pki.kubeconfig(api.url, (pki_dir / "ca.crt").read_bytes(), user, client_cert_pem=cert.cert_pem(),
                          client_key_pem=cert.key_pem(), cluster="kapal")
    pki.write_kubeconfig(path, text)
    return path


@dataclass
class Component:
    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class ControlPlane:
    tmp: Path
    api: ApiServerProcess
    kcm_kubeconfig: Path
    scheduler_kubeconfig: Path
    components: list[Component] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Component:
        log = self.tmp / f"{name}.log"
        out = open(log, "ab")
        proc = subprocess.Popen([sys.executable, "-m", "kapal.cli.main", *args], stdout=out, stderr=out, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        c = Component(name, proc, log)
        self.components.append(c)
        return c

    def start_controller_manager(self, name: str = "kcm", *extra: str, env: dict[str, str] | None = None
                                 ) -> Component:
        return self.start(name, "controller-manager", "--kubeconfig", str(self.kcm_kubeconfig), "--secure-port", "0",
                          "--use-service-account-credentials", "-v", "1", *extra, env=env)

    def start_scheduler(self, *extra: str) -> Component:
        return self.start("scheduler", "scheduler", "--kubeconfig", str(self.scheduler_kubeconfig), "--secure-port",
                          "0", "-v", "1", *extra)

    def start_hollow_nodes(self, count: int = 3, *extra: str) -> Component:
        return self.start("hollow", "hollow-nodes", "--kubeconfig", str(self.kubeconfig), "--count", str(count),
                          "-v", "1", *extra)

    def stop(self) -> None:
        for c in reversed(self.components):
            c.kill()
        self.api.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log.read_text(errors='replace')[-4000:]}" for c in self.components)


def start_control_plane(tmp: Path, *, nodes: int = 3, kcm: bool = True, kcm_args: tuple[str, ...] = (),
                        kcm_env: dict[str, str] | None = None, kcm_keys: bool = False) -> ControlPlane:
    """`kcm_keys`: give the controller manager the cluster CA and service-account key, as kubeadm does
    (CSR signing, legacy token secrets)."""
    api = start_apiserver(tmp / "data")
    plane = ControlPlane(tmp, api,
                         component_kubeconfig(api, "system:kube-controller-manager", [], tmp / "kcm.kubeconfig"),
                         component_kubeconfig(api, "system:kube-scheduler", [], tmp / "scheduler.kubeconfig"))
    try:
        if kcm_keys:
            pki = api.data_dir / "pki"
            kcm_args = (*kcm_args, "--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file",
                        str(pki / "ca.key"), "--service-account-private-key-file", str(pki / "sa.key"),
                        "--root-ca-file", str(pki / "ca.crt"))
        if kcm:
            plane.start_controller_manager("kcm", *kcm_args, env=kcm_env)
        plane.start_scheduler()
        if nodes:
            plane.start_hollow_nodes(nodes)
            wait_for(lambda: len(Kubectl.admin(plane).json("get", "nodes")["items"]) >= nodes, 30,
                     "hollow nodes to register")
    except BaseException:
        plane.stop()
        raise
    return plane


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as e:
            last = e
        if last and not isinstance(last, AssertionError):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def kubectl_versions() -> list[str]:
    return os.environ.get("KAPAL_KUBECTL_VERSIONS", "1.27 1.30 1.33").split()


class Kubectl:
    """kubectl NN against the plane, with its own cache dir and kubeconfig copy."""

    def __init__(self, version: str, home: Path, kubeconfig: Path) -> None:
        self.version = version
        self.binary = KUBECTL_DIR / f"kubectl.{version}"
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        shutil.copy(kubeconfig, self.kubeconfig)
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(home)}

    @classmethod
    def admin(cls, plane: ControlPlane, version: str = "") -> Kubectl:
        version = version or newest_kubectl()
        return cls(version, plane.tmp / f"kubectl-{version}", plane.kubeconfig)

    @property
    def available(self) -> bool:
        return self.binary.exists()

    def __call__(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 90
                 ) -> subprocess.CompletedProcess:
        p = subprocess.run([str(self.binary), "--cache-dir", str(self.home / "cache"), *args], input=input,
                           capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {self.version} {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def out(self, *args: str, **kw: Any) -> str:
        return self(*args, **kw).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "-o", "json"))


def newest_kubectl() -> str:
    versions = sorted({*kubectl_versions(), "1.33"}, key=lambda v: tuple(int(x) for x in v.split(".")), reverse=True)
    for v in versions:
        if (KUBECTL_DIR / f"kubectl.{v}").exists():
            return v
    raise RuntimeError(f"no kubectl binary found in {KUBECTL_DIR}")
