"""A small synchronous Kubernetes client for `kapal adm`: one kubeconfig, JSON in and out, kubeadm's helpers.

The phases run once, in order, from a CLI: blocking HTTP keeps them simple and keeps asyncio out of `adm`.
`DryRunClient` answers the same calls without a server, printing kubeadm's `[dryrun] Would perform action …`
lines instead.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kapal import errors

_PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps", "Role": "roles", "RoleBinding": "rolebindings",
            "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Node": "nodes",
            "ServiceAccount": "serviceaccounts", "Service": "services", "Deployment": "deployments",
            "DaemonSet": "daemonsets", "Pod": "pods"}


def resource_path(obj: dict[str, Any], name: str | None = None) -> str:
    """The collection path of `obj` (or the item path when `name` is given)."""
    api = obj["apiVersion"]
    plural = _PLURALS[obj["kind"]]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    ns = (obj.get("metadata") or {}).get("namespace")
    path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def _error(status: int, body: bytes, what: str) -> errors.KapalError:
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:300]
    cls = {404: errors.NotFound, 409: errors.AlreadyExists, 400: errors.Invalid, 422: errors.Invalid,
           401: errors.Unauthorized, 403: errors.Forbidden, 503: errors.Temporary}.get(status, errors.KapalError)
    if status == 409 and "the object has been modified" in message:
        cls = errors.Conflict
    return cls(f"{what}: {message}")


class ApiClient:
    def __init__(self, kubeconfig: Path | str, timeout: float = 10.0) -> None:
        from kapal.kube.pki import client_ssl_context, load_kubeconfig

        self.kubeconfig = Path(kubeconfig)
        entry = load_kubeconfig(self.kubeconfig)
        self.server = entry.server
        self.user = entry.user
        url = urllib.parse.urlsplit(entry.server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.ssl: ssl.SSLContext = client_ssl_context(entry)
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                params: dict[str, str] | None = None) -> Any:
        if params:
            path += "?" + urllib.parse.urlencode(params)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers={"Content-Type": content_type,
                                                            "Accept": "application/json",
                                                            "User-Agent": "kapal-adm"})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise errors.Temporary(f"{method} {self.server}{path}: {e}") from e
        finally:
            conn.close()
        if resp.status >= 400:
            raise _error(resp.status, raw, f"{method} {path}")
        if "json" not in (resp.getheader("Content-Type") or ""):
            return raw.decode(errors="replace")
        return json.loads(raw) if raw else {}

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path)
        except errors.NotFound:
            return None

    def list(self, path: str, field_selector: str = "", label_selector: str = "") -> list[dict[str, Any]]:
        params = {k: v for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector)) if v}
        return list(self.request("GET", path, params=params or None).get("items") or [])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", resource_path(obj), obj)

    def create_if_not_exists(self, obj: dict[str, Any]) -> None:
        try:
            self.create(obj)
        except errors.AlreadyExists:
            pass

    def create_or_update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """kubeadm's CreateOrUpdate*: create, or replace what is there (keeping its resourceVersion)."""
        for _ in range(5):
            try:
                return self.create(obj)
            except errors.AlreadyExists:
                pass
            path = resource_path(obj, obj["metadata"]["name"])
            live = self.get(path)
            if live is None:
                continue
            update = json.loads(json.dumps(obj))
            update["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            try:
                return self.request("PUT", path, update)
            except (errors.Conflict, errors.NotFound):
                continue
        raise errors.Conflict(f"{obj['kind']} {obj['metadata']['name']} kept changing; try again")

    def patch(self, path: str, patch: dict[str, Any], kind: str = "strategic") -> dict[str, Any]:
        content_type = {"strategic": "application/strategic-merge-patch+json",
                        "merge": "application/merge-patch+json"}[kind]
        return self.request("PATCH", path, patch, content_type)

    def delete(self, path: str) -> bool:
        try:
            self.request("DELETE", path)
            return True
        except errors.NotFound:
            return False

    def healthy(self, path: str = "/livez") -> bool:
        try:
            self.request("GET", path)
            return True
        except errors.KapalError:
            return False


class DryRunClient(ApiClient):
    """No server: reads find nothing, writes are printed the way kubeadm's dry-run client prints them."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.server = "https://dry-run"
        self.user = "dry-run"
        self.kubeconfig = Path("/dev/null")

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                params: dict[str, str] | None = None) -> Any:
        action = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "PATCH", "DELETE": "DELETE", "GET": "GET"}[method]
        parts = path.strip("/").split("/")
        group = "core/v1" if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
        resource = parts[-1] if method == "POST" else parts[-2] if len(parts) > 2 else parts[-1]
        if method == "GET":
            raise errors.NotFound(f"{path} (dry run: nothing exists)")
        self.out(f'[dryrun] Would perform action {action} on resource "{resource}" in API group "{group}"')
        if isinstance(body, dict):
            meta = body.get("metadata") or {}
            name = meta.get("name") or parts[-1]
            self.out(f"[dryrun] Attached object:\n\tname: {name}" + (f"\n\tnamespace: {meta['namespace']}"
                                                                       if meta.get("namespace") else ""))
        return body if isinstance(body, dict) else {}

    def healthy(self, path: str = "/livez") -> bool:
        return True


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `condition` until it returns something truthy; Temporary when `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except errors.Temporary:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise errors.Temporary(f"timed out after {timeout:.0f}s")
        time.sleep(interval)
