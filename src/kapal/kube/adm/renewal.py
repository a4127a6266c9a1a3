"""`kapal adm certs check-expiration` and `certs renew <name>|all`, as kubeadm's renewal manager does them.

The certificates are the PKI's leaves and the client certificates embedded in admin.conf, super-admin.conf,
controller-manager.conf and scheduler.conf (kubelet.conf is the kubelet's to rotate). A renewal keeps the
certificate's subject, SANs and usages, with a new key and a fresh year, signed by the CA on disk. When a CA's
key is absent the CA is "externally managed": its certificates are listed but cannot be renewed here.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kapal.errors import Invalid

from .tabular import short_human_duration, tabwrite

Out = Callable[[str], None]


@dataclass(frozen=True)
class Renewable:
    name: str
    long_name: str
    ca: str  # the CA's base name
    file: str  # the cert's base name under the cert dir, or the kubeconfig's file name
    kubeconfig: bool = False


CERTIFICATES: tuple[Renewable, ...] = (
    Renewable("admin.conf", "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
              "ca", "admin.conf", True),
    Renewable("apiserver", "certificate for serving the Kubernetes API", "ca", "apiserver"),
    Renewable("apiserver-kubelet-client", "certificate for the API server to connect to kubelet", "ca",
              "apiserver-kubelet-client"),
    Renewable("controller-manager.conf", "certificate embedded in the kubeconfig file for the controller manager to "
              "use", "ca", "controller-manager.conf", True),
    Renewable("front-proxy-client", "certificate for the front proxy client", "front-proxy-ca", "front-proxy-client"),
    Renewable("scheduler.conf", "certificate embedded in the kubeconfig file for the scheduler manager to use", "ca",
              "scheduler.conf", True),
    Renewable("super-admin.conf", "certificate embedded in the kubeconfig file for the super-admin", "ca",
              "super-admin.conf", True),
)
CAS = ("ca", "front-proxy-ca")


def _kubeconfig_cert(path: Path):
    from cryptography import x509

    from kapal.kube.pki import load_kubeconfig

    entry = load_kubeconfig(path)
    if not entry.client_cert_pem:
        raise Invalid(f"{path} has no embedded client certificate")
    return x509.load_pem_x509_certificate(entry.client_cert_pem)


def _read(cert: Renewable, cert_dir: Path, kube_dir: Path):
    from kapal.kube.pki import load_cert

    if cert.kubeconfig:
        path = kube_dir / cert.file
        return _kubeconfig_cert(path) if path.exists() else None
    path = cert_dir / f"{cert.file}.crt"
    return load_cert(path) if path.exists() else None


def externally_managed(cert_dir: Path, ca: str) -> bool:
    return (cert_dir / f"{ca}.crt").exists() and not (cert_dir / f"{ca}.key").exists()


def _expiry(not_after: dt.datetime, now: dt.datetime) -> tuple[str, str]:
    return not_after.strftime("%b %d, %Y %H:%M UTC"), short_human_duration((not_after - now).total_seconds())


def expiration_table(cert_dir: Path, kube_dir: Path, now: dt.datetime | None = None) -> str:
    from kapal.kube.pki import load_cert, not_after

    now = now or dt.datetime.now(dt.UTC)
    yes_no = {True: "yes", False: "no"}
    lines = ["CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED"]
    for c in CERTIFICATES:
        cert = _read(c, cert_dir, kube_dir)
        if cert is None:
            lines.append(f"!MISSING! {c.name}\t\t\t\t")
            continue
        expires, residual = _expiry(not_after(cert), now)
        lines.append(f"{c.name}\t{expires}\t{residual}\t{c.ca}\t{yes_no[externally_managed(cert_dir, c.ca)]:<8}")
    lines.append("")
    lines.append("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
    for ca in CAS:
        path = cert_dir / f"{ca}.crt"
        if not path.exists():
            lines.append(f"!MISSING! {ca}\t\t\t")
            continue
        expires, residual = _expiry(not_after(load_cert(path)), now)
        lines.append(f"{ca}\t{expires}\t{residual}\t{yes_no[externally_managed(cert_dir, ca)]:<8}")
    return tabwrite(lines)


def find(name: str) -> Renewable:
    for c in CERTIFICATES:
        if c.name == name:
            return c
    raise Invalid(f"{name} is not a valid certificate for this cluster (valid: "
                  f"{', '.join(c.name for c in CERTIFICATES)}, all)")


def renew(cert: Renewable, cert_dir: Path, kube_dir: Path, out: Out) -> bool:
    """Renew one certificate in place; False when it is missing or its CA is external (a line says which)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from kapal.kube.pki import alt_names, common_name, issue, load, organizations, write, write_kubeconfig

    existing = _read(cert, cert_dir, kube_dir)
    if existing is None:
        out(f"MISSING! {cert.long_name}")
        return False
    if externally_managed(cert_dir, cert.ca):
        out(f"Detected external {cert.ca}, {cert.long_name} can't be renewed")
        return False
    ca = load(cert_dir / f"{cert.ca}.crt", cert_dir / f"{cert.ca}.key")
    try:
        usages = existing.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = []
    dns, ips = alt_names(existing)
    leaf = issue(ca, common_name(existing), organizations=organizations(existing), dns_names=dns, ip_addresses=ips,
                 server=ExtendedKeyUsageOID.SERVER_AUTH in usages, client=ExtendedKeyUsageOID.CLIENT_AUTH in usages)
    if cert.kubeconfig:
        import yaml

        path = kube_dir / cert.file
        data = yaml.safe_load(path.read_text())
        current = next(c for c in data["contexts"] if c["name"] == data["current-context"])
        user = next(u for u in data["users"] if u["name"] == current["context"]["user"])
        user["user"]["client-certificate-data"] = base64.b64encode(leaf.cert_pem()).decode()
        user["user"]["client-key-data"] = base64.b64encode(leaf.key_pem()).decode()
        write_kubeconfig(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        write(leaf, cert_dir / f"{cert.file}.crt", cert_dir / f"{cert.file}.key")
    out(f"{cert.long_name} renewed")
    return True


def renew_all(cert_dir: Path, kube_dir: Path, out: Out) -> None:
    for c in CERTIFICATES:
        renew(c, cert_dir, kube_dir, out)
    out("\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager and "
        "kube-scheduler, so that they can use the new certificates.")
