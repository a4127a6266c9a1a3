"""`kapal proxy` (kube-proxy's flags where they apply) and `kapal dns` (the cluster DNS server).
Each runs until SIGINT/SIGTERM; `kapal proxy --cleanup` removes the proxy's rules and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kapal.cli.controlplane import _bool, _duration, _logging, _run


def _flag_bool(p: argparse.ArgumentParser, name: str, default: bool, text: str) -> None:
    p.add_argument(name, type=_bool, nargs="?", const=True, default=default, help=text)


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --- proxy -----------------------------------------------------------------------------------------------------------

def proxy_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal proxy", description="Program Services into iptables (kube-proxy).")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig with the proxy's identity (required)")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the host name)")
    p.add_argument("--cluster-cidr", default="",
                   help="pod address range(s); traffic to cluster IPs from outside them is masqueraded")
    p.add_argument("--proxy-mode", default="iptables", help="only 'iptables' is supported")
    _flag_bool(p, "--masquerade-all", False, "masquerade all traffic sent to cluster IPs")
    p.add_argument("--nodeport-addresses", type=_list, default=[],
                   help="CIDRs whose local addresses answer NodePorts (default: every local address)")
    p.add_argument("--iptables-sync-period", type=_duration, default=30.0,
                   help="how often rules are checked and refreshed without changes (default 30s)")
    p.add_argument("--iptables-min-sync-period", type=_duration, default=1.0,
                   help="minimum time between syncs; changes meanwhile are coalesced (default 1s)")
    p.add_argument("--iptables-masquerade-bit", type=int, default=14,
                   help="fwmark bit that marks packets to masquerade, 0-31 (default 14)")
    _flag_bool(p, "--iptables-localhost-nodeports", True,
               "NodePorts also answer on 127.0.0.1 (sets net.ipv4.conf.all.route_localnet=1; default true)")
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256",
                   help="IP:PORT of /healthz (default 0.0.0.0:10256; empty disables)")
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10249",
                   help="IP:PORT of /metrics (default 127.0.0.1:10249; empty disables)")
    p.add_argument("--chain-prefix", default="KAPAL-",
                   help="prefix of every iptables chain the proxy owns (default KAPAL-)")
    p.add_argument("--kube-api-qps", type=float, default=0.0, help="client-side request rate limit (0: none)")
    p.add_argument("--kube-api-burst", type=int, default=0, help="burst for --kube-api-qps")
    p.add_argument("--cleanup", action="store_true", help="remove the proxy's iptables rules and exit")
    p.add_argument("--config", help="not supported: KubeProxyConfiguration files")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    args = p.parse_args(argv)
    if args.config:
        print("kapal proxy: --config (KubeProxyConfiguration) is not supported; use the flags", file=sys.stderr)
        return 2
    if args.proxy_mode not in ("", "iptables"):
        print(f"kapal proxy: --proxy-mode={args.proxy_mode} is not supported; use iptables", file=sys.stderr)
        return 2
    _logging(args.verbosity)
    from kapal import errors
    from kapal.kube.proxy.app import ProxyConfig, cleanup_rules, run_proxy

    if args.cleanup:
        try:
            removed = cleanup_rules(args.chain_prefix)
        except (errors.KapalError, ValueError) as e:
            print(f"kapal proxy: {e}", file=sys.stderr)
            return 1
        for chain in removed:
            print(f"removed {chain}")
        return 0
    if args.kubeconfig is None:
        print("kapal proxy: --kubeconfig is required", file=sys.stderr)
        return 2
    config = ProxyConfig(
        kubeconfig=args.kubeconfig, hostname_override=args.hostname_override, cluster_cidr=args.cluster_cidr,
        masquerade_all=args.masquerade_all, nodeport_addresses=tuple(args.nodeport_addresses),
        sync_period=args.iptables_sync_period, min_sync_period=args.iptables_min_sync_period,
        masquerade_bit=args.iptables_masquerade_bit, localhost_nodeports=args.iptables_localhost_nodeports,
        healthz_bind_address=args.healthz_bind_address, metrics_bind_address=args.metrics_bind_address,
        chain_prefix=args.chain_prefix, kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst)
    try:
        config.rule_config()
    except errors.KapalError as e:
        print(f"kapal proxy: {e}", file=sys.stderr)
        return 2
    return _run("proxy", lambda stop: run_proxy(config, stop))


def main(argv: list[str]) -> int:
    return proxy_main(argv[1:])
