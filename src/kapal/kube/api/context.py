"""Everything a request handler needs, built once per server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kapal.kube.api.admission import Admission
from kapal.kube.api.authn import Authenticator
from kapal.kube.api.authz import Authorizer
from kapal.kube.api.cache import WatchCache
from kapal.kube.api.config import ApiServerConfig
from kapal.kube.api.metrics import Metrics
from kapal.kube.api.store import ObjectStore
from kapal.kube.api.tokens import Signer
from kapal.kube.meta.resources import ResourceType
from kapal.kube.storage import Backend

if TYPE_CHECKING:
    import ssl


@dataclass
class ApiContext:
    config: ApiServerConfig
    backend: Backend
    cache: WatchCache
    store: ObjectStore
    authenticator: Authenticator
    authorizer: Authorizer
    admission: Admission
    metrics: Metrics
    signer: Signer | None = None
    kubelet_ssl: ssl.SSLContext | None = None
    advertise_address: str = "127.0.0.1"
    port: int = 0
    ready: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Awaited after each stored create (e.g. a new namespace gets its `default` ServiceAccount at once).
    after_create: list[Callable[[ResourceType, dict[str, Any]], Awaitable[None]]] = field(default_factory=list)
