"""The API server's settings, one field per kube-apiserver flag kapal supports (defaults as upstream's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KUBERNETES_VERSION = "v1.33.0"


@dataclass
class ApiServerConfig:
    data_dir: Path
    secure_port: int = 6443  # 0: any free port (tests)
    bind_address: str = "0.0.0.0"
    advertise_address: str | None = None
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    client_ca_file: Path | None = None
    service_account_key_files: list[Path] = field(default_factory=list)
    service_account_signing_key_file: Path | None = None
    service_account_issuer: list[str] = field(default_factory=lambda: [DEFAULT_ISSUER])
    api_audiences: list[str] = field(default_factory=list)
    service_account_max_token_expiration: int = 0  # seconds; 0 = no cap beyond upstream's defaults
    authorization_modes: list[str] = field(default_factory=lambda: ["Node", "RBAC"])
    token_auth_file: Path | None = None
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    storage: str = ""  # DSN; "" = sqlite:///<data_dir>/state.db
    etcd_servers: list[str] = field(default_factory=list)
    kubelet_client_certificate: Path | None = None
    kubelet_client_key: Path | None = None
    kubelet_certificate_authority: Path | None = None
    kubelet_preferred_address_types: list[str] = field(default_factory=list)  # [] = InternalIP, Hostname, ...
    anonymous_auth: bool = False  # requests without credentials: 401 (False) or system:anonymous (True, upstream's)
    enable_bootstrap_token_auth: bool = True
    max_request_bytes: int = 3 * 1024 * 1024
    watch_cache_size: int = 1000
    watch_queue_size: int = 10000
    bookmark_interval: float = 60.0
    min_request_timeout: int = 1800
    compaction_interval: float = 300.0
    event_ttl: float = 3600.0  # --event-ttl: Events are deleted this long after they were last written
    write_admin_kubeconfig: bool = True
    key_algorithm: str = "RSA-2048"  # of the CA and certificates made under DATA_DIR/pki (the SA key is RSA)
    default_service_accounts: bool = True  # keep a `default` ServiceAccount in every namespace

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def storage_dsn(self) -> str:
        if self.storage:
            return self.storage
        if self.etcd_servers:
            return "etcd://" + ",".join(s.split("://", 1)[-1] for s in self.etcd_servers)
        return f"sqlite://{self.data_dir / 'state.db'}"
