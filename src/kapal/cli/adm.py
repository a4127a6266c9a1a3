"""`kapal adm`: kubeadm's command line for a kapal node — init (and its phases), reset, token, certs, config images.

Errors go to stderr the way kubeadm words them ("error execution phase preflight: …") with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

USAGE = """Usage: kapal adm COMMAND

Set up a Kubernetes control-plane node the way kubeadm does, with kapal's components.

Commands:
  init                  Run this command in order to set up the Kubernetes control plane
  init phase NAME [SUB] Run one phase of init (kapal adm init phase --help lists them)
  reset [-f]            Stop the node and remove everything init put on this host (the engine's images stay)
  token                 Manage bootstrap tokens: create [TOKEN], list, delete ID..., generate
  certs                 check-expiration, renew NAME|all
  config images list    Print the images kapal adm init uses (needs no cluster)
  config images pull    Build those images into the engine
  join                  (a later issue) join this machine to a cluster
"""


def _err(message: str) -> int:
    print(message, file=sys.stderr, flush=True)
    if message.startswith("error execution phase"):
        print("To see the stack trace of this error execute with --v=5 or higher", file=sys.stderr, flush=True)
    return 1


def _init_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Set up a Kubernetes control-plane node.")
    p.add_argument("--config", type=Path, help="path to a kubeadm configuration file (InitConfiguration, "
                                                "ClusterConfiguration; kubeadm.k8s.io/v1beta3 or v1beta4)")
    p.add_argument("--apiserver-advertise-address", help="the IP address the API server advertises "
                                                         "(default: the address of the default route)")
    p.add_argument("--apiserver-bind-port", type=int, help="port for the API server (default 6443)")
    p.add_argument("--apiserver-cert-extra-sans", help="extra SANs for the API server's serving certificate")
    p.add_argument("--cert-dir", type=Path, help="where certificates are stored (default /etc/kubernetes/pki)")
    p.add_argument("--control-plane-endpoint", help="a stable IP address or DNS name for the control plane")
    p.add_argument("--cri-socket", help="the engine's socket (default unix:///run/kapal/docker.sock)")
    p.add_argument("--dry-run", action="store_true", default=None,
                   help="don't apply any changes; just output what would be done")
    p.add_argument("--ignore-preflight-errors", action="append",
                   help="checks whose errors become warnings, e.g. 'IsPrivilegedUser,Swap'; 'all' ignores all")
    p.add_argument("--image-repository", help="where the images come from (default kapal.local: built locally)")
    p.add_argument("--kubernetes-version", help="must be the version this kapal provides (v1.33.0)")
    p.add_argument("--node-name", help="the node's name (default: the host name)")
    p.add_argument("--pod-network-cidr", help="the pod network's range (default 10.244.0.0/16)")
    p.add_argument("--service-cidr", help="the Services' range (default 10.96.0.0/12)")
    p.add_argument("--service-dns-domain", help="the Services' DNS domain (default cluster.local)")
    p.add_argument("--skip-phases", action="append", help="phases to skip, e.g. 'addon/kube-proxy'")
    p.add_argument("--skip-token-print", action="store_true", default=None,
                   help="skip printing the default bootstrap token")
    p.add_argument("--token", help="the bootstrap token, [a-z0-9]{6}.[a-z0-9]{16} (default: a new one)")
    p.add_argument("--token-ttl", help="how long the token lives, e.g. 24h; 0 never expires (default 24h)")
    for flag in ("--upload-certs", "--certificate-key", "--patches", "--feature-gates"):
        p.add_argument(flag, nargs="?", const=True, default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--v", type=int, default=None, dest="verbosity", help="log verbosity")
    return p


_REFUSED = {"upload_certs": "--upload-certs", "certificate_key": "--certificate-key", "patches": "--patches",
            "feature_gates": "--feature-gates"}


def _load(args: argparse.Namespace):
    from kapal.kube.adm.config import load_init_config

    for attr, flag in _REFUSED.items():
        if getattr(args, attr, None) is not None:
            from kapal.errors import Unsupported

            raise Unsupported(f"{flag} is not supported by kapal adm")
    flags: dict[str, Any] = {}
    for action_dest in ("apiserver_advertise_address", "apiserver_bind_port", "apiserver_cert_extra_sans",
                        "cert_dir", "control_plane_endpoint", "cri_socket", "dry_run", "ignore_preflight_errors",
                        "image_repository", "kubernetes_version", "node_name", "pod_network_cidr", "service_cidr",
                        "service_dns_domain", "skip_phases", "skip_token_print", "token", "token_ttl"):
        value = getattr(args, action_dest, None)
        if value is not None:
            flags[action_dest.replace("_", "-")] = value
    if args.verbosity is not None:
        flags["v"] = args.verbosity
    text = args.config.read_text() if args.config else None
    return load_init_config(text, flags)


def _run_init(argv: list[str]) -> int:
    from kapal import errors

    if argv[:1] == ["phase"]:
        return _run_phase(argv[1:])
    args = _init_parser("kapal adm init").parse_args(argv)
    try:
        from kapal.kube.adm.init import InitContext, run_init

        cfg = _load(args)
        run_init(InitContext(cfg, skip_token_print=bool(args.skip_token_print)))
    except errors.KapalError as e:
        if (args.verbosity or 0) >= 5:
            import traceback

            traceback.print_exc()
        return _err(str(e))
    except OSError as e:
        return _err(f"error: {e}")
    return 0


def _phase_help() -> str:
    from kapal.kube.adm.init import PHASES

    lines = ["Usage: kapal adm init phase NAME [SUB-PHASE] [flags]", "", "Available phases:"]
    for p in PHASES:
        lines.append(f"  {p.name:<20} {p.short}")
        for sub in p.subphases:
            lines.append(f"    {sub}")
    return "\n".join(lines)


def _run_phase(argv: list[str]) -> int:
    from kapal import errors
    from kapal.kube.adm.init import InitContext, run_phase

    if not argv or argv[0] in ("-h", "--help"):
        print(_phase_help())
        return 0 if argv else 1
    name, rest = argv[0], argv[1:]
    sub = None
    if rest and not rest[0].startswith("-"):
        sub, rest = rest[0], rest[1:]
    args = _init_parser(f"kapal adm init phase {name}").parse_args(rest)
    try:
        cfg = _load(args)
        ctx = InitContext(cfg, skip_token_print=bool(args.skip_token_print))
        run_phase(ctx, name, sub)
    except errors.KapalError as e:
        return _err(str(e))
    except OSError as e:
        return _err(f"error: {e}")
    return 0


def _run_reset(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal adm reset",
                                description="Undo what 'kapal adm init' or 'join' did to this host.")
    p.add_argument("-f", "--force", action="store_true", help="reset the node without asking for confirmation")
    p.add_argument("--cert-dir", type=Path, help="accepted for kubeadm compatibility: /etc/kubernetes goes entirely")
    p.add_argument("--ignore-preflight-errors", action="append", help="checks whose errors become warnings")
    p.add_argument("--dry-run", action="store_true", help="say what would be done and do nothing")
    args = p.parse_args(argv)
    import os

    from kapal.kube.adm.constants import KubeadmPaths

    if os.geteuid() != 0 and "isprivilegeduser" not in ",".join(args.ignore_preflight_errors or []).lower() \
            and "all" not in ",".join(args.ignore_preflight_errors or []).lower():
        return _err("[preflight] Some fatal errors occurred:\n\t[ERROR IsPrivilegedUser]: user is not running as "
                    "root\n[preflight] If you know what you are doing, you can make a check non-fatal with "
                    "`--ignore-preflight-errors=...`")
    paths = KubeadmPaths()
    print("[reset] WARNING: Changes made to this host by 'kapal adm init' or 'kapal adm join' will be reverted.")
    if args.dry_run:
        print(f"[dryrun] Would stop the kubelet and the engine, remove the kubelet's containers, mounts and cgroups, "
              f"and delete {paths.kubernetes_dir}, the datastore and {paths.kubelet_dir}")
        return 0
    if not args.force:
        print("[reset] Are you sure you want to proceed? [y/N]: ", end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return _err("won't proceed; the user didn't answer (Y|y) in order to continue")
    from kapal.kube.adm.reset import reset

    report = reset(paths, lambda line: print(line, flush=True))
    print("\nThe reset process removed /etc/kubernetes, the cluster's data, the kubelet's directory, its mounts, "
          "cgroups, iptables chains and CNI configuration; the engine's images are kept. Your own kubeconfig "
          "files ($HOME/.kube/config) are left alone: remove them by hand.")
    return 1 if report.problems else 0


def _token_client(kubeconfig: Path | None):
    from kapal.kube.adm.apiclient import ApiClient

    return ApiClient(kubeconfig or Path("/etc/kubernetes/admin.conf"))


def _run_token(argv: list[str]) -> int:
    from kapal import errors

    p = argparse.ArgumentParser(prog="kapal adm token", description="Manage bootstrap tokens.")
    p.add_argument("--kubeconfig", type=Path, help="the kubeconfig to talk to the cluster with "
                                                   "(default /etc/kubernetes/admin.conf)")
    p.add_argument("--dry-run", action="store_true", help="don't apply any changes")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create a bootstrap token on the server")
    c.add_argument("token", nargs="?")
    c.add_argument("--ttl", default="24h0m0s", help="how long the token lives (0: forever; default 24h0m0s)")
    c.add_argument("--description", default="", help="a human friendly description of the token")
    c.add_argument("--usages", default="signing,authentication", help="signing and/or authentication")
    c.add_argument("--groups", default="system:bootstrappers:kubeadm:default-node-token",
                   help="extra groups this token authenticates as")
    c.add_argument("--print-join-command", action="store_true",
                   help="print the full 'kapal adm join' command instead of only the token")
    c.add_argument("--config", type=Path, help="not needed: tokens come from the flags")
    sub.add_parser("list", help="list the bootstrap tokens on the server")
    d = sub.add_parser("delete", help="delete bootstrap tokens by id or full token")
    d.add_argument("tokens", nargs="*")
    sub.add_parser("generate", help="print a new random token without creating it")
    args = p.parse_args(argv)
    try:
        return _token(args)
    except errors.KapalError as e:
        return _err(str(e))


def _token(args: argparse.Namespace) -> int:
    from kapal import errors
    from kapal.kube.adm import tokens
    from kapal.kube.adm.apiclient import DryRunClient
    from kapal.kube.adm.config import BootstrapToken, parse_duration
    from kapal.kube.pki import bootstraptoken as bt

    if args.cmd == "generate":
        print(bt.generate_token())
        return 0
    client = DryRunClient(print) if args.dry_run else _token_client(args.kubeconfig)
    if args.cmd == "create":
        if args.config is not None:
            raise errors.Unsupported("token create --config is not supported; use --ttl, --usages, --groups")
        token = BootstrapToken(token=args.token or bt.generate_token(), description=args.description,
                               ttl=parse_duration(args.ttl, "--ttl") or None,
                               usages=tuple(u for u in args.usages.split(",") if u),
                               groups=tuple(g for g in args.groups.split(",") if g))
        bt.split_token(token.token)
        for usage in token.usages:
            if usage not in bt.USAGES:
                raise errors.Invalid(f'invalid bootstrap token usage string: {usage}, valid usage options: '
                                     f'{",".join(bt.USAGES)}')
        for group in token.groups:
            if not group.startswith(bt.GROUP_PREFIX):
                raise errors.Invalid(f'group "{group}" must start with "{bt.GROUP_PREFIX}"')
        tokens.create_tokens(client, [token], fail_if_exists=True)
        if not args.dry_run:
            tokens.sign_cluster_info(client)
        if args.print_join_command:
            from kapal.kube.pki import load_kubeconfig, spki_sha256

            entry = load_kubeconfig(client.kubeconfig)
            if not entry.ca_pem:
                raise errors.Invalid(f"{client.kubeconfig} names no CA certificate to derive the join hash from")
            endpoint = client.server.removeprefix("https://")
            print(tokens.join_command(endpoint, token.token, spki_sha256(entry.ca_pem), one_line=True))
        else:
            print(token.token)
        return 0
    if args.cmd == "list":
        print(tokens.token_table(tokens.list_token_secrets(client), warn=lambda m: print(m, file=sys.stderr)),
              end="")
        return 0
    if not args.tokens:
        raise errors.Invalid('missing subcommand; \'token delete\' is missing token of form "[a-z0-9]{6}"')
    for item in args.tokens:
        token_id = item
        if not bt.TOKEN_ID_RE.match(item):
            m = bt.TOKEN_RE.match(item)
            if not m:
                raise errors.Invalid(f'given token "{item}" didn\'t match pattern "[a-z0-9]{{6}}" or '
                                     '"[a-z0-9]{6}\\.[a-z0-9]{16}"')
            token_id = m.group(1)
        if not client.delete(f"/api/v1/namespaces/kube-system/secrets/{bt.secret_name(token_id)}") \
                and not args.dry_run:
            raise errors.NotFound(f'failed to delete bootstrap token "{token_id}": secrets '
                                  f'"{bt.secret_name(token_id)}" not found')
        print(f'bootstrap token "{token_id}" deleted')
    if not args.dry_run:
        tokens.sign_cluster_info(client)
    return 0


def _run_certs(argv: list[str]) -> int:
    from kapal import errors
    from kapal.kube.adm import renewal

    p = argparse.ArgumentParser(prog="kapal adm certs", description="Commands related to handling certificates.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("check-expiration", "renew"):
        s = sub.add_parser(name)
        if name == "renew":
            s.add_argument("name", help="a certificate name, or 'all'")
        s.add_argument("--cert-dir", type=Path, default=Path("/etc/kubernetes/pki"),
                       help="where certificates are stored (default /etc/kubernetes/pki)")
        s.add_argument("--kubeconfig-dir", type=Path, default=Path("/etc/kubernetes"),
                       help="where the kubeconfig files are (default /etc/kubernetes)")
        s.add_argument("--config", type=Path, help="accepted: renewals keep each certificate's own subject and SANs")
        s.add_argument("--kubeconfig", type=Path, help="accepted: no cluster is needed")
    args = p.parse_args(argv)
    try:
        if args.cmd == "check-expiration":
            print(renewal.expiration_table(args.cert_dir, args.kubeconfig_dir), end="")
        elif args.name == "all":
            renewal.renew_all(args.cert_dir, args.kubeconfig_dir, print)
        else:
            renewal.renew(renewal.find(args.name), args.cert_dir, args.kubeconfig_dir, print)
    except errors.KapalError as e:
        return _err(str(e))
    return 0


def _run_config(argv: list[str]) -> int:
    from kapal import errors

    if argv[:2] not in (["images", "list"], ["images", "pull"]):
        return _err("usage: kapal adm config images list|pull [--config FILE] [--image-repository REPO] "
                    "[--kubernetes-version V]")
    p = argparse.ArgumentParser(prog=f"kapal adm config images {argv[1]}")
    p.add_argument("--config", type=Path)
    p.add_argument("--image-repository")
    p.add_argument("--kubernetes-version")
    p.add_argument("--cri-socket")
    args = p.parse_args(argv[2:])
    try:
        from kapal.kube.adm import images
        from kapal.kube.adm.config import load_init_config

        flags = {"image-repository": args.image_repository, "kubernetes-version": args.kubernetes_version,
                 "cri-socket": args.cri_socket}
        text = args.config.read_text() if args.config else None
        cfg = load_init_config(text, {k: v for k, v in flags.items() if v} if text is None else {})
        if argv[1] == "list":
            for ref in images.list_images(cfg):
                print(ref)
            return 0
        socket = Path(cfg.cri_socket.removeprefix("unix://"))
        for ref in images.ensure_images(cfg, socket):
            print(f"[config/images] Built {ref}")
    except errors.KapalError as e:
        return _err(str(e))
    return 0


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE.rstrip())
        return 0 if args else 1
    cmd, rest = args[0], args[1:]
    if cmd == "init":
        return _run_init(rest)
    if cmd == "reset":
        return _run_reset(rest)
    if cmd == "token":
        return _run_token(rest)
    if cmd == "certs":
        return _run_certs(rest)
    if cmd == "config":
        return _run_config(rest)
    if cmd == "join":
        return _err("kapal adm join is not implemented yet: this kapal sets up a single control-plane node")
    return _err(f'unknown command "{cmd}" for "kapal adm"\nRun \'kapal adm --help\' for usage.')
