"""`kapal up` timing and footprint: seconds until the node is Ready and until a first pod runs, on a fresh
directory (certificates made) and on a second start (state reused), and the cluster's idle RSS after 60 s.

Goals: node Ready <= 3 s after `kapal up`; idle RSS <= 200 MB (k3s idles at 500 MB and more).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pod_startup"))

from cluster import IMAGE, BenchCluster

IDLE_SECONDS = 60


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


def main() -> int:
    c = BenchCluster()
    try:
        started = time.monotonic()
        cold = c.up()
        c.import_busybox()
        cold_pod = first_pod(c, started, "first")
        c.stop_process()
        started = time.monotonic()
        warm = c.up()
        warm_pod = first_pod(c, started, "second")
        time.sleep(IDLE_SECONDS)
        rss = c.rss()
        total = (rss["kapal_up"] + rss["engine"]) / 1024
        print("== cluster_up: kapal up (API server, controller manager, scheduler, kubelet, proxy, DNS; engine as a "
              "child)")
        print(f"node Ready after {cold:.2f} s (fresh directory: CA and certificates made), "
              f"{warm:.2f} s (second start)   (goal <= 3 s: {'met' if warm <= 3 else 'missed'})")
        print(f"first pod Running {cold_pod:.2f} s after `kapal up` (fresh; includes importing busybox), "
              f"{warm_pod:.2f} s (second start)")
        print(f"idle RSS after {IDLE_SECONDS} s with two pods: kapal up {rss['kapal_up'] / 1024:.0f} MB + engine "
              f"{rss['engine'] / 1024:.0f} MB = {total:.0f} MB (goal <= 200 MB: {'met' if total <= 200 else 'missed'}"
              f"); plus {rss['shim_count']} shim(s) {rss['shims'] / 1024:.1f} MB")
        return 0
    finally:
        c.down()


if __name__ == "__main__":
    sys.exit(main())
