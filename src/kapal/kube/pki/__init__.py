"""Certificates and keys: CAs, serving and client certificates, kubeconfigs, service-account keys.

Names resolve lazily (PEP 562), so `import kapal.kube.pki` costs nothing until a
name is used: `from kapal.kube.pki import new_ca` imports `cryptography` then;
`load_kubeconfig` only imports PyYAML.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "certs": (
        "CertKey", "new_ca", "issue", "load", "load_cert", "load_private_key", "write", "write_cert",
        "write_keypair", "new_private_key", "new_rsa_keypair_pem", "private_key_pem", "private_key_from_pem",
        "spki_sha256", "new_csr", "sign_csr", "common_name", "organizations", "alt_names", "is_ca", "not_after",
        "signed_by",
    ),
    "kubeconfigs": (
        "kubeconfig", "kubeconfig_dict", "load_kubeconfig", "write_kubeconfig", "merge_kubeconfig",
        "KubeconfigEntry", "client_ssl_context", "load_cert_chain_pem",
        "client_credentials", "issue_client_credentials", "ensure_client_kubeconfig",
    ),
    "_files": ("write_atomic",),
    "tls": ("client_context",),
    "hosts": ("host_addresses", "HostAddresses", "primary_ipv4"),
    "bootstraptoken": ("generate_token", "split_token", "BootstrapTokenInfo", "detached_jws", "detached_jws_valid"),
    "kubeadm": ("ClusterPki", "KUBEADM_CERTS", "KubeadmCert", "ensure_pki", "ensure_kubeconfigs",
                "ensure_service_account_keys", "kubeconfig_users", "apiserver_virtual_ip"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kapal.kube.pki' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
