"""Filter and score plugins, the FailedScheduling wording, the queue, and whole scheduling cycles over a
scheduler cache (no API server: the cycle is pure code over the cache)."""

from __future__ import annotations

import asyncio

import pytest

from kapal.kube.client.client import ApiClient
from kapal.kube.client.config import ClientConfig
from kapal.kube.client.informer import InformerFactory
from kapal.kube.scheduler.fiterror import fit_error_message
from kapal.kube.scheduler.framework import unresolvable, unschedulable
from kapal.kube.scheduler.nodeinfo import pod_info, pod_requests
from kapal.kube.scheduler.queue import SchedulingQueue
from kapal.kube.scheduler.scheduler import FitError, Scheduler, num_feasible_nodes_to_find


def node(name, cpu="4", memory="16Gi", pods="110", labels=None, taints=None, unschedulable=False):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name, cpu=None, memory=None, ns="default", labels=None, node_name="", priority=0, **spec):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container = {"name": "c", "image": "busybox"}
    if requests:
        container["resources"] = {"requests": requests}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    p = {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {}},
         "spec": {"containers": [container], "priority": priority, **spec}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    return p


@pytest.fixture
def scheduler():
    async def make():
        client = ApiClient(ClientConfig(server="https://127.0.0.1:1"))  # never contacted: cycles are pure
        return Scheduler(client, InformerFactory(client))
    return asyncio.run(make())


def place(s: Scheduler, *nodes, pods=()):
    for n in nodes:
        s.cache.set_node(n)
    for p in pods:
        s.cache.add_pod(pod_info(p, f"{p['metadata']['namespace']}/{p['metadata']['name']}"))


def choose(s: Scheduler, p) -> str:
    return s.find_node(pod_info(p, f"default/{p['metadata']['name']}")).node


def failure(s: Scheduler, p) -> str:
    with pytest.raises(FitError) as e:
        s.find_node(pod_info(p, f"default/{p['metadata']['name']}"))
    return str(e.value)


def test_requests_take_the_larger_of_init_and_app_containers():
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
            "overhead": {"cpu": "10m"}}
    assert pod_requests(spec) == {"cpu": 510, "memory": 2**30}
    assert pod_requests({"containers": [{}]}, nonzero=True) == {"cpu": 100, "memory": 200 * 2**20}


def test_insufficient_resources_message(scheduler):
    place(scheduler, node("a", cpu="1"), node("b", cpu="1"), node("c", cpu="2", pods="1"),
          pods=[pod("x", node_name="c")])
    assert failure(scheduler, pod("big", cpu="1500m")) == (
        "0/3 nodes are available: 1 Too many pods, 2 Insufficient cpu.")


def test_upstream_message_shape():
    statuses = {n: unschedulable("NodeResourcesFit", "Insufficient cpu") for n in ("a", "b", "c")}
    assert fit_error_message(3, statuses, preemption={n: "No preemption victims found for incoming pod"
                                                      for n in statuses}) == (
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 No preemption victims found for incoming pod.")
    mixed = {"a": unresolvable("NodeAffinity", "node(s) didn't match Pod's node affinity/selector"),
             "b": unschedulable("NodeResourcesFit", "Insufficient cpu", "Insufficient memory")}
    assert fit_error_message(2, mixed) == ("0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, "
                                           "1 node(s) didn't match Pod's node affinity/selector.")


def test_least_allocated_and_balanced_pick_the_emptier_node(scheduler):
    place(scheduler, node("busy"), node("idle"), pods=[pod("x", cpu="3", memory="12Gi", node_name="busy")])
    assert choose(scheduler, pod("p", cpu="500m", memory="1Gi")) == "idle"


def test_assumed_pods_count_at_once(scheduler):
    place(scheduler, node("a", cpu="1"), node("b", cpu="1"))
    first = pod("p1", cpu="800m")
    n1 = choose(scheduler, first)
    scheduler.cache.assume(pod_info(first, "default/p1"), n1)
    n2 = choose(scheduler, pod("p2", cpu="800m"))
    assert {n1, n2} == {"a", "b"}
    scheduler.cache.forget("default/p1")
    assert scheduler.cache.nodes[n1].req_cpu == 0


def test_node_selector_affinity_and_match_fields(scheduler):
    place(scheduler, node("a", labels={"disk": "ssd"}), node("b", labels={"disk": "hdd"}), node("c"))
    assert choose(scheduler, pod("p", nodeSelector={"disk": "hdd"})) == "b"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd", "hdd"]}]}]}}}
    assert choose(scheduler, pod("q", affinity=affinity)) == "c"
    pinned = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}
    assert choose(scheduler, pod("r", affinity=pinned)) == "a"
    assert failure(scheduler, pod("s", nodeSelector={"disk": "nvme"})) == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")
    preferred = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    assert choose(scheduler, pod("t", affinity=preferred)) == "a"


def test_taints_tolerations_and_unschedulable_nodes(scheduler):
    place(scheduler, node("a", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
          node("b", unschedulable=True))
    assert failure(scheduler, pod("p")) == ("0/2 nodes are available: 1 node(s) had untolerated taint "
                                            "{dedicated: db}, 1 node(s) were unschedulable.")
    assert choose(scheduler, pod("q", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db",
                                                    "effect": "NoSchedule"}])) == "a"


def test_prefer_no_schedule_only_lowers_the_score(scheduler):
    place(scheduler, node("a", taints=[{"key": "x", "effect": "PreferNoSchedule"}]), node("b"))
    assert choose(scheduler, pod("p")) == "b"


def test_host_ports(scheduler):
    port = [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
    place(scheduler, node("a"), node("b"), pods=[pod("x", node_name="a", ports=port)])
    assert choose(scheduler, pod("p", ports=port)) == "b"
    place(scheduler, pods=[pod("y", node_name="b", ports=port)])
    assert failure(scheduler, pod("q", ports=port)).startswith(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")


def anti(group):
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}]}}


def test_pod_anti_affinity_both_ways(scheduler):
    place(scheduler, node("a"), node("b"),
          pods=[pod("x", labels={"group": "g"}, node_name="a", affinity=anti("g"))])
    assert choose(scheduler, pod("p", labels={"group": "g"}, affinity=anti("g"))) == "b"
    # a pod without anti-affinity of its own still keeps away from x, whose anti-affinity selects it
    assert choose(scheduler, pod("q", labels={"group": "g"})) == "b"
    place(scheduler, pods=[pod("y", labels={"group": "g"}, node_name="b")])
    assert failure(scheduler, pod("r", labels={"group": "g"}, affinity=anti("g"))) == (
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")


def test_pod_affinity_follows_and_allows_the_first(scheduler):
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    place(scheduler, node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}), node("c"))
    assert choose(scheduler, pod("first", labels={"app": "db"}, affinity=affinity)) in ("a", "b")
    place(scheduler, pods=[pod("db", labels={"app": "db"}, node_name="b")])
    assert choose(scheduler, pod("web", affinity=affinity)) == "b"


def test_term_counts_follow_pods(scheduler):
    place(scheduler, node("a"), node("b"))
    info = pod_info(pod("p", labels={"group": "g"}, affinity=anti("g")), "default/p")
    term = info.anti_affinity[0]
    assert scheduler.cache.term_counts(term) == {}
    scheduler.cache.add_pod(pod_info(pod("x", labels={"group": "g"}, node_name="a"), "default/x"))
    assert scheduler.cache.term_counts(term) == {("kubernetes.io/hostname", "a"): 1}
    scheduler.cache.remove_pod("default/x")
    assert scheduler.cache.term_counts(term) == {}


def test_preemption_message_and_candidate(scheduler):
    from kapal.kube.scheduler.preemption import find_candidate

    place(scheduler, node("a", cpu="1"), pods=[pod("low", cpu="800m", node_name="a", priority=0)])
    p = pod("high", cpu="800m", priority=100)
    info = pod_info(p, "default/high")
    with pytest.raises(FitError) as e:
        scheduler.find_node(info)
    candidate, _ = find_candidate(scheduler.filters, e.value.state, info, scheduler.cache.node_infos(),
                                  e.value.statuses)
    assert candidate is not None and candidate.node == "a"
    assert [v.name for v in candidate.victims] == ["low"]


def test_adaptive_share_of_nodes():
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(1000) == 420
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(1000, 10) == 100


def test_queue_orders_by_priority_and_backs_off():
    async def main():
        q = SchedulingQueue()
        q.add("low", 0)
        q.add("high", 10)
        first = await q.pop()
        assert first.key == "high"
        q.unschedulable("high")
        assert (await q.pop()).key == "low"
        q.done("low")
        q.move_all_to_active_or_backoff()  # a cluster event: "high" retries once its 1 s backoff ends
        assert q.stats()["backoff"] == 1
        got = await asyncio.wait_for(q.pop(), 3)
        assert got.key == "high" and got.attempts == 2
        q.close()
    asyncio.run(main())


def spread(mode="DoNotSchedule", key="zone", skew=1):
    return [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": mode,
             "labelSelector": {"matchLabels": {"app": "web"}}}]


def test_topology_spread_hard(scheduler):
    place(scheduler, node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}),
          pods=[pod("x", labels={"app": "web"}, node_name="a")])
    assert choose(scheduler, pod("p", labels={"app": "web"}, topologySpreadConstraints=spread())) == "b"
    place(scheduler, pods=[pod("y", labels={"app": "web"}, node_name="a")])
    # z1 has 2, z2 has 0: only z2 keeps the skew within 1
    assert choose(scheduler, pod("q", labels={"app": "web"}, topologySpreadConstraints=spread())) == "b"
    place(scheduler, node("c"))  # no zone label at all
    msg = failure(scheduler, pod("r", labels={"app": "web"}, nodeSelector={"kubernetes.io/hostname": "c"},
                                 topologySpreadConstraints=spread()))
    assert msg == ("0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing "
                   "required label), 2 node(s) didn't match Pod's node affinity/selector.")


def test_topology_spread_soft_prefers_the_emptier_domain(scheduler):
    place(scheduler, node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}),
          pods=[pod(f"x{i}", labels={"app": "web"}, node_name="a") for i in range(3)])
    assert choose(scheduler, pod("p", labels={"app": "web"},
                                 topologySpreadConstraints=spread("ScheduleAnyway"))) == "b"
