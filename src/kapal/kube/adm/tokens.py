"""kubeadm's bootstrap-token phase and `token create|list|delete`: token Secrets, the RBAC that lets bootstrap
tokens join nodes, and the `cluster-info` ConfigMap in kube-public with a JWS signature per token.

The controller manager's bootstrap signer keeps the signatures in step with the tokens upstream; adm also
signs right away when it creates or deletes a token, so `cluster-info` is usable before the controller
manager runs (the signatures are the same bytes either way).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kapal.errors import AlreadyExists, Invalid
from kapal.kube.pki import bootstraptoken as bt

from .apiclient import ApiClient
from .config import BootstrapToken
from .constants import BOOTSTRAP_GROUP, CLUSTER_INFO, NODES_GROUP
from .tabular import rfc3339, short_human_duration, tabwrite

Out = Callable[[str], None]
RBAC = "rbac.authorization.k8s.io/v1"


def token_info(token: BootstrapToken, now: dt.datetime | None = None) -> bt.BootstrapTokenInfo:
    token_id, secret = bt.split_token(token.token)
    expires = token.expires
    if expires is None and token.ttl:
        expires = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=token.ttl)
    return bt.BootstrapTokenInfo(token_id, secret, token.description, expires, tuple(token.usages),
                                 tuple(token.groups))


def create_tokens(client: ApiClient, tokens: list[BootstrapToken], fail_if_exists: bool) -> None:
    """kubeadm's UpdateOrCreateTokens (fail_if_exists=False) and CreateNewTokens (True)."""
    for token in tokens:
        secret = token_info(token).to_secret()
        if fail_if_exists:
            try:
                client.create(secret)
            except AlreadyExists:
                raise AlreadyExists(f'a token with id "{token.token_id}" already exists') from None
        else:
            client.create_or_update(secret)


def _crb(name: str, role: str, group: str) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]}


def bootstrap_rbac(client: ApiClient, out: Out) -> None:
    """The ClusterRoles and bindings kubeadm's bootstrap-token phase creates."""
    client.create_or_update({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "kubeadm:get-nodes"},
                             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})
    client.create_or_update(_crb("kubeadm:get-nodes", "kubeadm:get-nodes", BOOTSTRAP_GROUP))
    out("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes")
    client.create_or_update(_crb("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", BOOTSTRAP_GROUP))
    out("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes "
        "to get long term certificate credentials")
    client.create_or_update(_crb("kubeadm:node-autoapprove-bootstrap",
                                 "system:certificates.k8s.io:certificatesigningrequests:nodeclient", BOOTSTRAP_GROUP))
    out("[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs "
        "from a Node Bootstrap Token")
    client.create_or_update(_crb("kubeadm:node-autoapprove-certificate-rotation",
                                 "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", NODES_GROUP))
    out("[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates "
        "in the cluster")


def cluster_info_kubeconfig(admin_conf: Path) -> str:
    """The admin kubeconfig's cluster (CA + server) under the empty name, nothing else: what joining nodes read."""
    import yaml

    data = yaml.safe_load(admin_conf.read_text())
    current = next(c for c in data["contexts"] if c["name"] == data["current-context"])
    cluster = next(c for c in data["clusters"] if c["name"] == current["context"]["cluster"])
    doc = {"apiVersion": "v1", "clusters": [{"cluster": cluster["cluster"], "name": ""}], "contexts": None,
           "current-context": "", "kind": "Config", "preferences": {}, "users": None}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def create_cluster_info(client: ApiClient, admin_conf: Path, out: Out) -> None:
    out(f'[bootstrap-token] Creating the "{CLUSTER_INFO}" ConfigMap in the "kube-public" namespace')
    client.create_if_not_exists({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": CLUSTER_INFO, "namespace": "kube-public"},
                                 "data": {"kubeconfig": cluster_info_kubeconfig(admin_conf)}})
    name = "kubeadm:bootstrap-signer-clusterinfo"
    client.create_if_not_exists({"apiVersion": RBAC, "kind": "Role",
                                 "metadata": {"name": name, "namespace": "kube-public"},
                                 "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                            "resourceNames": [CLUSTER_INFO], "verbs": ["get"]}]})
    client.create_if_not_exists({"apiVersion": RBAC, "kind": "RoleBinding",
                                 "metadata": {"name": name, "namespace": "kube-public"},
                                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                                 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                               "name": "system:anonymous"}]})


def list_token_secrets(client: ApiClient) -> list[dict[str, Any]]:
    return client.list("/api/v1/namespaces/kube-system/secrets", field_selector=f"type={bt.SECRET_TYPE}")


def expected_signatures(kubeconfig: str, secrets: list[dict[str, Any]],
                        now: dt.datetime | None = None) -> dict[str, str]:
    """jws-kubeconfig-<id> for every valid, unexpired token with the signing usage (the bootstrap signer's rule)."""
    out = {}
    for s in secrets:
        try:
            info = bt.from_secret(s)
        except Invalid:
            continue
        if "signing" in info.usages and not info.expired(now) and not (s.get("metadata") or {}).get(
                "deletionTimestamp"):
            out[bt.JWS_PREFIX + info.token_id] = bt.detached_jws(kubeconfig, info.token_id, info.secret)
    return out


def sign_cluster_info(client: ApiClient) -> bool:
    """Bring cluster-info's signatures in line with the token Secrets; True when it changed."""
    path = f"/api/v1/namespaces/kube-public/configmaps/{CLUSTER_INFO}"
    for _ in range(5):
        cm = client.get(path)
        if cm is None:
            return False
        data = dict(cm.get("data") or {})
        wanted = expected_signatures(data.get("kubeconfig", ""), list_token_secrets(client))
        current = {k: v for k, v in data.items() if k.startswith(bt.JWS_PREFIX)}
        if current == wanted:
            return False
        new = {k: v for k, v in data.items() if not k.startswith(bt.JWS_PREFIX)} | wanted
        cm["data"] = new
        try:
            client.request("PUT", path, cm)
            return True
        except Exception as e:  # a concurrent signer won: read again
            from kapal.errors import Conflict

            if not isinstance(e, Conflict):
                raise
    return False


def token_table(secrets: list[dict[str, Any]], now: dt.datetime | None = None,
                warn: Out = lambda _m: None) -> str:
    """kubeadm token list's table."""
    now = now or dt.datetime.now(dt.UTC)
    lines = ["TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS"]
    for s in secrets:
        try:
            info = bt.from_secret(s)
        except Invalid as e:
            warn(str(e))
            continue
        ttl, expires = "<forever>", "<never>"
        if info.expires is not None:
            ttl = short_human_duration((info.expires - now).total_seconds())
            expires = rfc3339(info.expires)
        lines.append("\t".join([info.token, ttl, expires, ",".join(info.usages) or "<none>",
                                info.description or "<none>", ",".join(info.groups) or "<none>"]))
    return tabwrite(lines)


def join_command(endpoint: str, token: str, ca_hash: str, one_line: bool = False) -> str:
    """`kapal adm join` for a worker, laid out as kubeadm prints its join line."""
    if one_line:
        return f"kapal adm join {endpoint} --token {token} --discovery-token-ca-cert-hash {ca_hash} "
    return f"kapal adm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {ca_hash} "


def ca_cert_hash(cert_dir: Path) -> str:
    from kapal.kube.pki import load_cert, spki_sha256

    return spki_sha256(load_cert(cert_dir / "ca.crt"))
