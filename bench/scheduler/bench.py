"""Scheduler throughput on hollow nodes: N nodes, P plain pods created while no scheduler runs, then the
scheduler started and timed until every pod is bound; then the same with P pods carrying required pod
anti-affinity (G groups, one pod per group per node). Prints pods/s and where the scheduler's time went
(cProfile of the scheduler process).

Usage: bench/scheduler/run [--nodes 1000] [--pods 10000] [--anti-pods 10000] [--groups 10] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    PodClock,
    anti_affinity_pod,
    client,
    cpu_seconds,
    create_pods,
    plain_pod,
    profile_summary,
    start_cluster,
    wait_nodes,
)

from kapal.kube.client.kinds import NAMESPACES

GOAL = 200.0  # pods/s for plain pods (issue 7)
UPSTREAM = "upstream kube-scheduler: roughly 300-700 pods/s at 5,000 nodes on big machines"


async def phase(cluster, c, namespace: str, pods: list[dict], profile: Path | None, label: str) -> dict:
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await asyncio.sleep(0.5)  # the namespace's default ServiceAccount
    took = await create_pods(c, namespace, pods)
    print(f"[{label}] created {len(pods)} pods in {took:.1f}s ({len(pods) / took:.0f}/s)", flush=True)
    clock = PodClock(c, namespace)
    await clock.start()
    started = time.monotonic()
    sched = cluster.start(f"scheduler-{label}", "scheduler", "--kubeconfig", str(cluster.kubeconfig),
                          "--secure-port", "0", "--leader-elect=false", profile=profile)
    others = {"API server": cluster.api.proc.pid, "hollow nodes": cluster.procs[0].pid}  # type: ignore[attr-defined]
    cpu_before = {name: cpu_seconds(pid) for name, pid in others.items()}
    await clock.wait("bound", len(pods), timeout=max(600, len(pods) / 5))
    times = sorted(clock.bound.values())
    first, last = times[0], times[-1]
    cpu = {"scheduler": cpu_seconds(sched.pid)}
    cpu.update({name: cpu_seconds(pid) - cpu_before[name] for name, pid in others.items()})
    await clock.wait("running", len(pods), timeout=600)
    running_last = max(clock.running.values())
    clock.stop()
    cluster.stop(sched)
    n = len(pods)
    result = {"pods": n, "rate": n / max(last - first, 1e-9), "from_start": last - started,
              "startup": first - started, "all_running": running_last - started, "cpu": cpu}
    print(f"[{label}] bound {n} pods: {result['rate']:.0f} pods/s between the first and the last binding; "
          f"{result['from_start']:.1f}s from scheduler start (first binding after {result['startup']:.1f}s); "
          f"all Running after {result['all_running']:.1f}s", flush=True)
    print(f"[{label}] CPU seconds until the last binding: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()),
          flush=True)
    return result


async def cycles_only(nodes: int, pods: int, anti: bool) -> float:
    """Scheduling cycles alone (filter, score, assume) over an in-memory cache: the algorithm's own cost."""
    from kapal.kube.client.client import ApiClient
    from kapal.kube.client.config import ClientConfig
    from kapal.kube.client.informer import InformerFactory
    from kapal.kube.scheduler.nodeinfo import pod_info
    from kapal.kube.scheduler.scheduler import Scheduler

    c = ApiClient(ClientConfig(server="https://127.0.0.1:1"))  # never contacted
    s = Scheduler(c, InformerFactory(c))
    for i in range(nodes):
        s.cache.set_node({"metadata": {"name": f"n{i}", "labels": {"kubernetes.io/hostname": f"n{i}"}},
                          "spec": {}, "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}})
    made = [anti_affinity_pod(f"a{i}", f"g{i % 10}") if anti else plain_pod(f"p{i}") for i in range(pods)]
    for p in made:
        p["metadata"]["namespace"] = "default"
    started = time.perf_counter()
    for p in made:
        info = pod_info(p, f"default/{p['metadata']['name']}")
        s.cache.assume(info, s.find_node(info).node)
    return pods / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> int:
    import cProfile

    plain_cycles = await cycles_only(args.nodes, min(args.pods, 3000), False)
    anti_cycles = await cycles_only(args.nodes, min(args.anti_pods or 3000, 3000), True)
    print(f"scheduling cycles alone, {args.nodes} nodes: {plain_cycles:.0f} plain pods/s, "
          f"{anti_cycles:.0f} anti-affinity pods/s (filter + score + assume, no API)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="kapal-bench-scheduler-"))
    cycle_profile = tmp / "cycles.prof"
    prof = cProfile.Profile()
    prof.enable()
    await cycles_only(args.nodes, 1000, False)
    prof.disable()
    prof.dump_stats(str(cycle_profile))
    cluster = start_cluster(tmp)
    c = client(cluster.kubeconfig)
    try:
        cluster.start("hollow", "hollow-nodes", "--kubeconfig", str(cluster.kubeconfig), "--count",
                      str(args.nodes), "--workers", "32")
        took = await wait_nodes(c, args.nodes)
        print(f"{args.nodes} hollow nodes registered in {took:.1f}s", flush=True)
        prof1 = tmp / "plain.prof" if args.profile else None
        plain = await phase(cluster, c, "bench-plain", [plain_pod(f"p-{i}") for i in range(args.pods)], prof1,
                            "plain")
        anti = None
        prof2 = None
        if args.anti_pods:
            prof2 = tmp / "anti.prof" if args.profile else None
            pods = [anti_affinity_pod(f"a-{i}", f"g{i % args.groups}") for i in range(args.anti_pods)]
            anti = await phase(cluster, c, "bench-anti", pods, prof2, "anti-affinity")
        print()
        print(f"scheduler, {args.nodes} hollow nodes (2 cores, API server + hollow nodes on the same machine):")
        print(f"  plain pods:          {plain['rate']:7.0f} pods/s  ({plain['rate'] / GOAL:.2f}x the goal of "
              f"{GOAL:.0f} pods/s)")
        if anti is not None:
            print(f"  pod anti-affinity:   {anti['rate']:7.0f} pods/s  ({anti['rate'] / plain['rate']:.2f}x plain)")
        print(f"  cycles alone:        {plain_cycles:7.0f} plain, {anti_cycles:.0f} anti-affinity pods/s "
              "(no API server: the algorithm's own ceiling)")
        print(f"  reference: {UPSTREAM}")
        print("\nwhere a scheduling cycle's time goes, plain pods (cProfile of the cycles alone, by own time):")
        print(profile_summary(cycle_profile, 8))
        if prof1 is not None:
            print("\nwhere the scheduler's time goes, plain pods (cProfile, by own time):")
            print(profile_summary(prof1))
        if prof2 is not None:
            print("\nwith pod anti-affinity:")
            print(profile_summary(prof2))
        return 0
    finally:
        await c.close()
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=10000)
    p.add_argument("--anti-pods", type=int, default=10000)
    p.add_argument("--groups", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="run the scheduler under cProfile (slower) and print it")
    sys.exit(asyncio.run(main(p.parse_args())))
