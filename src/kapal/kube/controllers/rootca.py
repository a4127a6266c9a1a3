"""Root CA publisher: a `kube-root-ca.crt` ConfigMap (key ca.crt: the cluster CA bundle) in every namespace,
created within moments of the namespace and put back when deleted or changed."""

from __future__ import annotations

from kapal import errors
from kapal.kube.client.informer import EventHandler
from kapal.kube.client.kinds import CONFIGMAPS, NAMESPACES
from kapal.kube.client.store import copy_object
from kapal.kube.controllers.base import Controller, ControllerContext

NAME = "kube-root-ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-certificate-publisher-controller"
    workers = 1

    def __init__(self, ctx: ControllerContext, bundle: bytes) -> None:
        super().__init__(ctx)
        self.bundle = bundle.decode()
        self.namespaces = self.informer(NAMESPACES)
        self.configmaps = self.informer(CONFIGMAPS)
        self.watch(self.namespaces, EventHandler(on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n)))
        self.watch(self.configmaps, EventHandler(on_update=lambda _o, n: self._cm(n), on_delete=self._cm))

    def _cm(self, cm: dict) -> None:
        if cm["metadata"]["name"] == NAME:
            self.queue.add(cm["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.indexer.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        cm = self.configmaps.indexer.get(f"{key}/{NAME}")
        data = {"ca.crt": self.bundle}
        annotations = {"kubernetes.io/description": DESCRIPTION}
        if cm is None:
            try:
                await self.client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": NAME, "namespace": key,
                                                                   "annotations": annotations},
                                                      "data": data})
            except errors.AlreadyExists:
                pass
            except errors.Forbidden as e:
                if "being terminated" not in str(e):
                    raise
            return
        current_annotations = cm["metadata"].get("annotations") or {}
        if cm.get("data") == data and all(current_annotations.get(k) == v for k, v in annotations.items()):
            return
        fresh = copy_object(cm)
        fresh["data"] = data
        fresh.pop("binaryData", None)
        fresh["metadata"]["annotations"] = {**current_annotations, **annotations}
        await self.client.replace(CONFIGMAPS, fresh)
