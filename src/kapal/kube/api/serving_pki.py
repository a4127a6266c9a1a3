"""The files the API server serves and signs with: those its flags name, else made under DATA_DIR/pki when
missing (a CA, the serving certificate, the service-account keys, the kubelet client and admin certificates).

Light on imports (no aiohttp), so `kapal up` makes them in a thread while it imports the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kapal.kube.api.allocator import IPAllocator
from kapal.kube.api.config import ApiServerConfig


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_ca_file: Path
    sa_key_file: Path
    sa_pub_files: list[Path]
    kubelet_client: tuple[Path, Path] | None = None


def ensure_pki(config: ApiServerConfig) -> Pki:
    """Use the files the flags name; create what is missing under DATA_DIR/pki: the CA, then the serving
    certificate, the service-account keys, the kubelet client and (with write_admin_kubeconfig) the admin
    certificate, whose keys are made in parallel threads (OpenSSL releases the GIL; ~40 ms an RSA key)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from kapal.kube import pki

    d = config.pki_dir
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = d / "ca.crt", d / "ca.key"
    client_ca = config.client_ca_file or ca_crt
    ca = None

    def load_ca():
        nonlocal ca
        if ca is None:
            if ca_crt.exists() and ca_key.exists():
                ca = pki.load(ca_crt, ca_key)
            else:
                ca = pki.new_ca("kubernetes", algorithm=config.key_algorithm)
                pki.write(ca, ca_crt, ca_key)
        return ca

    def leaf(cert_path: Path, key_path: Path, common_name: str, **kw: Any) -> None:
        pki.write(pki.issue(load_ca(), common_name, algorithm=config.key_algorithm, **kw), cert_path, key_path)

    def sa_keypair(key_path: Path) -> None:
        private_pem, public_pem = pki.new_rsa_keypair_pem()
        pki.write_keypair(private_pem, public_pem, key_path, d / "sa.pub")

    jobs: list[Future[None]] = []
    with ThreadPoolExecutor(4, thread_name_prefix="kapal-pki") as pool:
        if config.service_account_signing_key_file:
            sa_key = config.service_account_signing_key_file
        else:
            sa_key = d / "sa.key"
            if not sa_key.exists():
                jobs.append(pool.submit(sa_keypair, sa_key))
        if config.tls_cert_file and config.tls_private_key_file:
            cert, key = config.tls_cert_file, config.tls_private_key_file
            ca_file = config.client_ca_file or cert
        else:
            cert, key = d / "apiserver.crt", d / "apiserver.key"
            ca_file = ca_crt
            if not (cert.exists() and key.exists()):
                hosts = pki.host_addresses()
                svc_ip = IPAllocator(config.service_cluster_ip_range).first
                names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         "kubernetes.default.svc.cluster.local", *hosts.names]
                ips = ["127.0.0.1", svc_ip, *[str(ip) for ip in hosts.ips]]
                if config.advertise_address:
                    ips.append(config.advertise_address)
                load_ca()
                jobs.append(pool.submit(leaf, cert, key, "kube-apiserver", dns_names=names, ip_addresses=ips,
                                        server=True))
        if not config.client_ca_file:
            load_ca()
        kubelet_client = None
        if config.kubelet_client_certificate and config.kubelet_client_key:
            kubelet_client = (config.kubelet_client_certificate, config.kubelet_client_key)
        elif ca_key.exists():
            kc, kk = d / "apiserver-kubelet-client.crt", d / "apiserver-kubelet-client.key"
            if not (kc.exists() and kk.exists()):
                load_ca()
                jobs.append(pool.submit(leaf, kc, kk, "kube-apiserver-kubelet-client",
                                        organizations=["kubeadm:cluster-admins"], client=True))
            kubelet_client = (kc, kk)
        admin_crt, admin_key = d / "admin.crt", d / "admin.key"
        if config.write_admin_kubeconfig and ca_crt.exists() and ca_key.exists() and not (
                admin_crt.exists() and admin_key.exists()):
            load_ca()
            jobs.append(pool.submit(leaf, admin_crt, admin_key, "kubernetes-admin", organizations=["system:masters"],
                                    client=True))
        for job in jobs:
            job.result()
    sa_pubs = list(config.service_account_key_files) or [sa_key]
    return Pki(ca_file, cert, key, client_ca, sa_key, sa_pubs, kubelet_client)


def write_admin_kubeconfig(config: ApiServerConfig, port: int) -> Path | None:
    """DATA_DIR/admin.kubeconfig: user kubernetes-admin in system:masters, at https://127.0.0.1:PORT."""
    from kapal.kube import pki

    ca_crt, ca_key = config.pki_dir / "ca.crt", config.pki_dir / "ca.key"
    if not (ca_crt.exists() and ca_key.exists()):
        return None
    path = config.data_dir / "admin.kubeconfig"
    cert_path, key_path = config.pki_dir / "admin.crt", config.pki_dir / "admin.key"
    if cert_path.exists() and key_path.exists():
        admin = pki.load(cert_path, key_path)
    else:
        admin = pki.issue(pki.load(ca_crt, ca_key), "kubernetes-admin", organizations=["system:masters"],
                          client=True)
        pki.write(admin, cert_path, key_path)
    text = pki.kubeconfig(f"https://127.0.0.1:{port}", ca_crt.read_bytes(), "kubernetes-admin",
                          client_cert_pem=admin.cert_pem(), client_key_pem=admin.key_pem(), cluster="kapal",
                          context="kubernetes-admin@kapal")
    pki.write_kubeconfig(path, text)
    return path
