"""What kubeadm's kubelet-start phase writes: the KubeletConfiguration and the flags file, and the kubelet's command.

kubeadm leaves starting the kubelet to systemd and its drop-in; there is no systemd here, so `kubelet_argv`
is that drop-in's command line (config file, kubeconfig, and the flags of kubeadm-flags.env) and adm runs it
as a daemon (daemons.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import InitConfig
from .constants import KUBELET_HEALTHZ_PORT, KubeadmPaths


def kubelet_configuration(cfg: InitConfig, paths: KubeadmPaths) -> dict[str, Any]:
    """kubeadm's defaults for the cluster's KubeletConfiguration, then the user's own document over them."""
    doc: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "0s", "enabled": True},
                           "x509": {"clientCAFile": str(cfg.cert_dir / "ca.crt")}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupDriver": "cgroupfs",
        "clusterDNS": [cfg.dns_service_ip],
        "clusterDomain": cfg.dns_domain,
        "containerRuntimeEndpoint": cfg.cri_socket,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "kind": "KubeletConfiguration",
        "rotateCertificates": True,
        "staticPodPath": str(paths.manifests_dir),
    }
    for key, value in cfg.kubelet_configuration.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def kubelet_flags(cfg: InitConfig) -> list[str]:
    """The node-specific flags kubeadm puts in kubeadm-flags.env."""
    flags = [f"--container-runtime-endpoint={cfg.cri_socket}", f"--node-ip={cfg.advertise_address}"]
    if cfg.node_name:
        flags.append(f"--hostname-override={cfg.node_name}")
    flags += [f"--{a.name}={a.value}" for a in cfg.kubelet_extra_args]
    return flags


def flags_env(cfg: InitConfig) -> str:
    return f'KUBELET_KUBEADM_ARGS="{" ".join(kubelet_flags(cfg))}"\n'


def kubelet_argv(kapal: Path, cfg: InitConfig, paths: KubeadmPaths) -> list[str]:
    """The command line kubeadm's systemd drop-in gives the kubelet."""
    return [str(kapal), "kubelet", f"--config={paths.kubelet_config_file}", f"--kubeconfig={paths.kubelet_conf}",
            f"--root-dir={paths.kubelet_dir}", *kubelet_flags(cfg)]


def healthz_url() -> str:
    return f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz"


def lxcfs_dir(paths: KubeadmPaths) -> Path:
    """Where the node's engine finds lxcfs (pods see their own limits in /proc): the host-wide one when it answers,
    else one the engine starts under /run/kapal, recorded in its data root so `reset` stops it."""
    from kapal.engine.lxcfs import DEFAULT_DIR, mounted_dirs, probe

    if str(DEFAULT_DIR) in mounted_dirs() and probe(DEFAULT_DIR) is None:
        return DEFAULT_DIR
    return paths.run_dir / "lxcfs"


def engine_argv(kapal: Path, paths: KubeadmPaths, lxcfs: bool = True) -> list[str]:
    """The engine adm starts for the kubelet (with lxcfs unless `lxcfs` is False: reset's engine only removes
    containers). Its bridge network is only made for bridge-mode containers, which neither static pods (host
    network) nor the kubelet's pods (joined namespaces) are."""
    return [str(kapal), "engine", "--data-root", str(paths.engine_data_root), "-H", f"unix://{paths.engine_socket}",
            *(["--lxcfs-dir", str(lxcfs_dir(paths))] if lxcfs else ["--no-lxcfs"])]


def engine_cleanup(paths: KubeadmPaths, out: Callable[[str], None]) -> list[str]:
    """`kapal engine --cleanup` for the stopped engine: its leftover containers, bridge and rules (unless another
    engine uses them), mounts under its data root and the lxcfs it started; says what it did, returns problems.
    Nothing is touched while an engine still answers on its socket (one adm did not start)."""
    from kapal.engine.config import EngineConfig
    from kapal.engine.teardown import engine_listening, teardown

    if engine_listening(paths.engine_socket):
        out(f"[reset] An engine adm did not start still answers on {paths.engine_socket}: its host state is left")
        return []
    report = teardown(EngineConfig(data_root=paths.engine_data_root, host=f"unix://{paths.engine_socket}"))
    for line in report.done:
        out(f"[reset] Engine: removed {line}")
    for line in report.kept:
        out(f"[reset] Engine: {line}")
    return report.problems
