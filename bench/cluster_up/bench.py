"""`kapal up` timing and footprint: seconds until the node is Ready and until a first pod runs, on a fresh
directory (CA, certificates, service accounts, pod CIDR all made) and on a second start (state reused), medians
over --runs rounds; the cluster's idle RSS after 60 s; k3s measured the same way when it is installed.

Goals: node Ready <= 3 s after `kapal up` (fresh and second start); idle RSS <= 200 MB (k3s idles at 500 MB+).

    bench/cluster_up/run [--runs N] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pod_startup"))

from cluster import IMAGE, BenchCluster, rss_kb

GOAL_READY = 3.0
GOAL_RSS_MB = 200


def first_pod(c: BenchCluster, started: float, name: str) -> float:
    core = c.core()
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = core.read_namespaced_pod(name, "default")
        if p.status.phase == "Running":
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError("the first pod did not run within 60 s")


def one_round(idle: float | None) -> dict[str, float]:
    """A fresh `kapal up`, a first pod, a stop and a second start with another pod; the idle RSS when asked."""
    c = BenchCluster()
    try:
        started = time.monotonic()
        out = {"fresh": c.up()}
        c.import_busybox()
        out["fresh_pod"] = first_pod(c, started, "first")
        c.stop_process()
        started = time.monotonic()
        out["warm"] = c.up()
        out["warm_pod"] = first_pod(c, started, "second")
        if idle is not None:
            time.sleep(idle)
            rss = c.rss()
            out.update(rss_up=rss["kapal_up"] / 1024, rss_engine=rss["engine"] / 1024, rss_shims=rss["shims"] / 1024,
                       shim_count=rss["shim_count"])
        return out
    finally:
        c.down()


def k3s_ready(k3s: str) -> tuple[float, float]:
    """Seconds from `k3s server` (fresh data dir, the bundled extras off) to node Ready, and its RSS (MB) then."""
    work = Path(tempfile.mkdtemp(prefix="kapal-bench-k3s-"))
    kubeconfig = work / "kubeconfig"
    started = time.monotonic()
    with open(work / "k3s.log", "wb") as log:
        proc = subprocess.Popen([k3s, "server", "--data-dir", str(work / "data"), "--write-kubeconfig",
                                 str(kubeconfig), "--disable", "traefik,servicelb,metrics-server,local-storage,coredns",
                                 "--https-listen-port", "16443"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if kubeconfig.exists():
                r = subprocess.run([k3s, "kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "-o",
                                    "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"],
                                   capture_output=True, text=True)
                if r.stdout.strip() == "True":
                    return time.monotonic() - started, rss_kb(proc.pid) / 1024
            time.sleep(0.1)
        raise RuntimeError(f"k3s did not report its node Ready within 120 s; see {work / 'k3s.log'}")
    finally:
        proc.terminate()  # no pods were scheduled (CoreDNS and the bundled extras are off): nothing else to stop
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds (fresh + second start each); default 3")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idling before the RSS is read (last round)")
    args = ap.parse_args()
    rounds = [one_round(args.idle if i == args.runs - 1 else None) for i in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def each(key: str) -> str:
        return ", ".join(f"{r[key]:.2f}" for r in rounds)

    last = rounds[-1]
    total = last["rss_up"] + last["rss_engine"]
    print(f"== cluster_up: kapal up (API server, controller manager, scheduler, kubelet, proxy, DNS; engine as a "
          f"child), medians of {args.runs} rounds")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("   (PYTHONDONTWRITEBYTECODE is set: every start compiles kapal's modules from source, ~0.1 s more "
              "than an installed package)")
    for label, key in (("fresh directory (CA, certificates, service accounts, pod CIDR made)", "fresh"),
                       ("second start (state reused)", "warm")):
        m = med(key)
        print(f"node Ready   {m:5.2f} s  {label}   [{each(key)}]   (goal <= {GOAL_READY:.0f} s: "
              f"{'met' if m <= GOAL_READY else 'missed'})")
    print(f"first pod    {med('fresh_pod'):5.2f} s  after a fresh `kapal up` (includes importing busybox)   "
          f"[{each('fresh_pod')}]")
    print(f"first pod    {med('warm_pod'):5.2f} s  after a second start   [{each('warm_pod')}]")
    print(f"idle RSS after {args.idle:.0f} s with two pods: kapal up {last['rss_up']:.0f} MB + engine "
          f"{last['rss_engine']:.0f} MB = {total:.0f} MB (goal <= {GOAL_RSS_MB} MB: "
          f"{'met' if total <= GOAL_RSS_MB else 'missed'}); plus {last['shim_count']:.0f} shim(s) "
          f"{last['rss_shims']:.1f} MB")
    k3s = shutil.which("k3s")
    if k3s is None:
        print("k3s: not installed on this host, so no k3s figures in this run")
    else:
        ready, rss = k3s_ready(k3s)
        print(f"k3s server: node Ready {ready:.2f} s (fresh data dir); RSS then {rss:.0f} MB; "
              f"kapal up fresh / k3s = {med('fresh') / ready:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
