"""kubeadm's certificate tree and kubeconfig users, as data, and the code that writes them.

The catalogue is what kubeadm 1.33 creates in /etc/kubernetes/pki (file names,
subjects, usages, SANs), and the five kubeconfigs in /etc/kubernetes. A CA
already on disk is reused; a leaf already on disk is reused when its CA signed
it and it carries the SANs asked for, and refused otherwise, as kubeadm does.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kapal.errors import Conflict, FailedPrecondition, Invalid, NotFound

from . import certs
from .certs import CertKey
from .kubeconfigs import kubeconfig, load_kubeconfig, write_kubeconfig

ADMINS_GROUP = "kubeadm:cluster-admins"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"


@dataclass(frozen=True)
class KubeadmCert:
    """One certificate of the tree. `ca` is the base name of its signer; None means it is a CA.
    An empty `common_name` means the node name (etcd server and peer)."""

    name: str
    base_name: str
    ca: str | None
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    alt_names: str = ""  # "", "apiserver", "etcd-server" or "etcd-peer"


KUBEADM_CERTS: tuple[KubeadmCert, ...] = (
    KubeadmCert("ca", "ca", None, "kubernetes"),
    KubeadmCert("apiserver", "apiserver", "ca", "kube-apiserver", server=True, alt_names="apiserver"),
    KubeadmCert("apiserver-kubelet-client", "apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
                (ADMINS_GROUP,), client=True),
    KubeadmCert("front-proxy-ca", "front-proxy-ca", None, "front-proxy-ca"),
    KubeadmCert("front-proxy-client", "front-proxy-client", "front-proxy-ca", "front-proxy-client", client=True),
    KubeadmCert("etcd-ca", "etcd/ca", None, "etcd-ca"),
    KubeadmCert("etcd-server", "etcd/server", "etcd/ca", "", server=True, client=True, alt_names="etcd-server"),
    KubeadmCert("etcd-peer", "etcd/peer", "etcd/ca", "", server=True, client=True, alt_names="etcd-peer"),
    KubeadmCert("etcd-healthcheck-client", "etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client",
                client=True),
    KubeadmCert("apiserver-etcd-client", "apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client",
                client=True),
)
ETCD_CERTS = frozenset(c.name for c in KUBEADM_CERTS if "etcd" in c.name)


@dataclass(frozen=True)
class KubeconfigUser:
    file: str
    user: str
    organizations: tuple[str, ...]
    local_endpoint: bool  # controller-manager and scheduler talk to their own node's API server


def kubeconfig_users(node_name: str) -> tuple[KubeconfigUser, ...]:
    return (
        KubeconfigUser("admin.conf", "kubernetes-admin", (ADMINS_GROUP,), False),
        KubeconfigUser("super-admin.conf", "kubernetes-super-admin", (MASTERS_GROUP,), False),
        KubeconfigUser("kubelet.conf", f"system:node:{node_name}", (NODES_GROUP,), False),
        KubeconfigUser("controller-manager.conf", "system:kube-controller-manager", (), True),
        KubeconfigUser("scheduler.conf", "system:kube-scheduler", (), True),
    )


@dataclass(frozen=True)
class ClusterPki:
    """The inputs kubeadm's certs and kubeconfig phases read from its InitConfiguration."""

    node_name: str
    advertise_address: str
    bind_port: int = 6443
    service_subnet: str = "10.96.0.0/12"
    dns_domain: str = "cluster.local"
    control_plane_endpoint: str = ""
    apiserver_cert_sans: tuple[str, ...] = ()
    etcd_server_cert_sans: tuple[str, ...] = ()
    etcd_peer_cert_sans: tuple[str, ...] = ()
    local_etcd: bool = True

    def control_plane_url(self) -> str:
        return _url(self.control_plane_endpoint or self._local(), self.bind_port)

    def local_url(self) -> str:
        return _url(self._local(), self.bind_port)

    def _local(self) -> str:
        return self.advertise_address


def _url(endpoint: str, default_port: int) -> str:
    host, port = endpoint, str(default_port)
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        port = rest.lstrip(":") or port
    elif endpoint.count(":") == 1:
        host, port = endpoint.split(":")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def apiserver_virtual_ip(service_subnet: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The first address of the (first) service subnet: the `kubernetes` Service's ClusterIP."""
    first = service_subnet.split(",")[0].strip()
    try:
        return ipaddress.ip_network(first, strict=False)[1]
    except (ValueError, IndexError) as e:
        raise Invalid(f"service subnet {service_subnet!r} is not a CIDR with room for the API server's IP") from e


def _split_sans(sans: tuple[str, ...]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for san in sans:
        try:
            ips.append(str(ipaddress.ip_address(san)))
        except ValueError:
            dns.append(san)
    return dns, ips


def alt_names(cert: KubeadmCert, cfg: ClusterPki) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) kubeadm puts into `cert` for this cluster."""
    try:
        ipaddress.ip_address(cfg.advertise_address)
    except ValueError as e:
        raise Invalid(f"advertise address {cfg.advertise_address!r} is not an IP address") from e
    if cert.alt_names == "apiserver":
        dns = [cfg.node_name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               f"kubernetes.default.svc.{cfg.dns_domain}"]
        ips = [str(apiserver_virtual_ip(cfg.service_subnet)), cfg.advertise_address]
        if cfg.control_plane_endpoint:
            host = _url(cfg.control_plane_endpoint, cfg.bind_port)[len("https://"):].rsplit(":", 1)[0].strip("[]")
            more_dns, more_ips = _split_sans((host,))
            dns += more_dns
            ips += more_ips
        more_dns, more_ips = _split_sans(cfg.apiserver_cert_sans)
        return dns + more_dns, ips + more_ips
    if cert.alt_names in ("etcd-server", "etcd-peer"):
        extra = cfg.etcd_server_cert_sans if cert.alt_names == "etcd-server" else cfg.etcd_peer_cert_sans
        more_dns, more_ips = _split_sans(extra)
        return [cfg.node_name, "localhost", *more_dns], [cfg.advertise_address, "127.0.0.1", "::1", *more_ips]
    return [], []


def _paths(cert_dir: Path, base_name: str) -> tuple[Path, Path]:
    return cert_dir / f"{base_name}.crt", cert_dir / f"{base_name}.key"


def _has_sans(cert, dns: list[str], ips: list[str]) -> bool:
    have_dns, have_ips = certs.alt_names(cert)
    return set(dns) <= set(have_dns) and {ipaddress.ip_address(i) for i in ips} <= set(have_ips)


Emit = Callable[[str], None]


def _ensure_ca(spec: KubeadmCert, cert_dir: Path, emit: Emit) -> CertKey | None:
    """Load or create a CA; None when only its certificate is present (external CA mode)."""
    crt, key = _paths(cert_dir, spec.base_name)
    if crt.exists():
        cert = certs.load_cert(crt)
        if not certs.is_ca(cert):
            raise Conflict(f"certificate {crt} is not a CA; move it away or use another --cert-dir")
        emit(f"[certs] Using existing {spec.name} certificate authority")
        if not key.exists():
            emit(f"[certs] External {spec.name} mode: {key} is missing, so every certificate it signs must exist")
            return None
        return certs.load(crt, key)
    if key.exists():
        raise Conflict(f"{key} exists without {crt}; remove the key or provide the certificate")
    emit(f'[certs] Generating "{spec.name}" certificate and key')
    ca = certs.new_ca(spec.common_name)
    certs.write(ca, crt, key)
    return ca


def _ensure_leaf(spec: KubeadmCert, ca: CertKey | None, ca_cert, cfg: ClusterPki, cert_dir: Path, emit: Emit) -> None:
    crt, key = _paths(cert_dir, spec.base_name)
    dns, ips = alt_names(spec, cfg)
    if crt.exists() or key.exists():
        existing = certs.load(crt, key)
        if not certs.signed_by(existing.cert, ca_cert):
            raise Conflict(f"certificate {crt} is not signed by the {spec.ca} CA; remove it to have it regenerated")
        if not _has_sans(existing.cert, dns, ips):
            raise Conflict(f"certificate {crt} exists but lacks the SANs {dns + ips}; remove it to regenerate it")
        emit(f"[certs] Using existing {spec.name} certificate and key on disk")
        return
    if ca is None:
        raise FailedPrecondition(f"{crt} is missing and the {spec.ca} CA key is not there to sign it")
    emit(f'[certs] Generating "{spec.name}" certificate and key')
    common_name = spec.common_name or cfg.node_name
    leaf = certs.issue(ca, common_name, organizations=spec.organizations, dns_names=dns, ip_addresses=ips,
                       server=spec.server, client=spec.client)
    if spec.alt_names:
        shown_dns, shown_ips = certs.alt_names(leaf.cert)
        emit(f"[certs] {spec.name} serving cert is signed for DNS names [{' '.join(shown_dns)}] "
             f"and IPs [{' '.join(str(i) for i in shown_ips)}]")
    certs.write(leaf, crt, key)


def ensure_service_account_keys(cert_dir: str | os.PathLike[str], emit: Emit = lambda _: None) -> None:
    """sa.key and sa.pub: kept when present (the key must parse), created otherwise."""
    key, pub = Path(cert_dir) / "sa.key", Path(cert_dir) / "sa.pub"
    if key.exists():
        certs.load_private_key(key)
        emit('[certs] Using the existing "sa" key')
        if not pub.exists():
            raise NotFound(f"{pub} is missing next to {key}; remove both to regenerate them")
        return
    emit('[certs] Generating "sa" key and public key')
    private_pem, public_pem = certs.new_rsa_keypair_pem()
    certs.write_keypair(private_pem, public_pem, key, pub)


def ensure_pki(cfg: ClusterPki, cert_dir: str | os.PathLike[str], emit: Emit = lambda _: None,
               only: frozenset[str] | None = None) -> None:
    """kubeadm's `init phase certs all`: every CA and leaf of KUBEADM_CERTS, then sa.key/sa.pub.

    `only` restricts to kubeadm certificate names (e.g. {"apiserver"} for `phase certs apiserver`).
    """
    root = Path(cert_dir)
    emit(f'[certs] Using certificateDir folder "{root}"')
    specs = [c for c in KUBEADM_CERTS if cfg.local_etcd or c.name not in ETCD_CERTS]
    cas: dict[str, CertKey | None] = {}
    ca_certs = {}
    for spec in specs:
        wanted = only is None or spec.name in only
        if spec.ca is None:
            needed = wanted or (only is not None and any(s.ca == spec.base_name and s.name in only for s in specs))
            if needed:
                cas[spec.base_name] = _ensure_ca(spec, root, emit if wanted else (lambda _: None))
                ca_certs[spec.base_name] = certs.load_cert(_paths(root, spec.base_name)[0])
            continue
        if wanted:
            _ensure_leaf(spec, cas[spec.ca], ca_certs[spec.ca], cfg, root, emit)
    if only is None or "sa" in only:
        ensure_service_account_keys(root, emit)


def ensure_kubeconfigs(cfg: ClusterPki, cert_dir: str | os.PathLike[str], kube_dir: str | os.PathLike[str],
                       emit: Emit = lambda _: None, only: frozenset[str] | None = None) -> None:
    """kubeadm's `init phase kubeconfig all`: admin, super-admin, kubelet, controller-manager, scheduler.

    An existing file is kept when it points at the same CA and server, and refused otherwise.
    """
    ca = certs.load(*_paths(Path(cert_dir), "ca"))
    ca_pem = ca.cert_pem()
    emit(f'[kubeconfig] Using kubeconfig folder "{kube_dir}"')
    for u in kubeconfig_users(cfg.node_name):
        if only is not None and u.file.removesuffix(".conf") not in only:
            continue
        path = Path(kube_dir) / u.file
        server = cfg.local_url() if u.local_endpoint else cfg.control_plane_url()
        if path.exists():
            entry = load_kubeconfig(path)
            if entry.ca_pem is None or certs.spki_sha256(entry.ca_pem) != certs.spki_sha256(ca.cert):
                raise Conflict(f"a kubeconfig file {path} exists already but has got the wrong CA cert")
            if entry.server != server:
                raise Conflict(f"a kubeconfig file {path} exists already but has got the wrong API server URL "
                               f"{entry.server} (expected {server})")
            emit(f'[kubeconfig] Using existing kubeconfig file: "{path}"')
            continue
        emit(f'[kubeconfig] Writing "{u.file}" kubeconfig file')
        leaf = certs.issue(ca, u.user, organizations=u.organizations, client=True)
        text = kubeconfig(server, ca_pem, u.user, client_cert_pem=leaf.cert_pem(), client_key_pem=leaf.key_pem())
        write_kubeconfig(path, text)
