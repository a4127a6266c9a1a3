"""The kubelet's client identity: a certificate for system:node:<name> in group system:nodes, and its kubeconfig.

What kubeadm's kubelet.conf holds, made directly from the cluster CA's files (kapal up, tests). Reused
when a valid one for the same node and server is already there.
"""

from __future__ import annotations

from pathlib import Path


def node_kubeconfig(ca_cert: Path, ca_key: Path, server: str, node: str, out: Path) -> Path:
    """Write (or keep) `out`: a kubeconfig for user system:node:<node> at `server`, signed by the CA."""
    from kapal.kube import pki

    if out.exists():
        try:
            entry = pki.load_kubeconfig(out)
            if entry.server == server and entry.client_cert_pem:
                from cryptography import x509

                cert = x509.load_pem_x509_certificate(entry.client_cert_pem)
                if pki.common_name(cert) == f"system:node:{node}":
                    return out
        except Exception:  # unreadable or foreign: write a fresh one
            pass
    ca = pki.load(ca_cert, ca_key)
    cert = pki.issue(ca, f"system:node:{node}", organizations=["system:nodes"], client=True)
    text = pki.kubeconfig(server, ca_cert.read_bytes(), f"system:node:{node}", client_cert_pem=cert.cert_pem(),
                          client_key_pem=cert.key_pem(), cluster="kapal", context=f"system:node:{node}@kapal")
    out.parent.mkdir(parents=True, exist_ok=True)
    pki.write_kubeconfig(out, text)
    return out
