"""kubeadm's well-known paths, ports, names and versions, and where kapal's own state lives.

`KubeadmPaths` gathers every host path the phases and `reset` touch, so a dry run (or a unit test) can
point all of them under one temporary directory with `KubeadmPaths.under(root)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

KUBERNETES_VERSION = "v1.33.0"
DEFAULT_IMAGE_REPOSITORY = "kapal.local"

API_SERVER_PORT = 6443
SCHEDULER_PORT = 10259
CONTROLLER_MANAGER_PORT = 10257
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248

MIN_CPUS = 2
MIN_MEMORY_MB = 1700

KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
KUBE_SCHEDULER = "kube-scheduler"
ETCD = "etcd"
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
CONTROL_PLANE_COMPONENTS = (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER)

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
CONTROL_PLANE_TAINT = {"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}

BOOTSTRAP_GROUP = "system:bootstrappers:kubeadm:default-node-token"
NODES_GROUP = "system:nodes"
KUBEADM_CONFIGMAP = "kubeadm-config"
KUBELET_CONFIGMAP = "kubelet-config"
CLUSTER_INFO = "cluster-info"

# The daemons `kubelet-start` runs and `reset` stops, by the name of their pid and log files.
KUBELET_DAEMON = "kubelet"
ENGINE_DAEMON = "engine"


@dataclass(frozen=True)
class KubeadmPaths:
    """Every host path kubeadm's phases write or reset removes."""

    kubernetes_dir: Path = Path("/etc/kubernetes")
    kubelet_dir: Path = Path("/var/lib/kubelet")
    engine_data_root: Path = Path("/var/lib/kapal/engine")
    engine_socket: Path = Path("/run/kapal/docker.sock")
    run_dir: Path = Path("/run/kapal")
    log_dir: Path = Path("/var/log/kapal")
    cni_conf_dir: Path = Path("/etc/cni/net.d")

    @property
    def manifests_dir(self) -> Path:
        return self.kubernetes_dir / "manifests"

    @property
    def default_cert_dir(self) -> Path:
        return self.kubernetes_dir / "pki"

    @property
    def admin_conf(self) -> Path:
        return self.kubernetes_dir / "admin.conf"

    @property
    def super_admin_conf(self) -> Path:
        return self.kubernetes_dir / "super-admin.conf"

    @property
    def kubelet_conf(self) -> Path:
        return self.kubernetes_dir / "kubelet.conf"

    @property
    def kubelet_config_file(self) -> Path:
        return self.kubelet_dir / "config.yaml"

    @property
    def kubelet_flags_env(self) -> Path:
        return self.kubelet_dir / "kubeadm-flags.env"

    def pidfile(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def logfile(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def under(self, root: str | Path) -> KubeadmPaths:
        """The same layout rooted at `root` (dry runs, tests)."""
        base = Path(root)
        return replace(self, **{f.name: base / str(getattr(self, f.name)).lstrip("/") for f in fields(self)})


def static_pod_path(manifests_dir: Path, component: str) -> Path:
    return manifests_dir / f"{component}.yaml"
