"""Kubeconfig files: write them as kubeadm does, read them back as kubectl does.

Written files embed everything as base64 (`certificate-authority-data`,
`client-certificate-data`, `client-key-data`) and name the context
`<user>@<cluster>`, like kubeadm's admin.conf. Reading follows kubectl's
rules: the current context (or a named one), file references relative to the
kubeconfig's directory, `token` or `tokenFile`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kapal.errors import Invalid, NotFound

from ._files import write_atomic
from .tls import client_context


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def kubeconfig_dict(
    server: str,
    ca_pem: bytes | str,
    user: str,
    *,
    client_cert_pem: bytes | str | None = None,
    client_key_pem: bytes | str | None = None,
    token: str | None = None,
    cluster: str = "kubernetes",
    context: str | None = None,
) -> dict[str, Any]:
    if (client_cert_pem is None) != (client_key_pem is None):
        raise Invalid("a kubeconfig user needs both a client certificate and its key, or neither")
    if client_cert_pem is None and token is None:
        raise Invalid(f"kubeconfig user {user!r} needs a client certificate or a token")
    context = context or f"{user}@{cluster}"
    credentials: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        credentials["client-certificate-data"] = _b64(client_cert_pem)
        credentials["client-key-data"] = _b64(client_key_pem)
    if token is not None:
        credentials["token"] = token
    return {
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": _b64(ca_pem), "server": server}, "name": cluster}],
        "contexts": [{"context": {"cluster": cluster, "user": user}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "preferences": {},
        "users": [{"name": user, "user": credentials}],
    }


def kubeconfig(
    server: str,
    ca_pem: bytes | str,
    user: str,
    *,
    client_cert_pem: bytes | str | None = None,
    client_key_pem: bytes | str | None = None,
    token: str | None = None,
    cluster: str = "kubernetes",
    context: str | None = None,
) -> str:
    """A one-cluster, one-user kubeconfig (YAML) that kubectl and the Python client accept."""
    data = kubeconfig_dict(
        server, ca_pem, user, client_cert_pem=client_cert_pem, client_key_pem=client_key_pem, token=token,
        cluster=cluster, context=context,
    )
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def write_kubeconfig(path: str | os.PathLike[str], text: str) -> None:
    """Atomically, mode 0600 (it holds a private key or a token)."""
    write_atomic(path, text.encode(), 0o600)


def client_credentials(path: str | os.PathLike[str], user: str, organizations: tuple[str, ...],
                       ca_pem: bytes) -> tuple[bytes, bytes] | None:
    """The client certificate and key the kubeconfig at `path` holds for `user` in exactly `organizations`, when the
    CA `ca_pem` issued it and it is valid for a week more; None otherwise (missing, foreign, another CA's)."""
    import datetime as dt

    from cryptography import x509

    from . import certs

    try:
        entry = load_kubeconfig(path)
        if not (entry.client_cert_pem and entry.client_key_pem) or entry.ca_pem != ca_pem:
            return None
        cert = x509.load_pem_x509_certificate(entry.client_cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except (NotFound, Invalid, ValueError, OSError):
        return None
    if (certs.common_name(cert) != user or sorted(certs.organizations(cert)) != sorted(organizations)
            or not certs.signed_by(cert, ca)
            or certs.not_after(cert) < dt.datetime.now(dt.UTC) + dt.timedelta(days=7)):
        return None
    return entry.client_cert_pem, entry.client_key_pem


def issue_client_credentials(ca_cert: str | os.PathLike[str], ca_key: str | os.PathLike[str], user: str,
                             organizations: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A new client certificate (and RSA 2048 key) for `user` in `organizations`, as (cert PEM, key PEM)."""
    from . import certs

    leaf = certs.issue(certs.load(ca_cert, ca_key), user, organizations=organizations, client=True)
    return leaf.cert_pem(), leaf.key_pem()


def ensure_client_kubeconfig(path: str | os.PathLike[str], server: str, ca_cert: str | os.PathLike[str],
                             ca_key: str | os.PathLike[str], user: str, organizations: tuple[str, ...] = (), *,
                             credentials: tuple[bytes, bytes] | None = None, cluster: str = "kapal") -> Path:
    """Write (or keep) `path`: a kubeconfig for `user` at `server` with a client certificate from the CA.

    A certificate already there for the same user and CA is kept, and only a moved server rewritten: a new RSA key
    costs ~40 ms. `credentials` (cert PEM, key PEM) made beforehand are used when there is none to keep.
    """
    path = Path(path)
    ca_pem = Path(ca_cert).read_bytes()
    kept = client_credentials(path, user, organizations, ca_pem)
    if kept is not None:
        with contextlib.suppress(NotFound, Invalid):
            if load_kubeconfig(path).server == server:
                return path
    cert_pem, key_pem = kept or credentials or issue_client_credentials(ca_cert, ca_key, user, organizations)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_kubeconfig(path, kubeconfig(server, ca_pem, user, client_cert_pem=cert_pem, client_key_pem=key_pem,
                                      cluster=cluster))
    return path


def merge_kubeconfig(path: str | os.PathLike[str], text: str, *, set_current: bool = True) -> None:
    """Merge the clusters, users and contexts of `text` into the kubeconfig at `path`.

    Entries with the same name are replaced, all others are kept; the file and
    its directory are created when missing (as `kapal up` does with ~/.kube/config).
    """
    target = Path(path)
    new = _parse(text, "the kubeconfig to merge")
    try:
        old = _parse(target.read_text(), str(target))
    except FileNotFoundError:
        old = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "contexts", "users"):
        entries = {e.get("name"): e for e in (old.get(section) or [])}
        for e in new.get(section) or []:
            entries[e.get("name")] = e
        old[section] = list(entries.values())
    if set_current or not old.get("current-context"):
        old["current-context"] = new.get("current-context", "")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_kubeconfig(target, yaml.safe_dump(old, sort_keys=True, default_flow_style=False))


@dataclass(frozen=True)
class KubeconfigEntry:
    """What one context of a kubeconfig says: where the server is and how to log in."""

    context: str
    cluster: str
    user: str
    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    namespace: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verifies the server with the CA, presents the client certificate if any."""
        return client_ssl_context(self)


def _parse(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Invalid(f"{origin} is not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Invalid(f"{origin} is not a kubeconfig (expected a mapping)")
    return data


def _named(data: dict[str, Any], section: str, name: str, origin: str) -> dict[str, Any]:
    for entry in data.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            key = section[:-1]
            return entry.get(key) or {}
    raise NotFound(f"{section[:-1]} {name!r} is not defined in {origin}")


def _data_or_file(section: dict[str, Any], key: str, base: Path | None, origin: str) -> bytes | None:
    if section.get(f"{key}-data"):
        try:
            return base64.b64decode(section[f"{key}-data"], validate=True)
        except ValueError as e:
            raise Invalid(f"{key}-data in {origin} is not valid base64") from e
    if section.get(key):
        file = Path(section[key])
        if not file.is_absolute() and base is not None:
            file = base / file
        try:
            return file.read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"{key} {file} named in {origin} does not exist") from e
    return None


def load_kubeconfig(path_or_text: str | os.PathLike[str], context: str | None = None) -> KubeconfigEntry:
    """Read one context (the current one unless named) of a kubeconfig file or text.

    A `Path`, or a string without a newline that is not a JSON object, is a file name; anything else is
    the kubeconfig itself (YAML or JSON).
    """
    base: Path | None = None
    is_text = isinstance(path_or_text, str) and ("\n" in path_or_text or path_or_text.lstrip().startswith("{"))
    if not is_text:
        file = Path(path_or_text)
        try:
            text = file.read_text()
        except FileNotFoundError as e:
            raise NotFound(f"kubeconfig {file} does not exist") from e
        origin, base = str(file), file.resolve().parent
    else:
        text, origin = str(path_or_text), "the kubeconfig"
    data = _parse(text, origin)
    name = context or data.get("current-context")
    if not name:
        raise Invalid(f"{origin} has no current-context; name a context")
    ctx = _named(data, "contexts", name, origin)
    cluster_name, user_name = ctx.get("cluster", ""), ctx.get("user", "")
    cluster = _named(data, "clusters", cluster_name, origin)
    user = _named(data, "users", user_name, origin) if user_name else {}
    if not cluster.get("server"):
        raise Invalid(f"cluster {cluster_name!r} in {origin} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_file = Path(user["tokenFile"])
        if not token_file.is_absolute() and base is not None:
            token_file = base / token_file
        token = token_file.read_text().strip()
    return KubeconfigEntry(
        context=name,
        cluster=cluster_name,
        user=user_name,
        server=cluster["server"],
        ca_pem=_data_or_file(cluster, "certificate-authority", base, origin),
        client_cert_pem=_data_or_file(user, "client-certificate", base, origin),
        client_key_pem=_data_or_file(user, "client-key", base, origin),
        token=token or None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        namespace=ctx.get("namespace"),
    )


def client_ssl_context(entry: KubeconfigEntry) -> ssl.SSLContext:
    """An ssl.SSLContext for `entry`: the stdlib needs the client cert and key as files, so they live
    in a private temp file only while being loaded."""
    ctx = client_context(entry.ca_pem, verify=not entry.insecure_skip_tls_verify)
    if entry.client_cert_pem and entry.client_key_pem:
        load_cert_chain_pem(ctx, entry.client_cert_pem, entry.client_key_pem)
    return ctx


def load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl.SSLContext.load_cert_chain from PEM bytes rather than file names."""
    with tempfile.NamedTemporaryFile(prefix="kapal-tls-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        f.flush()
        ctx.load_cert_chain(f.name)
