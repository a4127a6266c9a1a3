"""A 1,000-replica Deployment from `create` to every pod Running on hollow nodes: API server, controller
manager, scheduler and hollow nodes as separate processes, as in a cluster. Prints when the pods were all
created, bound and Running, and where the controller manager's time went (cProfile).

Usage: bench/controllers/run [--replicas 1000] [--nodes 100] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scheduler"))

from harness import PodClock, client, profile_summary, start_cluster, wait_nodes

from kapal.kube.client.kinds import DEPLOYMENTS, NAMESPACES, PODS


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kapal-bench-controllers-"))
    cluster = start_cluster(tmp)
    c = client(cluster.kubeconfig)
    profile = None if args.no_profile else tmp / "kcm.prof"
    try:
        cluster.start("hollow", "hollow-nodes", "--kubeconfig", str(cluster.kubeconfig), "--count", str(args.nodes),
                      "--workers", "32")
        cluster.start("scheduler", "scheduler", "--kubeconfig", str(cluster.kubeconfig), "--secure-port", "0",
                      "--leader-elect=false")
        kcm = cluster.start("kcm", "controller-manager", "--kubeconfig", str(cluster.kubeconfig), "--secure-port",
                            "0", "--leader-elect=false", profile=profile)
        await wait_nodes(c, args.nodes)
        ns = "bench"
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await asyncio.sleep(2)  # controllers synced, the namespace's ServiceAccount made
        clock = PodClock(c, ns)
        await clock.start()
        created_at: dict[str, float] = {}
        seen = asyncio.Event()

        async def count_created() -> None:
            rv = (await c.list(PODS, ns, limit=1))["metadata"]["resourceVersion"]
            async for ev in c.watch(PODS, ns, resource_version=rv, timeout_seconds=600):
                if ev.type == "ADDED":
                    created_at.setdefault(ev.object["metadata"]["name"], time.monotonic())
                    if len(created_at) >= args.replicas:
                        seen.set()
                        return

        counter = asyncio.create_task(count_created())
        started = time.monotonic()
        await c.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": ns},
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"automountServiceAccountToken": False,
                                           "containers": [{"name": "c", "image": "busybox"}]}}}}, ns)
        await clock.wait("running", args.replicas, timeout=900)
        running = max(clock.running.values()) - started
        await asyncio.wait_for(seen.wait(), 60)
        created = max(created_at.values()) - started
        bound = max(clock.bound.values()) - started
        while True:
            d = await c.get(DEPLOYMENTS, "big", ns)
            if (d.get("status") or {}).get("availableReplicas") == args.replicas:
                break
            await asyncio.sleep(0.1)
        available = time.monotonic() - started
        counter.cancel()
        clock.stop()
        cluster.stop(kcm)
        print(f"Deployment of {args.replicas} replicas on {args.nodes} hollow nodes (2 cores, every component on "
              "this machine):")
        print(f"  all pods created   {created:6.1f}s  ({args.replicas / created:.0f} pods/s)")
        print(f"  all pods bound     {bound:6.1f}s")
        print(f"  all pods Running   {running:6.1f}s  ({args.replicas / running:.0f} pods/s end to end)")
        print(f"  status available   {available:6.1f}s  (Deployment .status.availableReplicas = {args.replicas})")
        if profile is not None:
            print("\nwhere the controller manager's time goes (cProfile, by own time):")
            print(profile_summary(profile))
        return 0
    finally:
        await c.close()
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--no-profile", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))
