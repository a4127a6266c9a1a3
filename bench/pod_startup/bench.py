"""Pod startup on a `kapal up` cluster: 30 pods created one after another, then 100 at once.

Per pod: seconds from the create request to the first watch event that shows it Running (all containers
started), p50/p99, and the time until all 100 run; then the RSS of the kapal up process (API server,
controllers, scheduler, kubelet), the engine and its shims. Acceptance: p99 <= 2 s for the sequential
pods; goal: the 100 concurrent pods all Running within 20 s.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import IMAGE, BenchCluster

SEQUENTIAL = 30
CONCURRENT = 100


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "pods"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}}


class RunningWatch:
    """Watches pods labelled bench=pods; records when each first shows every container running."""

    def __init__(self, core) -> None:  # type: ignore[no-untyped-def]
        from kubernetes import watch

        self.core = core
        self.running: dict[str, float] = {}
        self.cond = threading.Condition()
        self.w = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._events()
        except Exception:  # the stream ends when the cluster goes away
            pass

    def _events(self) -> None:
        for ev in self.w.stream(self.core.list_namespaced_pod, "default", label_selector="bench=pods",
                                timeout_seconds=3600):
            p = ev["object"]
            statuses = p.status.container_statuses or []
            if p.status.phase == "Running" and statuses and all(s.state.running for s in statuses):
                with self.cond:
                    self.running.setdefault(p.metadata.name, time.monotonic())
                    self.cond.notify_all()

    def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.running for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self) -> None:
        self.w.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    c = BenchCluster()
    try:
        c.up()
        c.import_busybox()
        core = c.core()
        watch = RunningWatch(core)
        time.sleep(0.5)
        core.create_namespaced_pod("default", pod("warmup"))  # the first pod pays for cold caches
        if not watch.wait(["warmup"], 60):
            print("pod_startup: the warm-up pod never ran; is the engine able to run pods?", file=sys.stderr)
            return 1
        seq: list[float] = []
        for i in range(SEQUENTIAL):
            name = f"seq-{i}"
            t0 = time.monotonic()
            core.create_namespaced_pod("default", pod(name))
            if not watch.wait([name], 60):
                print(f"pod_startup: {name} did not run within 60 s", file=sys.stderr)
                return 1
            seq.append(watch.running[name] - t0)
        gone = ["warmup", *(f"seq-{i}" for i in range(SEQUENTIAL))]
        for name in gone:  # the node takes 110 pods: make room for the concurrent batch
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and core.list_namespaced_pod("default", label_selector="bench=pods").items:
            time.sleep(0.2)
        starts: dict[str, float] = {}

        def create(i: int) -> None:
            name = f"par-{i}"
            starts[name] = time.monotonic()
            core.create_namespaced_pod("default", pod(name))

        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(create, range(CONCURRENT)))
        names = [f"par-{i}" for i in range(CONCURRENT)]
        ok = watch.wait(names, 120)
        all_running = max(watch.running.get(n, time.monotonic()) for n in names) - t0
        par = [watch.running[n] - starts[n] for n in names if n in watch.running]
        if not ok:
            from collections import Counter

            why = Counter()
            for n in names:
                if n not in watch.running:
                    st = core.read_namespaced_pod(n, "default").status
                    cs = (st.container_statuses or [None])[0]
                    waiting = cs.state.waiting if cs is not None and cs.state is not None else None
                    why[f"{st.phase}: {waiting.reason if waiting else ''} {waiting.message if waiting else ''}"] += 1
            for text, count in why.most_common(5):
                print(f"pod_startup: {count} pods never ran: {text[:300]}", file=sys.stderr)
        time.sleep(2)
        rss = c.rss()
        watch.stop()
        watch.thread.join(5)
        print("== pod_startup: create -> Running seen through a watch (kapal up, busybox `sleep`)")
        print(f"sequential {SEQUENTIAL}: p50 {statistics.median(seq):.3f} s  p99 {pct(seq, 99):.3f} s  "
              f"max {max(seq):.3f} s   (acceptance: p99 <= 2 s: {'PASS' if pct(seq, 99) <= 2 else 'FAIL'})")
        print(f"concurrent {CONCURRENT}: p50 {statistics.median(par):.3f} s  p99 {pct(par, 99):.3f} s  "
              f"all running after {all_running:.2f} s{'' if ok else ' (some never ran)'}   "
              f"(goal <= 20 s: {'met' if ok and all_running <= 20 else 'missed'})")
        print(f"RSS with {CONCURRENT} pods: kapal up (apiserver+controllers+scheduler+kubelet) "
              f"{rss['kapal_up'] / 1024:.0f} MB, engine {rss['engine'] / 1024:.0f} MB, "
              f"{rss['shim_count']} shims {rss['shims'] / 1024:.0f} MB "
              f"({rss['shims'] / max(1, rss['shim_count']) / 1024:.1f} MB each)")
        return 0
    finally:
        c.down()


if __name__ == "__main__":
    sys.exit(main())
