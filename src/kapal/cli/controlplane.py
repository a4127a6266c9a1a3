"""`kapal controller-manager`, `kapal scheduler` and `kapal hollow-nodes`: the control-plane components, with the
upstream components' flag names for what they support. Each runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _duration(text: str) -> float:
    """Go durations as the upstream flags take them: 15s, 1m30s, 500ms, or plain seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not num:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 15s, 1m30s, 500ms)")
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: missing unit")
    return total


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "t"):
        return True
    if text.lower() in ("0", "false", "no", "f"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _common(p: argparse.ArgumentParser, lease_name: str, port: int) -> None:
    p.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig with the component's identity")
    p.add_argument("--master", help="not supported: the server comes from --kubeconfig")
    p.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                   help="take part in leader election on a Lease before acting (default true)")
    p.add_argument("--leader-elect-lease-duration", type=_duration, default=15.0, help="default 15s")
    p.add_argument("--leader-elect-renew-deadline", type=_duration, default=10.0, help="default 10s")
    p.add_argument("--leader-elect-retry-period", type=_duration, default=2.0, help="default 2s")
    p.add_argument("--leader-elect-resource-lock", default="leases", help="only 'leases' is supported")
    p.add_argument("--leader-elect-resource-name", default=lease_name, help=f"default {lease_name}")
    p.add_argument("--leader-elect-resource-namespace", default="kube-system", help="default kube-system")
    p.add_argument("--kube-api-qps", type=float, default=0.0,
                   help="client-side request rate limit (default 0: none; upstream 20 or 50)")
    p.add_argument("--kube-api-burst", type=int, default=0, help="burst for --kube-api-qps")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the /healthz endpoint")
    p.add_argument("--secure-port", type=int, default=port,
                   help=f"HTTPS port of /healthz, /livez, /readyz (default {port}; 0 disables)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    for flag in ("--authentication-kubeconfig", "--authorization-kubeconfig", "--client-ca-file",
                 "--requestheader-client-ca-file"):
        p.add_argument(flag, help="accepted: the health endpoints are open to everyone, as upstream's always are")


def _leader_flags(args: argparse.Namespace, name: str) -> Any:
    from kapal.kube.client.leaderelection import LeaderElectionFlags

    if args.leader_elect_resource_lock != "leases":
        raise SystemExit(f"kapal {name}: --leader-elect-resource-lock={args.leader_elect_resource_lock} is not "
                         "supported; use leases")
    if args.master:
        raise SystemExit(f"kapal {name}: --master is not supported; the server comes from --kubeconfig")
    return LeaderElectionFlags(args.leader_elect, args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
                               args.leader_elect_retry_period, args.leader_elect_resource_namespace,
                               args.leader_elect_resource_name)


def _health_ssl(args: argparse.Namespace, name: str) -> Any:
    """A throwaway self-signed serving certificate for /healthz, as upstream components make for themselves."""
    if not args.secure_port:
        return None
    import ssl

    from kapal.kube import pki

    ca = pki.new_ca(f"{name}-ca@self-signed")
    leaf = pki.issue(ca, f"{name}@self-signed", dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.load_cert_chain_pem(ctx, leaf.cert_pem(), leaf.key_pem())
    return ctx


def _logging(verbosity: int) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO if verbosity >= 1
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(name: str, make: Any) -> int:
    """Run `make(stop)` on a fresh loop until SIGINT/SIGTERM; errors become a message and exit 1."""
    import asyncio
    import signal

    from kapal import errors
    from kapal.kube.client.tuning import trim_tls_read_buffers

    trim_tls_read_buffers()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await make(stop)

    try:
        asyncio.run(main())
    except errors.KapalError as e:
        print(f"kapal {name}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"kapal {name}: {e}", file=sys.stderr)
        return 2
    return 0


# --- scheduler ------------------------------------------------------------------------------------------------------

def scheduler_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal scheduler", description="Assign pending pods to nodes.")
    _common(p, "kube-scheduler", 10259)
    p.add_argument("--scheduler-name", default="default-scheduler",
                   help="schedule pods whose spec.schedulerName is this (default default-scheduler)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="stop filtering after this share of nodes fit (default 0: adaptive, as upstream)")
    p.add_argument("--parallel-binds", type=int, default=64, help="bindings in flight at once (default 64)")
    p.add_argument("--config", help="not supported: KubeSchedulerConfiguration files")
    args = p.parse_args(argv)
    if args.config:
        print("kapal scheduler: --config (KubeSchedulerConfiguration) is not supported; use the flags",
              file=sys.stderr)
        return 2
    _logging(args.verbosity)
    from kapal.kube.scheduler.app import SchedulerConfig, run_scheduler
    from kapal.kube.scheduler.scheduler import SchedulerSettings

    config = SchedulerConfig(
        kubeconfig=args.kubeconfig, leader_election=_leader_flags(args, "scheduler"),
        settings=SchedulerSettings(args.scheduler_name, args.percentage_of_nodes_to_score, args.parallel_binds),
        kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst, bind_address=args.bind_address,
        secure_port=args.secure_port, health_ssl=_health_ssl(args, "kube-scheduler"))
    return _run("scheduler", lambda stop: run_scheduler(config, stop))


# --- controller manager ---------------------------------------------------------------------------------------------

# --concurrent-*-syncs flags: flag suffix -> (controller, upstream default)
CONCURRENCY_FLAGS = {
    "deployment-syncs": ("deployment-controller", 5), "replicaset-syncs": ("replicaset-controller", 5),
    "rc-syncs": ("replicationcontroller-controller", 5), "job-syncs": ("job-controller", 5),
    "cron-job-syncs": ("cronjob-controller", 5), "daemonset-syncs": ("daemonset-controller", 2),
    "gc-syncs": ("garbage-collector-controller", 20), "namespace-syncs": ("namespace-controller", 10),
    "service-endpoint-syncs": ("endpoints-controller", 5),
    "service-endpoint-slice-syncs": ("endpointslice-controller", 5),
    "serviceaccount-token-syncs": ("serviceaccount-token-controller", 5),
    "ttl-after-finished-syncs": ("ttl-after-finished-controller", 5),
}


def controller_manager_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal controller-manager",
                                description="Run the controllers that converge the cluster to its API objects.")
    _common(p, "kube-controller-manager", 10257)
    p.add_argument("--controllers", action="append", default=[],
                   help="controllers to run: '*' (all on by default), 'name', '-name' (default '*')")
    p.add_argument("--use-service-account-credentials", type=_bool, nargs="?", const=True, default=False,
                   help="run each controller as its own service account in kube-system")
    p.add_argument("--cluster-cidr", default="", help="pod address range, e.g. 10.244.0.0/16")
    p.add_argument("--allocate-node-cidrs", type=_bool, nargs="?", const=True, default=False,
                   help="give every node a spec.podCIDR from --cluster-cidr")
    p.add_argument("--node-cidr-mask-size", type=int, default=24, help="size of each node's pod CIDR (default 24)")
    p.add_argument("--service-cluster-ip-range", default="", help="ClusterIP range (kept apart from pod CIDRs)")
    p.add_argument("--service-account-private-key-file", type=Path,
                   help="key that signs legacy service-account token secrets")
    p.add_argument("--root-ca-file", type=Path,
                   help="CA bundle published as kube-root-ca.crt (default: the kubeconfig's CA)")
    p.add_argument("--cluster-signing-cert-file", type=Path, help="CA certificate that signs approved CSRs")
    p.add_argument("--cluster-signing-key-file", type=Path, help="its key")
    p.add_argument("--cluster-signing-duration", type=_duration, default=365 * 24 * 3600.0,
                   help="lifetime of signed certificates (default 8760h)")
    p.add_argument("--cluster-name", default="kubernetes", help="accepted for compatibility (cloud resource names)")
    for suffix, (_, default) in CONCURRENCY_FLAGS.items():
        p.add_argument(f"--concurrent-{suffix}", type=int, default=default, help=f"workers (default {default})")
    p.add_argument("--node-monitor-grace-period", type=_duration, default=40.0,
                   help="a node whose lease is older than this is marked NotReady (default 40s)")
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                   help="finished pods kept before the oldest are deleted (default 12500)")
    p.add_argument("--cronjob-clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _logging(args.verbosity)
    import os

    from kapal.kube.controllers.manager import ControllerManagerConfig, run_controller_manager

    speed = float(os.environ.get("KAPAL_CRONJOB_CLOCK_SPEED", args.cronjob_clock_speed) or 1.0)
    concurrency = {name: getattr(args, f"concurrent_{suffix.replace('-', '_')}")
                   for suffix, (name, _) in CONCURRENCY_FLAGS.items()}
    config = ControllerManagerConfig(
        kubeconfig=args.kubeconfig, controllers=args.controllers or ["*"],
        leader_election=_leader_flags(args, "controller-manager"),
        use_service_account_credentials=args.use_service_account_credentials, cluster_cidr=args.cluster_cidr,
        allocate_node_cidrs=args.allocate_node_cidrs, node_cidr_mask_size=args.node_cidr_mask_size,
        service_cluster_ip_range=args.service_cluster_ip_range,
        service_account_private_key_file=args.service_account_private_key_file, root_ca_file=args.root_ca_file,
        cluster_signing_cert_file=args.cluster_signing_cert_file,
        cluster_signing_key_file=args.cluster_signing_key_file,
        cluster_signing_duration=args.cluster_signing_duration, concurrency=concurrency,
        kube_api_qps=args.kube_api_qps, kube_api_burst=args.kube_api_burst, bind_address=args.bind_address,
        secure_port=args.secure_port, health_ssl=_health_ssl(args, "kube-controller-manager"),
        node_monitor_grace_period=args.node_monitor_grace_period,
        terminated_pod_gc_threshold=args.terminated_pod_gc_threshold, cronjob_clock_speed=speed)
    return _run("controller-manager", lambda stop: run_controller_manager(config, stop))


# --- hollow nodes ---------------------------------------------------------------------------------------------------

def hollow_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kapal hollow-nodes",
                                description="Register N simulated nodes and act as their kubelet (no processes).")
    p.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig the nodes talk with")
    p.add_argument("--count", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--name-prefix", default="hollow-node-", help="node names are PREFIX0..PREFIX{N-1}")
    p.add_argument("--start-index", type=int, default=0, help="first node number (default 0)")
    p.add_argument("--cpu", default="4", help="capacity and allocatable cpu per node (default 4)")
    p.add_argument("--memory", default="16Gi", help="memory per node (default 16Gi)")
    p.add_argument("--max-pods", type=int, default=110, help="pods per node (default 110)")
    p.add_argument("--node-labels", default="", help="extra labels, k=v,k2=v2")
    p.add_argument("--register-with-taints", default="", help="taints, key=value:Effect,...")
    p.add_argument("--node-lease-renew-interval", type=_duration, default=10.0, help="default 10s")
    p.add_argument("--workers", type=int, default=16, help="pod status updates in flight (default 16)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    args = p.parse_args(argv)
    _logging(args.verbosity)
    labels = {}
    for item in filter(None, args.node_labels.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            print(f"kapal hollow-nodes: --node-labels: {item!r} is not key=value", file=sys.stderr)
            return 2
        labels[k] = v
    taints = []
    for item in filter(None, args.register_with_taints.split(",")):
        kv, sep, effect = item.partition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            print(f"kapal hollow-nodes: --register-with-taints: {item!r} is not key[=value]:Effect", file=sys.stderr)
            return 2
        k, _, v = kv.partition("=")
        taints.append({"key": k, "value": v, "effect": effect} if v else {"key": k, "effect": effect})
    from kapal.kube.hollow import run_hollow_nodes
    from kapal.kube.hollow.nodes import HollowConfig

    config = HollowConfig(count=args.count, name_prefix=args.name_prefix, start_index=args.start_index,
                          cpu=args.cpu, memory=args.memory, pods=args.max_pods, labels=labels, taints=taints,
                          lease_interval=args.node_lease_renew_interval, workers=args.workers)
    return _run("hollow-nodes", lambda stop: run_hollow_nodes(args.kubeconfig, config, stop))


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    if verb == "scheduler":
        return scheduler_main(rest)
    if verb == "hollow-nodes":
        return hollow_main(rest)
    if verb == "controller-manager":
        return controller_manager_main(rest)
    print(f"kapal: unknown control-plane verb {verb}", file=sys.stderr)
    return 125
