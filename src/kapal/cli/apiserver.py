"""`kapal apiserver`: the Kubernetes-compatible API server, with kube-apiserver's flag names.

`kapal apiserver --data-dir DIR` alone gives a usable server: SQLite under
DIR, a CA and serving certificate, and DIR/admin.kubeconfig.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kapal apiserver", description="Run the Kubernetes-compatible API server.")
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/kapal/apiserver"),
                   help="state directory: state.db, pki/, admin.kubeconfig (default /var/lib/kapal/apiserver)")
    p.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (default 6443; 0 picks a free port)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--advertise-address", help="address the kubernetes Service's endpoints point at")
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate (default: generated under DATA_DIR/pki)")
    p.add_argument("--tls-private-key-file", type=Path, help="serving key")
    p.add_argument("--client-ca-file", type=Path,
                   help="CA that signs client certificates (default: DATA_DIR/pki/ca.crt)")
    p.add_argument("--service-account-key-file", type=Path, action="append", default=[],
                   help="public key(s) that verify service-account tokens (repeatable)")
    p.add_argument("--service-account-signing-key-file", type=Path,
                   help="private key that signs service-account tokens")
    p.add_argument("--service-account-issuer", action="append", default=[],
                   help="issuer of service-account tokens (repeatable; the first one signs)")
    p.add_argument("--api-audiences", default="", help="comma list of accepted token audiences (default: the issuer)")
    p.add_argument("--service-account-max-token-expiration", default="", help="cap on token lifetimes, e.g. 48h")
    p.add_argument("--authorization-mode", default="Node,RBAC", help="comma list: Node, RBAC, AlwaysAllow, AlwaysDeny")
    p.add_argument("--token-auth-file", type=Path, help='static tokens, CSV: token,user,uid,"group1,group2"')
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12", help="ClusterIP range (default 10.96.0.0/12)")
    p.add_argument("--service-node-port-range", default="30000-32767", help="NodePort range (default 30000-32767)")
    p.add_argument("--etcd-servers", default="", help="comma list of etcd URLs (instead of SQLite)")
    p.add_argument("--storage", default="", help="storage DSN: sqlite:///path, memory:// (default sqlite in DATA_DIR)")
    p.add_argument("--kubelet-client-certificate", type=Path, help="client certificate for talking to kubelets")
    p.add_argument("--kubelet-client-key", type=Path, help="its key")
    p.add_argument("--kubelet-certificate-authority", type=Path, help="CA that signs kubelet serving certificates")
    p.add_argument("--kubelet-preferred-address-types", default="",
                   help="node address types to reach kubelets at, in order (default InternalIP,Hostname,...)")
    p.add_argument("--anonymous-auth", type=_bool, nargs="?", const=True, default=False,
                   help="treat requests without credentials as system:anonymous (default false in kapal: 401)")
    p.add_argument("--enable-bootstrap-token-auth", type=_bool, nargs="?", const=True, default=True,
                   help="accept bootstrap tokens (kube-system Secrets) as bearer tokens (default true)")
    p.add_argument("--allow-privileged", type=_bool, nargs="?", const=True, default=True,
                   help="admit privileged containers (only true is supported)")
    p.add_argument("--enable-admission-plugins", default="",
                   help=f"accepted for the plugins kapal always runs: {','.join(ALWAYS_ON_ADMISSION)}")
    p.add_argument("--disable-admission-plugins", default="", help="not supported: kapal's admission is fixed")
    p.add_argument("--max-request-bytes", type=int, default=3 * 1024 * 1024, help="largest accepted request body")
    p.add_argument("--watch-cache-size", type=int, default=1000, help="events kept per resource for watch resumes")
    p.add_argument("--min-request-timeout", type=int, default=1800, help="watch timeout base in seconds")
    p.add_argument("--event-ttl", default="1h", help="how long Events are kept after their last write (default 1h)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    return p


# Upstream admission plugins kapal's API server always runs; --enable-admission-plugins may name these.
ALWAYS_ON_ADMISSION = ("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "TaintNodesByCondition", "Priority",
                       "DefaultTolerationSeconds", "ResourceQuota", "NodeRestriction")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "t", "yes"):
        return True
    if text.lower() in ("0", "false", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _duration(text: str) -> int:
    if not text:
        return 0
    units = {"s": 1, "m": 60, "h": 3600}
    total, num = 0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        elif ch in units and num:
            total += int(num) * units[ch]
            num = ""
        else:
            raise SystemExit(f"kapal apiserver: invalid duration {text!r} (use e.g. 1h30m)")
    return total + (int(num) if num else 0)


def config_from_args(argv: list[str]):
    """The ApiServerConfig the flags describe (argv without the verb)."""
    from kapal.kube.api.config import DEFAULT_ISSUER, ApiServerConfig

    args = _parser().parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise SystemExit("kapal apiserver: --tls-cert-file and --tls-private-key-file go together")
    if not args.allow_privileged:
        raise SystemExit("kapal apiserver: --allow-privileged=false is not supported (privileged containers are "
                         "always admitted)")
    unknown = [n for n in args.enable_admission_plugins.split(",") if n and n not in ALWAYS_ON_ADMISSION]
    if unknown:
        raise SystemExit(f"kapal apiserver: admission plugin {unknown[0]!r} is not supported; kapal always runs "
                         f"{','.join(ALWAYS_ON_ADMISSION)}")
    if args.disable_admission_plugins:
        raise SystemExit("kapal apiserver: --disable-admission-plugins is not supported: kapal's admission chain is "
                         "fixed")
    config = ApiServerConfig(
        data_dir=args.data_dir, secure_port=args.secure_port, bind_address=args.bind_address,
        advertise_address=args.advertise_address, tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file, client_ca_file=args.client_ca_file,
        service_account_key_files=args.service_account_key_file,
        service_account_signing_key_file=args.service_account_signing_key_file,
        service_account_issuer=args.service_account_issuer or [DEFAULT_ISSUER],
        api_audiences=[a for a in args.api_audiences.split(",") if a],
        service_account_max_token_expiration=_duration(args.service_account_max_token_expiration),
        authorization_modes=[m.strip() for m in args.authorization_mode.split(",") if m.strip()],
        token_auth_file=args.token_auth_file, service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range, storage=args.storage,
        etcd_servers=[s for s in args.etcd_servers.split(",") if s],
        kubelet_client_certificate=args.kubelet_client_certificate, kubelet_client_key=args.kubelet_client_key,
        kubelet_certificate_authority=args.kubelet_certificate_authority, max_request_bytes=args.max_request_bytes,
        kubelet_preferred_address_types=[t for t in args.kubelet_preferred_address_types.split(",") if t],
        anonymous_auth=args.anonymous_auth, enable_bootstrap_token_auth=args.enable_bootstrap_token_auth,
        watch_cache_size=args.watch_cache_size, min_request_timeout=args.min_request_timeout,
        event_ttl=float(_duration(args.event_ttl) or 3600))
    return config, args.verbosity


def main(argv: list[str]) -> int:
    config, verbosity = config_from_args(argv[1:])
    import asyncio
    import logging
    import signal

    from kapal import errors

    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO if verbosity >= 1
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> int:
        from kapal.kube.api.server import serve

        server = await serve(config)
        print(f"kapal apiserver: serving on {server.url} (ready in {server.startup_seconds:.2f}s); "
              f"kubeconfig: {server.admin_kubeconfig}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        return 0

    try:
        return asyncio.run(run())
    except errors.KapalError as e:
        print(f"kapal apiserver: {e}", file=sys.stderr)
        return 1
