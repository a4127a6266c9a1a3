"""The kubelet's client identity: a certificate for system:node:<name> in group system:nodes, and its kubeconfig.

What kubeadm's kubelet.conf holds, made directly from the cluster CA's files (kapal up, tests). Reused
when one for the same node and CA is already there (only a moved server is rewritten).
"""

from __future__ import annotations

from pathlib import Path

NODES_GROUP = ("system:nodes",)


def node_user(node: str) -> str:
    return f"system:node:{node}"


def node_kubeconfig(ca_cert: Path, ca_key: Path, server: str, node: str, out: Path, *,
                    credentials: tuple[bytes, bytes] | None = None) -> Path:
    """Write (or keep) `out`: a kubeconfig for user system:node:<node> at `server`, signed by the CA."""
    from kapal.kube import pki

    return pki.ensure_client_kubeconfig(out, server, ca_cert, ca_key, node_user(node), NODES_GROUP,
                                        credentials=credentials)
