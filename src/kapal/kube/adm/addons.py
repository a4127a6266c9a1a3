"""kubeadm's addon phase: kube-proxy and CoreDNS, played by `kapal proxy` and `kapal dns` (issue 10).

kubeadm deploys kube-proxy as a DaemonSet (host network, privileged) and CoreDNS as a Deployment behind the
kube-dns Service (the tenth address of the service subnet). `DEPLOYABLE` names the add-ons whose objects
this module writes; the phase skips the others with a line saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kapal.errors import Unsupported

if TYPE_CHECKING:
    from .init import InitContext

DEPLOYABLE: frozenset[str] = frozenset()


def apply(ctx: InitContext, component: str) -> None:
    raise Unsupported(f"the {component} addon is not deployable by this kapal yet")
