"""`kapal kubelet`: the node agent, with the upstream kubelet's flag names.

    kapal kubelet --kubeconfig /etc/kubernetes/kubelet.conf --container-runtime-endpoint unix:///run/kapal/docker.sock

Without --kubeconfig it runs standalone: static pods from --pod-manifest-path only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def parser() -> argparse.ArgumentParser:
    from kapal.kube.kubelet.config import DEFAULT_ENDPOINT, DEFAULT_ROOT_DIR

    p = argparse.ArgumentParser(prog="kapal kubelet", description="Run the node agent (upstream kubelet flags).")
    b = {"type": _bool, "nargs": "?", "const": True}
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig to reach the API server (none: standalone)")
    p.add_argument("--node-name", "--hostname-override", dest="node_name", help="node name (default: hostname)")
    p.add_argument("--node-ip", help="node InternalIP (default: the host's primary IPv4)")
    p.add_argument("--pod-manifest-path", type=Path, help="directory of static pod manifests")
    p.add_argument("--root-dir", type=Path, default=DEFAULT_ROOT_DIR,
                   help=f"state directory (default {DEFAULT_ROOT_DIR})")
    p.add_argument("--cgroup-root", default="/", help="cgroup under which kubepods lives (default /)")
    p.add_argument("--cgroup-driver", default="cgroupfs", help="cgroupfs (systemd is refused)")
    p.add_argument("--container-runtime-endpoint", default=DEFAULT_ENDPOINT,
                   help=f"the kapal engine socket (default {DEFAULT_ENDPOINT})")
    p.add_argument("--cluster-dns", default="", help="comma list of DNS server IPs for pods")
    p.add_argument("--cluster-domain", default="cluster.local", help="cluster DNS domain (default cluster.local)")
    p.add_argument("--address", default="0.0.0.0", help="address of the HTTPS server (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=10250, help="port of the HTTPS server (default 10250; 0: any)")
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate (default: self-signed)")
    p.add_argument("--tls-private-key-file", type=Path, help="its key")
    p.add_argument("--client-ca-file", type=Path, help="CA that signs client certificates")
    p.add_argument("--anonymous-auth", default=True, **b, help="allow anonymous requests (default true)")
    p.add_argument("--authentication-token-webhook", default=False, **b,
                   help="check bearer tokens with a TokenReview")
    p.add_argument("--authorization-mode", default="AlwaysAllow", choices=("AlwaysAllow", "Webhook"),
                   help="AlwaysAllow or Webhook (SubjectAccessReview)")
    p.add_argument("--max-pods", type=int, default=110, help="pods this node accepts (default 110)")
    p.add_argument("--node-labels", type=_map, default={}, help="key=value,... labels for the Node")
    p.add_argument("--register-with-taints", type=_taints, default=[], help="key=value:Effect,... taints")
    p.add_argument("--register-node", default=True, **b, help="register the Node (default true)")
    p.add_argument("--fail-swap-on", default=True, **b, help="refuse to run with swap on (default true)")
    p.add_argument("--pod-cidr", help="pod CIDR of this node (default: the Node's spec.podCIDR from node IPAM)")
    p.add_argument("--non-masquerade-cidr", help="traffic to this CIDR is not masqueraded (default: the pod "
                                                 "CIDR's /16)")
    p.add_argument("--pod-bridge-name", default="kapal-cni0", help="Linux bridge for pods (default kapal-cni0)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", help="resolver file for the Default DNS policy")
    p.add_argument("--provider-id", default="", help="the Node's spec.providerID")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    return p


def config_from(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from kapal.kube.kubelet.config import KubeletConfig, default_node_name

    return KubeletConfig(
        node_name=(args.node_name or default_node_name()).lower(), kubeconfig=args.kubeconfig,
        root_dir=args.root_dir, node_ip=args.node_ip, pod_manifest_path=args.pod_manifest_path,
        cgroup_root=args.cgroup_root, cgroup_driver=args.cgroup_driver,
        container_runtime_endpoint=args.container_runtime_endpoint,
        cluster_dns=[s.strip() for s in args.cluster_dns.split(",") if s.strip()], cluster_domain=args.cluster_domain,
        address=args.address, port=args.port, tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file, client_ca_file=args.client_ca_file,
        anonymous_auth=args.anonymous_auth, authentication_token_webhook=args.authentication_token_webhook,
        authorization_mode=args.authorization_mode, max_pods=args.max_pods, node_labels=args.node_labels,
        register_with_taints=args.register_with_taints, register_node=args.register_node,
        fail_swap_on=args.fail_swap_on, pod_cidr=args.pod_cidr, non_masquerade_cidr=args.non_masquerade_cidr,
        pod_bridge=args.pod_bridge_name, resolv_conf=args.resolv_conf, provider_id=args.provider_id)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv[1:])
    import asyncio
    import logging
    import signal

    from kapal import errors

    logging.basicConfig(level=logging.DEBUG if args.verbosity >= 4 else logging.INFO if args.verbosity >= 1
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        print("kapal kubelet: --tls-cert-file and --tls-private-key-file go together", file=sys.stderr)
        return 2
    config = config_from(args)

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
