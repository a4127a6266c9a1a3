"""The kubelet's settings: one field per upstream kubelet flag kapal supports, defaults as upstream's.

Parsed from flags only by `kapal kubelet` (kapal/cli/kubelet.py) and built directly by `kapal up`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KUBELET_VERSION = "v1.33.0"
DEFAULT_ROOT_DIR = Path("/var/lib/kapal/kubelet")
DEFAULT_ENDPOINT = "unix:///run/kapal/docker.sock"


def default_node_name() -> str:
    return socket.gethostname().lower()


@dataclass
class KubeletConfig:
    node_name: str = field(default_factory=default_node_name)
    kubeconfig: Path | None = None  # None: standalone (static pods only)
    root_dir: Path = DEFAULT_ROOT_DIR
    node_ip: str | None = None
    pod_manifest_path: Path | None = None
    cgroup_root: str = "/"
    cgroup_driver: str = "cgroupfs"
    container_runtime_endpoint: str = DEFAULT_ENDPOINT
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    address: str = "0.0.0.0"
    port: int = 10250  # 0: pick a free one (tests)
    healthz_bind_address: str = "127.0.0.1"
    healthz_port: int = 10248  # plain HTTP /healthz; 0 disables
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    anonymous_auth: bool = True
    authentication_token_webhook: bool = False
    authorization_mode: str = "AlwaysAllow"  # or Webhook
    max_pods: int = 110
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[dict[str, Any]] = field(default_factory=list)
    register_node: bool = True
    fail_swap_on: bool = True
    pod_cidr: str | None = None
    non_masquerade_cidr: str | None = None  # default: the pod CIDR's /16
    pod_bridge: str = "kapal-cni0"
    resolv_conf: str = "/etc/resolv.conf"
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    node_lease_duration: int = 40
    sync_frequency: float = 60.0
    relist_period: float = 1.0
    volume_refresh_period: float = 15.0
    file_check_frequency: float = 1.0
    serialize_image_pulls: bool = False
    image_pull_backoff_max: float = 300.0
    crash_backoff_base: float = 10.0
    crash_backoff_max: float = 300.0
    streaming_idle_timeout: float = 4 * 3600.0
    system_reserved: dict[str, str] = field(default_factory=dict)
    eviction_hard_memory: str = "100Mi"
    provider_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pods_dir(self) -> Path:
        return self.root_dir / "pods"

    @property
    def pki_dir(self) -> Path:
        return self.root_dir / "pki"

    @property
    def lease_renew_interval(self) -> float:
        return self.node_lease_duration * 0.25


def systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")
