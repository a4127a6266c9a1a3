"""`kapal engine`: run the engine daemon in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"want true or false, not {text!r}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kapal engine", description="Run the engine: the Docker Engine API on a unix socket."
    )
    parser.add_argument(
        "--data-root", default="/var/lib/kapal/engine", help="where images, containers and volumes live"
    )
    parser.add_argument(
        "-H", "--host", default=None, help="socket to listen on (default unix:///run/kapal/docker.sock)"
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]|CIDR",
        help="registry to reach over plain HTTP or unverified TLS (loopback always is)",
    )
    parser.add_argument("--registry-certs-dir", default="/etc/kapal/certs.d", help="<dir>/<host:port>/ca.crt CAs")
    parser.add_argument(
        "--runtime",
        default="kapal",
        help="OCI runtime: kapal (the default: kapal's runtime, in the shim's process) or a runc-compatible "
        "binary (runc, crun, kapal-runtime, or a path)",
    )
    parser.add_argument(
        "--live-restore",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="containers keep running while the engine is down, and the next engine adopts them (default true; "
        "--live-restore=false stops them with a 10 s grace when the engine stops)",
    )
    parser.add_argument(
        "--lxcfs-dir",
        default="/var/lib/kapal/lxcfs",
        help="lxcfs mount to use or start (a host-wide service that stays) for containers' /proc files",
    )
    parser.add_argument("--no-lxcfs", action="store_true", help="containers see the host's /proc files")
    parser.add_argument("-b", "--bridge", default="kapal0", help="the default network's bridge device")
    parser.add_argument(
        "--bip", default="10.89.0.1/16", help="the bridge's address and prefix: gateway and subnet of containers"
    )
    parser.add_argument(
        "--network-pool",
        type=int,
        default=2,
        metavar="N",
        help="bridge network namespaces kept attached ahead of container starts (0: attach on start)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="do not serve: remove what a stopped engine with these flags left on the host (containers still "
        "running, its bridge and rules unless another engine uses them, mounts under the data root, the lxcfs "
        "it started)",
    )
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as e:
        return 0 if e.code == 0 else 125
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = args.host or os.environ.get("KAPAL_HOST") or "unix:///run/kapal/docker.sock"
    if not host.startswith("unix://"):
        print(f"kapal engine: only unix:// sockets are supported, not {host!r}", file=sys.stderr)
        return 125
    if os.geteuid() != 0:
        print("kapal engine: must run as root (it mounts overlays and creates namespaces)", file=sys.stderr)
        return 125
    from kapal.engine.config import EngineConfig
    from kapal.engine.daemon import run
    from kapal.errors import KapalError

    config = EngineConfig(
        data_root=Path(args.data_root),
        host=host,
        insecure_registries=tuple(args.insecure_registry),
        certs_dir=Path(args.registry_certs_dir),
        runtime=args.runtime,
        live_restore=args.live_restore,
        lxcfs_dir=None if args.no_lxcfs else Path(args.lxcfs_dir),
        bridge=args.bridge,
        bridge_cidr=args.bip,
        network_pool=args.network_pool,
    )
    if args.cleanup:
        return _cleanup(config)
    try:
        run(config)
    except KapalError as e:
        print(f"kapal engine: {e}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130
    return 0


def _cleanup(config) -> int:  # type: ignore[no-untyped-def]
    from kapal.engine.teardown import teardown
    from kapal.errors import KapalError

    try:
        report = teardown(config)
    except KapalError as e:
        print(f"kapal engine --cleanup: {e}", file=sys.stderr)
        return 125
    for line in report.done:
        print(f"kapal engine --cleanup: removed {line}", file=sys.stderr)
    for line in report.kept:
        print(f"kapal engine --cleanup: {line}", file=sys.stderr)
    for line in report.problems:
        print(f"kapal engine --cleanup: could not remove: {line}", file=sys.stderr)
    return 1 if report.problems else 0
