"""Engine settings: defaults in code, parsed from flags only by `kapal engine`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .client import DEFAULT_HOST

DEFAULT_DATA_ROOT = Path("/var/lib/kapal/engine")
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"


@dataclass(frozen=True)
class EngineConfig:
    data_root: Path = DEFAULT_DATA_ROOT
    host: str = DEFAULT_HOST
    insecure_registries: tuple[str, ...] = ()
    certs_dir: Path = Path("/etc/kapal/certs.d")
    runtime: str = "kapal"
    live_restore: bool = True
    lxcfs_dir: Path | None = Path("/var/lib/kapal/lxcfs")  # None: containers see the host's /proc files
    bridge: str = "kapal0"
    bridge_cidr: str = "10.89.0.1/16"  # the bridge's address: gateway and subnet, as dockerd's --bip
    network_pool: int = 2  # bridge namespaces kept attached ahead of `docker run`
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def socket_path(self) -> Path:
        if not self.host.startswith("unix://"):
            raise ValueError(f"the engine listens on unix sockets only, not {self.host!r}")
        return Path(self.host[len("unix://") :])
