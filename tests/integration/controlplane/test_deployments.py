"""Deployments as kubectl users drive them, on 3 hollow nodes: create, rollout status, set image (a rolling
update that stays within maxSurge/maxUnavailable, leaving two ReplicaSets), rollout undo back to the first
template, scale, pause/resume, Recreate. Each kubectl version in KAPAL_KUBECTL_VERSIONS runs the flow."""

from __future__ import annotations

import threading

import pytest
from controlplane_harness import Kubectl, kubectl_versions, wait_for


@pytest.fixture(params=kubectl_versions())
def kubectl_v(request, plane):
    k = Kubectl(request.param, plane.tmp / f"kubectl-{request.param}", plane.kubeconfig)
    if not k.available:
        pytest.skip(f"kubectl {request.param} is not installed at {k.binary}")
    return k


class RolloutWatch:
    """Watches a namespace's ReplicaSets and pods with the Python client and records the worst moments:
    the most replicas asked for across ReplicaSets and the fewest ready pods not being deleted."""

    def __init__(self, api, namespace: str, selector: str) -> None:
        from kubernetes import client, watch

        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.namespace, self.selector = namespace, selector
        self.watch = watch.Watch
        self.max_desired = 0
        self.min_ready: int | None = None
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rs, daemon=True), threading.Thread(target=self._pods,
                                                                                          daemon=True)]

    def _rs(self) -> None:
        sets: dict[str, int] = {}
        try:
            w = self.watch()
            # deserialize=False until new ReplicaSets carry status.replicas: 0 (see .coord/requests-core.md)
            for ev in w.stream(self.apps.list_namespaced_replica_set, self.namespace, label_selector=self.selector,
                               timeout_seconds=60, deserialize=False):
                rs = ev["object"]
                uid = rs["metadata"]["uid"]
                if ev["type"] == "DELETED":
                    sets.pop(uid, None)
                else:
                    sets[uid] = rs["spec"].get("replicas") or 0
                self.max_desired = max(self.max_desired, sum(sets.values()))
                if self._stop.is_set():
                    w.stop()
        except BaseException as e:  # surfaced by the test
            self.errors.append(e)

    def _pods(self) -> None:
        ready: dict[str, bool] = {}
        try:
            w = self.watch()
            for ev in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                               timeout_seconds=60):
                pod = ev["object"]
                if ev["type"] == "DELETED" or pod.metadata.deletion_timestamp:
                    ready.pop(pod.metadata.uid, None)
                else:
                    ready[pod.metadata.uid] = any(c.type == "Ready" and c.status == "True"
                                                  for c in (pod.status.conditions or []))
                n = sum(ready.values())
                self.ready_now = n
                if self.armed:
                    self.min_ready = n if self.min_ready is None else min(self.min_ready, n)
                if self._stop.is_set():
                    w.stop()
        except BaseException as e:
            self.errors.append(e)

    armed = False
    ready_now = 0

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()


def rs_by_image(kubectl: Kubectl, ns: str) -> dict[str, int]:
    out = {}
    for rs in kubectl.json("-n", ns, "get", "rs")["items"]:
        out[rs["spec"]["template"]["spec"]["containers"][0]["image"]] = rs["spec"]["replicas"]
    return out


def test_rolling_update_undo_scale(kubectl_v: Kubectl, namespace: str, api):
    k, ns = kubectl_v, namespace
    k("-n", ns, "create", "deployment", "web", "--image=busybox:1.35", "--replicas=5")
    out = k.out("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    assert 'deployment "web" successfully rolled out' in out
    d = k.json("-n", ns, "get", "deployment", "web")
    assert d["status"]["readyReplicas"] == 5 and d["status"]["updatedReplicas"] == 5
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert {c["type"]: c["reason"] for c in d["status"]["conditions"]} == {
        "Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    pods = k.json("-n", ns, "get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Running" and p["status"]["podIP"] for p in pods)
    assert len({p["spec"]["nodeName"] for p in pods}) == 3, "5 pods spread over the 3 nodes"

    # 25% of 5: maxSurge rounds up to 2, maxUnavailable down to 1
    watcher = RolloutWatch(api, ns, "app=web")
    watcher.start()
    wait_for(lambda: watcher.ready_now == 5, 10, "the watch to see the 5 ready pods")
    watcher.armed = True
    k("-n", ns, "set", "image", "deployment/web", "busybox=busybox:1.36")
    k("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    watcher.stop()
    assert not watcher.errors, watcher.errors
    assert watcher.max_desired <= 5 + 2, f"ReplicaSets asked for {watcher.max_desired} pods (maxSurge 2)"
    assert watcher.min_ready is None or watcher.min_ready >= 5 - 1, \
        f"only {watcher.min_ready} ready pods at one point (maxUnavailable 1)"
    assert rs_by_image(k, ns) == {"busybox:1.35": 0, "busybox:1.36": 5}
    history = k.out("-n", ns, "rollout", "history", "deployment/web")
    assert "1 " in history and "2 " in history

    k("-n", ns, "rollout", "undo", "deployment/web")
    k("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    d = k.json("-n", ns, "get", "deployment", "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.35"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert rs_by_image(k, ns) == {"busybox:1.35": 5, "busybox:1.36": 0}, "undo reuses the first ReplicaSet"

    k("-n", ns, "scale", "deployment/web", "--replicas=8")
    k("-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
    assert rs_by_image(k, ns) == {"busybox:1.35": 8, "busybox:1.36": 0}
    wait_for(lambda: len([p for p in k.json("-n", ns, "get", "pods", "-l", "app=web")["items"]
                          if p["status"].get("phase") == "Running"]) == 8, 30, "8 running pods")


def test_pause_resume_and_recreate(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "deployment", "app", "--image=busybox:1.35", "--replicas=3")
    k("-n", ns, "rollout", "status", "deployment/app", "--timeout=60s")
    k("-n", ns, "rollout", "pause", "deployment/app")
    k("-n", ns, "set", "image", "deployment/app", "busybox=busybox:1.36")
    wait_for(lambda: any(c["reason"] == "DeploymentPaused" for c in
                         k.json("-n", ns, "get", "deployment", "app")["status"]["conditions"]), 20,
             "the DeploymentPaused condition")
    assert list(rs_by_image(k, ns)) == ["busybox:1.35"], "a paused Deployment starts no new ReplicaSet"
    k("-n", ns, "rollout", "resume", "deployment/app")
    k("-n", ns, "rollout", "status", "deployment/app", "--timeout=60s")
    assert rs_by_image(k, ns) == {"busybox:1.35": 0, "busybox:1.36": 3}

    k("-n", ns, "patch", "deployment", "app", "--type=merge", "-p",
      '{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}')
    k("-n", ns, "set", "image", "deployment/app", "busybox=busybox:1.37")
    k("-n", ns, "rollout", "status", "deployment/app", "--timeout=60s")
    assert rs_by_image(k, ns) == {"busybox:1.35": 0, "busybox:1.36": 0, "busybox:1.37": 3}
    events = k.json("-n", ns, "get", "events", "--field-selector", "involvedObject.name=app")["items"]
    scaled = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
    assert any("Scaled down replica set" in m and "to 0 from 3" in m for m in scaled), scaled


def test_progress_deadline(kubectl: Kubectl, namespace: str):
    """A Deployment whose pods never become ready (no node fits them) reports ProgressDeadlineExceeded."""
    k, ns = kubectl, namespace
    k("-n", ns, "create", "deployment", "stuck", "--image=busybox", "--replicas=1")
    k("-n", ns, "patch", "deployment", "stuck", "--type=merge", "-p",
      '{"spec":{"progressDeadlineSeconds":2,"template":{"spec":{"nodeSelector":{"no-such":"node"}}}}}')
    p = k("-n", ns, "rollout", "status", "deployment/stuck", "--timeout=60s", check=False)
    assert p.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in p.stderr
    cond = {c["type"]: c for c in k.json("-n", ns, "get", "deployment", "stuck")["status"]["conditions"]}
    assert cond["Progressing"]["status"] == "False" and cond["Progressing"]["reason"] == "ProgressDeadlineExceeded"


def test_300_replicas(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "deployment", "big", "--image=busybox", "--replicas=300")
    k("-n", ns, "rollout", "status", "deployment/big", "--timeout=300s", timeout=320)
    pods = k.json("-n", ns, "get", "pods", "-l", "app=big")["items"]
    assert len(pods) == 300 and all(p["status"]["phase"] == "Running" for p in pods)
