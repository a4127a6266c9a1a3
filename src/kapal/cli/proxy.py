"""`kapal proxy` (kube-proxy's flags where they apply) and `kapal dns` (the cluster DNS server).
Each runs until SIGINT/SIGTERM; `kapal proxy --cleanup` removes the proxy's rules and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kapal.cli.controlplane import _bool, _duration, _logging, _run


def _flag_bool(p: argparse.ArgumentParser, name: str, default: bool, text: str) -> None:
    p.add_argument(name, type=_bool, nargs="?", const=True, default=default, help=text)


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --- proxy -----------------------------------------------------------------------------------------------------------

def _proxy_parser() -> argparse.ArgumentParser:
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
    return p


def proxy_config(args: argparse.Namespace) -> Any:
    """The ProxyConfig the flags ask for; errors.Unsupported/Invalid name the flag that cannot be honoured."""
    from kapal import errors
    from kapal.kube.proxy.app import ProxyConfig

    if args.config:
        raise errors.Unsupported("--config (KubeProxyConfiguration) is not supported; use the flags")
    if args.proxy_mode not in ("", "iptables"):
        raise errors.Unsupported(f"--proxy-mode={args.proxy_mode} is not supported; use iptables")
    if args.kubeconfig is None and not args.cleanup:
        raise errors.Invalid("--kubeconfig is required")
    config = ProxyConfig(
        kubeconfig=args.kubeconfig, hostname_override=args.hostname_override, cluster_cidr=args.cluster_cidr,
        masquerade_all=args.masquerade_all, nodeport_addresses=tuple(args.nodeport_addresses),
        sync_period=args.iptables_sync_period, min_sync_period=args.iptables_min_sync_period,
        masquerade_bit=args.iptables_masquerade_bit, localhost_nodeports=args.iptables_localhost_nodeports,
        healthz_bind_address=args.healthz_bind_address, metrics_bind_address=args.metrics_bind_address,
        chain_prefix=args.chain_prefix, kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst)
    config.rule_config()
    return config


def proxy_main(argv: list[str]) -> int:
    from kapal import errors

    args = _proxy_parser().parse_args(argv)
    try:
        config = proxy_config(args)
    except errors.KapalError as e:
        print(f"kapal proxy: {e}", file=sys.stderr)
        return 2
    _logging(args.verbosity)
    from kapal.kube.proxy.app import cleanup_rules, run_proxy

    if args.cleanup:
        try:
            removed = cleanup_rules(args.chain_prefix)
        except errors.KapalError as e:
            print(f"kapal proxy: {e}", file=sys.stderr)
            return 1
        for chain in removed:
            print(f"removed {chain}")
        return 0
    return _run("proxy", lambda stop: run_proxy(config, stop))


# --- dns -------------------------------------------------------------------------------------------------------------

def dns_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal dns", description="Serve cluster DNS for Services and Pods.")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig with the DNS server's identity (required)")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain (default cluster.local)")
    p.add_argument("--dns-address", default="", help="IP to serve DNS on (default: this node's IPv4 address)")
    p.add_argument("--dns-port", type=int, default=53, help="UDP and TCP port (default 53; 0 picks one)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="where the host's resolvers for other names are listed (default /etc/resolv.conf)")
    p.add_argument("--upstream", action="append", default=[],
                   help="IP[:PORT] of a resolver for other names (repeatable; overrides --resolv-conf)")
    _flag_bool(p, "--publish-service", False,
               "keep kube-system/kube-dns and an EndpointSlice pointing at this server (kapal up does)")
    p.add_argument("--service-ip", default="10.96.0.10", help="ClusterIP of kube-dns when publishing it")
    p.add_argument("--hostname-override", default="", help="this node's name (default: the host name)")
    p.add_argument("--ttl", type=int, default=5, help="TTL of cluster answers in seconds (default 5)")
    p.add_argument("--metrics-address", default=":9153", help="[IP]:PORT of /metrics (default :9153; empty: off)")
    p.add_argument("--health-address", default=":8080", help="[IP]:PORT of /health (default :8080; empty: off)")
    p.add_argument("--ready-address", default=":8181", help="[IP]:PORT of /ready (default :8181; empty: off)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    args = p.parse_args(argv)
    if args.kubeconfig is None:
        print("kapal dns: --kubeconfig is required", file=sys.stderr)
        return 2
    _logging(args.verbosity)
    from kapal.kube.dns.app import DnsConfig, run_dns

    config = DnsConfig(kubeconfig=args.kubeconfig, cluster_domain=args.cluster_domain,
                       listen_address=args.dns_address, port=args.dns_port, resolv_conf=args.resolv_conf,
                       upstreams=tuple(args.upstream), publish=args.publish_service, service_ip=args.service_ip,
                       node_name=args.hostname_override, ttl=args.ttl, metrics_bind_address=args.metrics_address,
                       health_bind_address=args.health_address, ready_bind_address=args.ready_address)
    return _run("dns", lambda stop: run_dns(config, stop))


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    return dns_main(rest) if verb == "dns" else proxy_main(rest)
