"""Admission: the upstream plugins kapal enables by default, in upstream's order.

NamespaceLifecycle, ServiceAccount (default SA, projected token volume as
1.33 injects it), Priority, DefaultTolerationSeconds, TaintNodesByCondition,
and Service ClusterIP/NodePort allocation. Mutations happen in place; a
refusal raises Forbidden/NotFound/Invalid with upstream's wording.
"""

from __future__ import annotations

import secrets
from typing import Any

from kapal.errors import Invalid
from kapal.kube.api import quota, status
from kapal.kube.api.allocator import IPAllocator, PortAllocator, service_ips, service_node_ports
from kapal.kube.api.authn import UserInfo
from kapal.kube.api.cache import CacheEvent, WatchCache
from kapal.kube.api.status import Cause
from kapal.kube.api.store import ObjectStore
from kapal.kube.meta.resources import REVIEW_KINDS, ResourceType, lookup

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
TOKEN_EXPIRATION = 3607

_NAMESPACES = lookup("", "v1", "namespaces")
_SERVICEACCOUNTS = lookup("", "v1", "serviceaccounts")
_PRIORITYCLASSES = lookup("scheduling.k8s.io", "v1", "priorityclasses")


def _token_volume_name() -> str:
    return "kube-api-access-" + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


class Admission:
    def __init__(self, cache: WatchCache, store: ObjectStore, ips: IPAllocator, ports: PortAllocator) -> None:
        self.cache = cache
        self.store = store
        self.ips = ips
        self.ports = ports
        cache.add_listener(self._on_event)

    # --- allocation bookkeeping -------------------------------------------------------------------------------

    def repair(self) -> None:
        for entry in self.cache.resource(("", "services")).items.values():
            self._mark(entry.obj)

    def _mark(self, svc: dict[str, Any]) -> None:
        for ip in service_ips(svc):
            self.ips.mark(ip)
        for p in service_node_ports(svc):
            self.ports.mark(p)

    def _release(self, svc: dict[str, Any]) -> None:
        for ip in service_ips(svc):
            self.ips.release(ip)
        for p in service_node_ports(svc):
            self.ports.release(p)

    def _on_event(self, storage_key: tuple[str, str], ev: CacheEvent) -> None:
        if storage_key != ("", "services"):
            return
        if ev.type == "DELETED":
            self._release(ev.entry.obj)
        else:
            if ev.prev is not None:
                gone_ips = set(service_ips(ev.prev.obj)) - set(service_ips(ev.entry.obj))
                gone_ports = set(service_node_ports(ev.prev.obj)) - set(service_node_ports(ev.entry.obj))
                for ip in gone_ips:
                    self.ips.release(ip)
                for p in gone_ports:
                    self.ports.release(p)
            self._mark(ev.entry.obj)

    def undo_create(self, r: ResourceType, obj: dict[str, Any]) -> None:
        """A create that admission passed did not get stored: give back what it allocated."""
        if r.storage_key == ("", "services"):
            self._release(obj)

    # --- lookups ------------------------------------------------------------------------------------------------

    async def _get(self, r: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        entry = self.cache.get(r.storage_key, namespace if r.namespaced else None, name)
        if entry is not None:
            return entry.obj
        return await self.store.find(r, namespace, name)

    # --- create ---------------------------------------------------------------------------------------------------

    async def create(self, r: ResourceType, obj: dict[str, Any], dry_run: bool, user: UserInfo | None = None) -> None:
        meta = obj["metadata"]
        name = meta.get("name", "")
        if r.namespaced and r.kind not in REVIEW_KINDS:
            await self.namespace_lifecycle(r, meta.get("namespace") or "", name)
        key = r.storage_key
        if key == ("", "pods"):
            await self._service_account(r, obj)
            await self._priority(r, obj)
            _default_tolerations(obj)
        elif key == ("", "nodes"):
            _taint_not_ready(obj)
        elif key == ("", "services"):
            self._allocate_service(r, obj, None, dry_run)
        elif key == ("", "secrets"):
            fold_string_data(obj)
        elif key == ("", "namespaces"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            spec = obj.setdefault("spec", {})
            spec.setdefault("finalizers", ["kubernetes"])
        elif key == ("certificates.k8s.io", "certificatesigningrequests") and user is not None:
            # The requester is whoever asked, whatever the body claims (signers and approvers rely on it).
            spec = obj.setdefault("spec", {})
            spec["username"], spec["groups"] = user.name, list(user.groups)
            if user.uid:
                spec["uid"] = user.uid
            else:
                spec.pop("uid", None)
            if user.extra:
                spec["extra"] = user.extra
            else:
                spec.pop("extra", None)
        if r.namespaced and r.kind not in REVIEW_KINDS:
            ns = meta.get("namespace") or ""
            quota.limit_ranges(self.cache, r, obj, ns)
            quota.check_quota(self.cache, r, obj, ns)

    async def namespace_lifecycle(self, r: ResourceType, namespace: str, name: str) -> None:
        ns = await self._get(_NAMESPACES, None, namespace)
        if ns is None:
            raise status.not_found(_NAMESPACES, namespace)
        terminating = (ns.get("status") or {}).get("phase") == "Terminating"
        if (ns.get("metadata") or {}).get("deletionTimestamp") or terminating:
            err = status.forbidden_admission(
                r, name, f"unable to create new content in namespace {namespace} because it is being terminated")
            err.causes = [Cause("metadata.namespace", "NamespaceTerminating",  # type: ignore[attr-defined]
                                f"namespace {namespace} is being terminated")]
            raise err

    async def _service_account(self, r: ResourceType, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa_name
        spec.pop("serviceAccount", None)
        ns = meta.get("namespace") or ""
        sa = await self._get(_SERVICEACCOUNTS, ns, sa_name)
        if sa is None:
            raise status.forbidden_admission(
                r, meta.get("name", ""),
                f'error looking up service account {ns}/{sa_name}: serviceaccount "{sa_name}" not found')
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is False:
            return
        volumes = spec.setdefault("volumes", [])
        containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or []]
        if all(any(m.get("mountPath") == SA_MOUNT for m in c.get("volumeMounts") or []) for c in containers):
            return
        vol_name = _token_volume_name()
        volumes.append({"name": vol_name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                            "fieldPath": "metadata.namespace"}}]}},
        ]}})
        for c in containers:
            mounts = c.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == SA_MOUNT for m in mounts):
                mounts.append({"name": vol_name, "readOnly": True, "mountPath": SA_MOUNT})

    async def _priority(self, r: ResourceType, pod: dict[str, Any]) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("priorityClassName")
        if not name:
            default = next((e.obj for e in self.cache.resource(_PRIORITYCLASSES.storage_key).items.values()
                            if e.obj.get("globalDefault")), None)
            if default is None:
                spec.setdefault("priority", 0)
                return
            pc = default
            spec["priorityClassName"] = pc["metadata"]["name"]
        else:
            pc = await self._get(_PRIORITYCLASSES, None, name)
            if pc is None:
                raise status.forbidden_admission(r, pod["metadata"].get("name", ""),
                                                 f"no PriorityClass with name {name} was found")
        value = int(pc.get("value") or 0)
        if spec.get("priority") is not None and int(spec["priority"]) != value:
            raise status.forbidden_admission(
                r, pod["metadata"].get("name", ""),
                f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; priority "
                f"admission controller computed {value} from the given PriorityClass name")
        spec["priority"] = value
        spec.setdefault("preemptionPolicy", pc.get("preemptionPolicy") or "PreemptLowerPriority")

    def _allocate_service(self, r: ResourceType, svc: dict[str, Any], old: dict[str, Any] | None,
                          dry_run: bool) -> None:
        spec = svc.setdefault("spec", {})
        kind = spec.get("type") or "ClusterIP"
        name = svc["metadata"].get("name", "")
        allocated_ips: list[str] = []
        allocated_ports: list[int] = []
        try:
            if kind != "ExternalName":
                old_ips = service_ips(old) if old else []
                want = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
                if old is not None and old_ips:
                    if want and want != old_ips[0]:
                        raise status.invalid(r, name, [Cause("spec.clusterIPs[0]", "FieldValueInvalid",
                                                             f'Invalid value: []string{{"{want}"}}: may not change '
                                                             "once set")])
                    spec["clusterIP"], spec["clusterIPs"] = old_ips[0], old_ips[:1]
                elif want == "None":
                    spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
                else:
                    ip = self._ip(r, name, want, dry_run)
                    if not dry_run:
                        allocated_ips.append(ip)
                    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                if spec["clusterIP"] != "None" or spec.get("selector"):
                    spec.setdefault("ipFamilies", ["IPv6" if ":" in self.ips.first else "IPv4"])
                    spec.setdefault("ipFamilyPolicy", "SingleStack")
            if kind in ("NodePort", "LoadBalancer"):
                old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                             for p in ((old or {}).get("spec") or {}).get("ports") or []}
                for i, port in enumerate(spec.get("ports") or []):
                    if not isinstance(port, dict):
                        continue
                    have = port.get("nodePort")
                    kept = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                    if have and have == kept:
                        continue
                    if not have and kept:
                        port["nodePort"] = kept
                        continue
                    port["nodePort"] = self._port(r, name, i, have, dry_run)
                    if not dry_run:
                        allocated_ports.append(port["nodePort"])
        except BaseException:
            for ip in allocated_ips:
                self.ips.release(ip)
            for p in allocated_ports:
                self.ports.release(p)
            raise

    def _ip(self, r: ResourceType, name: str, want: str | None, dry_run: bool) -> str:
        try:
            ip = self.ips.allocate(want)
            if dry_run:
                self.ips.release(ip)
            return ip
        except Invalid as e:
            raise status.invalid(r, name, [Cause("spec.clusterIPs", "FieldValueInvalid",
                                                 f'Invalid value: []string{{"{want or ""}"}}: {e}')]) from None

    def _port(self, r: ResourceType, name: str, i: int, want: int | None, dry_run: bool) -> int:
        try:
            if dry_run:
                p = self.ports.allocate(want)
                self.ports.release(p)
                return p
            return self.ports.allocate(want)
        except Invalid as e:
            raise status.invalid(r, name, [Cause(f"spec.ports[{i}].nodePort", "FieldValueInvalid",
                                                 f"Invalid value: {want or 0}: {e}")]) from None

    # --- update and delete ----------------------------------------------------------------------------------------

    async def update(self, r: ResourceType, old: dict[str, Any], new: dict[str, Any], dry_run: bool) -> None:
        key = r.storage_key
        if key == ("", "services"):
            self._allocate_service(r, new, old, dry_run)
        elif key == ("", "secrets"):
            fold_string_data(new)
        elif key == ("", "namespaces"):
            new.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = \
                new["metadata"].get("name", "")

    def delete(self, r: ResourceType, obj: dict[str, Any]) -> None:
        if r.storage_key == ("", "namespaces") and obj["metadata"].get("name") in IMMORTAL_NAMESPACES:
            raise status.forbidden_admission(r, obj["metadata"]["name"], "this namespace may not be deleted")


def fold_string_data(secret: dict[str, Any]) -> None:
    """Secrets: `stringData` is write-only convenience, stored base64-encoded in `data`."""
    import base64

    string_data = secret.pop("stringData", None)
    if not string_data:
        return
    if not isinstance(string_data, dict):
        raise Invalid("stringData must be a map of strings")
    data = secret.setdefault("data", {}) or {}
    secret["data"] = data
    for k, v in string_data.items():
        data[k] = base64.b64encode(str(v).encode()).decode()


def _default_tolerations(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") or
               (t.get("operator") == "Exists" and not t.get("key")) for t in tolerations):
            continue
        tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _taint_not_ready(node: dict[str, Any]) -> None:
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return
    taints = node.setdefault("spec", {}).setdefault("taints", [])
    if not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
