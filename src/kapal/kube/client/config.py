"""How a component reaches the API server: where, how to verify it, and who it is (client-go's rest.Config).

Built once from a kubeconfig entry at the edge (`from_kubeconfig(kapal.kube.pki.load_kubeconfig(path))`; the
client does not read files itself, pki sits beside it in the layers), or from a token for per-controller service-account
identities (`with_token`): the TLS context then carries only the CA, never the component's own client certificate,
so the server authenticates the request by its bearer token.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


class KubeconfigContext(Protocol):
    """What one kubeconfig context says (kapal.kube.pki.KubeconfigEntry has this shape)."""

    server: str
    token: str | None
    ca_pem: bytes | None
    insecure_skip_tls_verify: bool
    tls_server_name: str | None
    namespace: str | None

    def ssl_context(self) -> ssl.SSLContext: ...


@dataclass(frozen=True)
class ClientConfig:
    server: str
    ssl_context: ssl.SSLContext | None = None
    token: str | None = None
    user_agent: str = "kapal"
    qps: float = 0.0  # 0: no client-side throttling
    burst: int = 0
    ca_pem: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"

    @classmethod
    def from_kubeconfig(cls, entry: KubeconfigContext, **kw: Any) -> ClientConfig:
        return cls(server=entry.server.rstrip("/"), ssl_context=entry.ssl_context() if entry.server.startswith(
            "https") else None, token=entry.token, ca_pem=entry.ca_pem, insecure=entry.insecure_skip_tls_verify,
            tls_server_name=entry.tls_server_name, namespace=entry.namespace or "default", **kw)

    def with_token(self, token: str, user_agent: str | None = None) -> ClientConfig:
        """The same server and CA, authenticated by `token` alone (no client certificate)."""
        return replace(self, token=token, ssl_context=self.ca_only_ssl(), user_agent=user_agent or self.user_agent)

    def ca_only_ssl(self) -> ssl.SSLContext | None:
        if not self.server.startswith("https"):
            return None
        if self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        # the CA alone, as client-go: create_default_context() would parse the system's bundle first (~20 ms)
        return ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
