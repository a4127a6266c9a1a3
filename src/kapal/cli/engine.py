"""`kapal engine`: run the engine daemon in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


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
        "--runtime", default="runc", help="runc-compatible OCI runtime binary (runc, crun, kapal-runtime)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
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
    )
    try:
        run(config)
    except KapalError as e:
        print(f"kapal engine: {e}", file=sys.stderr)
        return 125
    return 0
