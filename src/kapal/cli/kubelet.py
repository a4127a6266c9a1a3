"""`kapal kubelet`: the node agent, with the upstream kubelet's flag names.

    kapal kubelet --kubeconfig /etc/kubernetes/kubelet.conf --container-runtime-endpoint unix:///run/kapal/docker.sock
    kapal kubelet --config /var/lib/kubelet/config.yaml --kubeconfig ...   # a KubeletConfiguration; flags win

Without --kubeconfig it runs standalone: static pods from --pod-manifest-path only. With one whose server does not
answer yet (kubeadm: the API server is itself a static pod) it runs the static pods and registers once it can.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

S = argparse.SUPPRESS


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "t", "yes"):
        return True
    if value in ("false", "0", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")


def _map(text: str) -> dict[str, str]:
    out = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"invalid label {item!r}: want key=value")
        out[key] = value
    return out


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _taints(text: str) -> list[dict[str, str]]:
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        kv, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise argparse.ArgumentTypeError(f"invalid taint {item!r}: want key[=value]:NoSchedule|PreferNoSchedule|"
                                             "NoExecute")
        key, _, value = kv.partition("=")
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        out.append(taint)
    return out


# flag dest -> KubeletConfig field (same name when absent)
_FIELD = {"pod_bridge_name": "pod_bridge"}


def parser() -> argparse.ArgumentParser:
    from kapal.kube.kubelet.config import DEFAULT_ENDPOINT, DEFAULT_ROOT_DIR

    p = argparse.ArgumentParser(prog="kapal kubelet", description="Run the node agent (upstream kubelet flags).",
                                argument_default=S)
    b = {"type": _bool, "nargs": "?", "const": True}
    p.add_argument("--config", type=Path, help="a KubeletConfiguration file (kubelet.config.k8s.io/v1beta1)")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig to reach the API server (none: standalone)")
    p.add_argument("--node-name", "--hostname-override", dest="node_name", help="node name (default: hostname)")
    p.add_argument("--node-ip", help="node InternalIP (default: the host's primary IPv4)")
    p.add_argument("--pod-manifest-path", type=Path, help="directory of static pod manifests")
    p.add_argument("--root-dir", type=Path, help=f"state directory (default {DEFAULT_ROOT_DIR})")
    p.add_argument("--cgroup-root", help="cgroup under which kubepods lives (default /)")
    p.add_argument("--cgroup-driver", help="cgroupfs (systemd is refused)")
    p.add_argument("--container-runtime-endpoint", help=f"the kapal engine socket (default {DEFAULT_ENDPOINT})")
    p.add_argument("--cluster-dns", type=_list, help="comma list of DNS server IPs for pods")
    p.add_argument("--cluster-domain", help="cluster DNS domain (default cluster.local)")
    p.add_argument("--address", help="address of the HTTPS server (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port of the HTTPS server (default 10250; 0: any)")
    p.add_argument("--healthz-bind-address", help="address of the plain-HTTP /healthz (default 127.0.0.1)")
    p.add_argument("--healthz-port", type=int, help="port of the plain-HTTP /healthz (default 10248; 0: off)")
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate (default: self-signed)")
    p.add_argument("--tls-private-key-file", type=Path, help="its key")
    p.add_argument("--client-ca-file", type=Path, help="CA that signs client certificates")
    p.add_argument("--anonymous-auth", **b, help="allow anonymous requests (default true)")
    p.add_argument("--authentication-token-webhook", **b, help="check bearer tokens with a TokenReview")
    p.add_argument("--authorization-mode", choices=("AlwaysAllow", "Webhook"),
                   help="AlwaysAllow (default) or Webhook (SubjectAccessReview)")
    p.add_argument("--max-pods", type=int, help="pods this node accepts (default 110)")
    p.add_argument("--node-labels", type=_map, help="key=value,... labels for the Node")
    p.add_argument("--register-with-taints", type=_taints, help="key=value:Effect,... taints")
    p.add_argument("--register-node", **b, help="register the Node (default true)")
    p.add_argument("--fail-swap-on", **b, help="refuse to run with swap on (default true)")
    p.add_argument("--pod-cidr", help="pod CIDR of this node (default: the Node's spec.podCIDR from node IPAM)")
    p.add_argument("--non-masquerade-cidr", help="traffic to this CIDR is not masqueraded (default: the pod "
                                                 "CIDR's /16)")
    p.add_argument("--pod-bridge-name", help="Linux bridge for pods (default kapal-cni0)")
    p.add_argument("--resolv-conf", help="resolver file for the Default DNS policy (default /etc/resolv.conf)")
    p.add_argument("--provider-id", help="the Node's spec.providerID")
    p.add_argument("-v", "--v", type=int, dest="verbosity", help="log verbosity (0-5)")
    return p


def config_from(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Defaults, then the --config file, then the flags given (upstream's precedence)."""
    from dataclasses import replace

    from kapal.kube.kubelet import configfile
    from kapal.kube.kubelet.config import KubeletConfig

    given = {k: v for k, v in vars(args).items() if k not in ("config", "verbosity")}
    config = KubeletConfig()
    if getattr(args, "config", None) is not None:
        config = configfile.load(args.config, config)
    config = replace(config, **{_FIELD.get(k, k): v for k, v in given.items()})
    config.node_name = config.node_name.lower()
    return config


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv[1:])
    import asyncio
    import logging
    import signal

    from kapal import errors

    verbosity = getattr(args, "verbosity", 0)
    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO if verbosity >= 1
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from(args)
    except errors.KapalError as e:
        print(f"kapal kubelet: {e}", file=sys.stderr)
        return 1
    if bool(config.tls_cert_file) != bool(config.tls_private_key_file):
        print("kapal kubelet: --tls-cert-file and --tls-private-key-file go together", file=sys.stderr)
        return 2

    async def run() -> int:
        from kapal.kube.kubelet.kubelet import run_kubelet

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_kubelet(config, stop, on_ready=lambda kl: print(
            f"kapal kubelet: node {config.node_name} ready (IP {kl.node_ip}, port {kl.port})", file=sys.stderr,
            flush=True))
        return 0

    try:
        return asyncio.run(run())
    except errors.KapalError as e:
        print(f"kapal kubelet: {e}", file=sys.stderr)
        return 1
