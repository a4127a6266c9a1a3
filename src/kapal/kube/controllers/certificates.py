"""Certificate controllers for TLS bootstrap: csrapproving auto-approves kubelet client CSRs whose requester
may create certificatesigningrequests/nodeclient (or selfnodeclient, for renewals), asked through a
SubjectAccessReview; csrsigning signs approved CSRs for the kube-apiserver-client(-kubelet) and
kubelet-serving signers with --cluster-signing-cert-file/--cluster-signing-key-file."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import math
from pathlib import Path
from typing import Any

from kapal import errors
from kapal.kube.client.kinds import resource
from kapal.kube.client.store import copy_object
from kapal.kube.controllers.base import Controller, ControllerContext

Obj = dict[str, Any]
CSRS = resource("certificates.k8s.io", "certificatesigningrequests")
SARS = resource("authorization.k8s.io", "subjectaccessreviews")
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = {"kubernetes.io/kube-apiserver-client": (False, True), KUBELET_CLIENT: (False, True),
           "kubernetes.io/kubelet-serving": (True, False)}


def _conditions(csr: Obj) -> dict[str, str]:
    return {c.get("type", ""): c.get("status", "") for c in (csr.get("status") or {}).get("conditions") or ()}


def is_approved(csr: Obj) -> bool:
    c = _conditions(csr)
    return c.get("Approved") == "True" and c.get("Denied") != "True" and c.get("Failed") != "True"


def is_decided(csr: Obj) -> bool:
    c = _conditions(csr)
    return c.get("Approved") == "True" or c.get("Denied") == "True"


def node_client_subject(csr: Obj) -> str | None:
    """The node name when the CSR asks for a kubelet client certificate (O=system:nodes, CN=system:node:NAME,
    no SANs, client usages only), else None."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT:
        return None
    try:
        req = x509.load_pem_x509_csr(base64.b64decode(spec.get("request", "")))
    except ValueError:
        return None
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    cns = [a.value for a in req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if orgs != ["system:nodes"] or len(cns) != 1 or not str(cns[0]).startswith("system:node:"):
        return None
    try:
        req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return None
    except x509.ExtensionNotFound:
        pass
    usages = set(spec.get("usages") or ())
    if "client auth" not in usages or not usages <= {"client auth", "digital signature", "key encipherment"}:
        return None
    return str(cns[0])


class CSRApprovingController(Controller):
    name = "certificatesigningrequest-approving-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.csrs = self.informer(CSRS)
        self.watch(self.csrs, self.enqueue_handler())

    async def sync(self, key: str) -> None:
        csr = self.csrs.indexer.get(key)
        if csr is None or is_decided(csr) or (csr.get("status") or {}).get("certificate"):
            return
        cn = node_client_subject(csr)
        if cn is None:
            return
        spec = csr["spec"]
        subresource = "selfnodeclient" if spec.get("username") == cn else "nodeclient"
        review = await self.client.create(SARS, {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": spec.get("username", ""), "groups": spec.get("groups") or [],
                     "uid": spec.get("uid", ""), "extra": spec.get("extra") or {},
                     "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests",
                                            "verb": "create", "subresource": subresource}}})
        if not (review.get("status") or {}).get("allowed"):
            return
        fresh = copy_object(csr)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fresh.setdefault("status", {}).setdefault("conditions", []).append({
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
            "lastUpdateTime": now, "lastTransitionTime": now})
        await self.client.replace(CSRS, fresh, subresource="approval")


class CSRSigningController(Controller):
    name = "certificatesigningrequest-signing-controller"
    workers = 5

    def __init__(self, ctx: ControllerContext, cert_file: Path, key_file: Path, duration: float) -> None:
        super().__init__(ctx)
        from kapal.kube import pki

        self.ca = pki.load(cert_file, key_file)
        self.duration = duration
        self.csrs = self.informer(CSRS)
        self.watch(self.csrs, self.enqueue_handler())

    async def sync(self, key: str) -> None:
        csr = self.csrs.indexer.get(key)
        if csr is None or not is_approved(csr) or (csr.get("status") or {}).get("certificate"):
            return
        spec = csr["spec"]
        usage = SIGNERS.get(spec.get("signerName", ""))
        if usage is None:
            return
        server = usage[0] or "server auth" in (spec.get("usages") or ())
        client = usage[1] or "client auth" in (spec.get("usages") or ())
        seconds = min(float(spec.get("expirationSeconds") or self.duration), self.duration)
        from kapal.kube import pki

        try:
            pem = await asyncio.to_thread(pki.sign_csr, self.ca, base64.b64decode(spec.get("request", "")),
                                          server=server, client=client, days=max(1, math.ceil(seconds / 86400)))
        except errors.Invalid as e:
            fresh = copy_object(csr)
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            fresh.setdefault("status", {}).setdefault("conditions", []).append({
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": str(e),
                "lastUpdateTime": now, "lastTransitionTime": now})
            await self.client.replace(CSRS, fresh, subresource="status")
            return
        fresh = copy_object(csr)
        fresh.setdefault("status", {})["certificate"] = base64.b64encode(pem).decode()
        await self.client.replace(CSRS, fresh, subresource="status")
