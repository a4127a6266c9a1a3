"""The control plane's static-pod manifests, shaped as kubeadm 1.33 writes them.

Each component runs `kapal apiserver|controller-manager|scheduler` with the upstream component's flags
(sorted by name, extraArgs override by name), on the host network, at priority system-node-critical, with
kubeadm's liveness/readiness/startup probes on the component's secure port and hostPath volumes for the
PKI, its kubeconfig and the CA bundles. kapal adds three read-only hostPath volumes (the interpreter, the
venv and kapal's source, see images.py) and, for the API server, its SQLite datastore directory (where
kubeadm would mount etcd's data in etcd.yaml).

kubeadm's front-proxy flags (--requestheader-*, --proxy-client-*) are left out: kapal has no API
aggregation layer that would use them; the front-proxy certificates are still written, as kubeadm does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import Arg, ComponentOptions, HostPathMount, InitConfig
from .constants import (
    CONTROLLER_MANAGER_PORT,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    SCHEDULER_PORT,
    KubeadmPaths,
)
from .images import PythonInstall, image_reference

# as kubeadm: the kubelet runs these pods under the engine's default seccomp profile (Docker's allow-list)
POD_SECCOMP_PROFILE = "RuntimeDefault"
CA_CERT_DIRS = ("/etc/pki", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates", "/etc/ca-certificates")
ISSUER = "https://kubernetes.default.svc.cluster.local"


def build_args(defaults: dict[str, str], overrides: list[Arg]) -> list[str]:
    """kubeadm's BuildArgumentListFromMap: defaults overridden by name, then every arg sorted by name."""
    merged: dict[str, list[str]] = {k: [v] for k, v in defaults.items()}
    replaced: set[str] = set()
    for arg in overrides:
        if arg.name not in replaced:
            merged[arg.name] = []
            replaced.add(arg.name)
        merged[arg.name].append(arg.value)
    return [f"--{name}={value}" for name in sorted(merged) for value in merged[name]]


def apiserver_args(cfg: InitConfig, datastore_dir: Path) -> list[str]:
    pki = cfg.cert_dir
    defaults = {
        "advertise-address": cfg.advertise_address,
        "allow-privileged": "true",
        "anonymous-auth": "true",
        "authorization-mode": "Node,RBAC",
        "client-ca-file": str(pki / "ca.crt"),
        "data-dir": str(datastore_dir),
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "kubelet-client-certificate": str(pki / "apiserver-kubelet-client.crt"),
        "kubelet-client-key": str(pki / "apiserver-kubelet-client.key"),
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "secure-port": str(cfg.bind_port),
        "service-account-issuer": ISSUER,
        "service-account-key-file": str(pki / "sa.pub"),
        "service-account-signing-key-file": str(pki / "sa.key"),
        "service-cluster-ip-range": cfg.service_subnet,
        "tls-cert-file": str(pki / "apiserver.crt"),
        "tls-private-key-file": str(pki / "apiserver.key"),
    }
    if cfg.etcd.external:
        defaults["etcd-servers"] = ",".join(cfg.etcd.external_endpoints)
        for key, value in (("etcd-cafile", cfg.etcd.ca_file), ("etcd-certfile", cfg.etcd.cert_file),
                           ("etcd-keyfile", cfg.etcd.key_file)):
            if value:
                defaults[key] = value
    return build_args(defaults, cfg.api_server.extra_args)


def controller_manager_args(cfg: InitConfig, paths: KubeadmPaths, external_ca: bool = False) -> list[str]:
    pki, conf = cfg.cert_dir, str(paths.kubernetes_dir / "controller-manager.conf")
    defaults = {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "client-ca-file": str(pki / "ca.crt"),
        "cluster-name": cfg.cluster_name,
        "cluster-signing-cert-file": str(pki / "ca.crt"),
        "cluster-signing-key-file": str(pki / "ca.key"),
        "controllers": "*,bootstrapsigner,tokencleaner",
        "kubeconfig": conf,
        "leader-elect": "true",
        "requestheader-client-ca-file": str(pki / "front-proxy-ca.crt"),
        "root-ca-file": str(pki / "ca.crt"),
        "service-account-private-key-file": str(pki / "sa.key"),
        "service-cluster-ip-range": cfg.service_subnet,
        "use-service-account-credentials": "true",
    }
    if cfg.pod_subnet:
        defaults["allocate-node-cidrs"] = "true"
        defaults["cluster-cidr"] = cfg.pod_subnet
    if external_ca:  # no CA key: the CSR signer must not start (kubeadm passes empty values)
        defaults["cluster-signing-cert-file"] = ""
        defaults["cluster-signing-key-file"] = ""
    return build_args(defaults, cfg.controller_manager.extra_args)


def scheduler_args(cfg: InitConfig, paths: KubeadmPaths) -> list[str]:
    conf = str(paths.kubernetes_dir / "scheduler.conf")
    defaults = {"authentication-kubeconfig": conf, "authorization-kubeconfig": conf, "bind-address": "127.0.0.1",
                "kubeconfig": conf, "leader-elect": "true"}
    return build_args(defaults, cfg.scheduler.extra_args)


def _probe(host: str, path: str, port: int, failures: int, period: int, initial_delay: int | None) -> dict[str, Any]:
    probe: dict[str, Any] = {"failureThreshold": failures,
                             "httpGet": {"host": host, "path": path, "port": port, "scheme": "HTTPS"}}
    if initial_delay is not None:
        probe["initialDelaySeconds"] = initial_delay
    probe["periodSeconds"] = period
    probe["timeoutSeconds"] = 15
    return probe


def _probes(host: str, port: int, live: str, ready: str | None) -> dict[str, Any]:
    out = {"livenessProbe": _probe(host, live, port, 8, 10, 10),
           "startupProbe": _probe(host, live, port, 24, 10, 10)}
    if ready:
        out["readinessProbe"] = _probe(host, ready, port, 3, 1, None)
    return out


def _proxy_env() -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(os.environ.items()) if k.lower().endswith("_proxy") and v]


class _Volumes:
    def __init__(self) -> None:
        self.volumes: list[dict[str, Any]] = []
        self.mounts: list[dict[str, Any]] = []

    def add(self, name: str, host_path: str, mount_path: str, read_only: bool, path_type: str) -> None:
        if any(v["name"] == name for v in self.volumes):
            return
        hp: dict[str, Any] = {"path": host_path}
        if path_type:
            hp["type"] = path_type
        self.volumes.append({"hostPath": hp, "name": name})
        mount: dict[str, Any] = {"mountPath": mount_path, "name": name}
        if read_only:
            mount["readOnly"] = True
        self.mounts.append(mount)

    def sorted(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return (sorted(self.volumes, key=lambda v: v["name"]), sorted(self.mounts, key=lambda m: m["name"]))


def _common_volumes(cfg: InitConfig, install: PythonInstall, opts: ComponentOptions) -> _Volumes:
    v = _Volumes()
    v.add("ca-certs", "/etc/ssl/certs", "/etc/ssl/certs", True, "DirectoryOrCreate")
    for d in CA_CERT_DIRS:
        if os.path.isdir(d):
            v.add(d.strip("/").replace("/", "-"), d, d, True, "DirectoryOrCreate")
    v.add("k8s-certs", str(cfg.cert_dir), str(cfg.cert_dir), True, "DirectoryOrCreate")
    for name, path in install.mounts():
        v.add(name, str(path), str(path), True, "Directory")
    for m in opts.extra_volumes:
        _extra(v, m)
    return v


def _extra(v: _Volumes, m: HostPathMount) -> None:
    v.add(m.name, m.host_path, m.mount_path, m.read_only, m.path_type)


def static_pod(component: str, image: str, command: list[str], volumes: _Volumes, cpu: str,
               probes: dict[str, Any], env: list[dict[str, Any]], annotations: dict[str, str] | None = None,
               pull_policy: str = "IfNotPresent") -> dict[str, Any]:
    vols, mounts = volumes.sorted()
    container: dict[str, Any] = {"command": command}
    if env:
        container["env"] = env
    container.update({"image": image, "imagePullPolicy": pull_policy, **{k: probes[k] for k in ("livenessProbe",)},
                      "name": component})
    if "readinessProbe" in probes:
        container["readinessProbe"] = probes["readinessProbe"]
    container["resources"] = {"requests": {"cpu": cpu}}
    container["startupProbe"] = probes["startupProbe"]
    container["volumeMounts"] = mounts
    metadata: dict[str, Any] = {}
    if annotations:
        metadata["annotations"] = annotations
    metadata.update({"labels": {"component": component, "tier": "control-plane"}, "name": component,
                     "namespace": "kube-system"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": POD_SECCOMP_PROFILE}},
            "volumes": vols,
        },
        "status": {},
    }


def control_plane_pods(cfg: InitConfig, paths: KubeadmPaths, install: PythonInstall,
                       external_ca: bool = False) -> dict[str, dict[str, Any]]:
    """component name -> Pod, for kube-apiserver, kube-controller-manager and kube-scheduler."""
    env = _proxy_env()
    api = _common_volumes(cfg, install, cfg.api_server)
    api.add("kapal-datastore", str(cfg.datastore_dir), str(cfg.datastore_dir), False, "DirectoryOrCreate")
    cm = _common_volumes(cfg, install, cfg.controller_manager)
    cm_conf = str(paths.kubernetes_dir / "controller-manager.conf")
    cm.add("kubeconfig", cm_conf, cm_conf, True, "FileOrCreate")
    sched = _Volumes()
    for name, path in install.mounts():
        sched.add(name, str(path), str(path), True, "Directory")
    sched_conf = str(paths.kubernetes_dir / "scheduler.conf")
    sched.add("kubeconfig", sched_conf, sched_conf, True, "FileOrCreate")
    for m in cfg.scheduler.extra_volumes:
        _extra(sched, m)
    advertise = cfg.advertise_address
    endpoint = f"[{advertise}]:{cfg.bind_port}" if ":" in advertise else f"{advertise}:{cfg.bind_port}"
    pull = cfg.image_pull_policy
    return {
        KUBE_APISERVER: static_pod(
            KUBE_APISERVER, image_reference(cfg, KUBE_APISERVER),
            ["kapal", "apiserver", *apiserver_args(cfg, cfg.datastore_dir)], api, "250m",
            _probes(advertise, cfg.bind_port, "/livez", "/readyz"), env + cfg.api_server.extra_envs,
            {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": endpoint}, pull),
        KUBE_CONTROLLER_MANAGER: static_pod(
            KUBE_CONTROLLER_MANAGER, image_reference(cfg, KUBE_CONTROLLER_MANAGER),
            ["kapal", "controller-manager", *controller_manager_args(cfg, paths, external_ca)], cm, "200m",
            _probes("127.0.0.1", CONTROLLER_MANAGER_PORT, "/healthz", None), env + cfg.controller_manager.extra_envs,
            None, pull),
        KUBE_SCHEDULER: static_pod(
            KUBE_SCHEDULER, image_reference(cfg, KUBE_SCHEDULER),
            ["kapal", "scheduler", *scheduler_args(cfg, paths)], sched, "100m",
            _probes("127.0.0.1", SCHEDULER_PORT, "/livez", "/readyz"), env + cfg.scheduler.extra_envs, None, pull),
    }


def to_yaml(obj: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def write_manifest(path: Path, pod: dict[str, Any]) -> None:
    """Atomically, 0600 as kubeadm writes them (the kubelet picks up complete files only)."""
    from kapal.kube.pki import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, to_yaml(pod).encode(), 0o600)
