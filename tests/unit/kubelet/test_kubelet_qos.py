"""QoS classes and the cgroup numbers derived from resources, checked against upstream's rules."""

from __future__ import annotations

from kapal.kube.kubelet import qos


def pod(*containers, inits=()):
    return {"metadata": {"uid": "u"}, "spec": {"containers": list(containers), "initContainers": list(inits)}}


def c(requests=None, limits=None, name="c"):
    return {"name": name, "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v}}


def test_classes():
    assert qos.qos_class(pod(c())) == qos.BEST_EFFORT
    assert qos.qos_class(pod(c({"cpu": "100m"}))) == qos.BURSTABLE
    guaranteed = c({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})
    assert qos.qos_class(pod(guaranteed)) == qos.GUARANTEED
    assert qos.qos_class(pod(guaranteed, c())) == qos.BURSTABLE  # one container without limits
    assert qos.qos_class(pod(c(limits={"cpu": "1", "memory": "1Gi"}))) == qos.GUARANTEED  # requests default to limits
    assert qos.qos_class(pod(c({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}))) == qos.BURSTABLE
    assert qos.qos_class(pod(c({"ephemeral-storage": "1Gi"}))) == qos.BEST_EFFORT  # only cpu and memory count


def test_cgroup_paths():
    assert qos.pod_cgroup_parent(qos.GUARANTEED, "x") == "kubepods/podx"
    assert qos.pod_cgroup_parent(qos.BURSTABLE, "x") == "kubepods/burstable/podx"
    assert qos.pod_cgroup_parent(qos.BEST_EFFORT, "x") == "kubepods/besteffort/podx"


def test_container_numbers():
    r = qos.container_resources(c({"cpu": "250m", "memory": "64Mi"}, {"cpu": "500m", "memory": "128Mi"}))
    assert (r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit) == (256, 50000, 100000, 128 * 2**20)
    r = qos.container_resources(c())
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit) == (2, None, None)
    assert qos.container_resources(c({"cpu": "1m"})).cpu_shares == 2
    assert qos.container_resources(c(limits={"cpu": "1m"})).cpu_quota == 1000  # the kernel's minimum


def test_pod_numbers_sum_and_take_the_larger_of_init():
    p = pod(c({"cpu": "200m"}, {"cpu": "1", "memory": "100Mi"}), c({"cpu": "300m"}, {"cpu": "1", "memory": "100Mi"}),
            inits=[c({"cpu": "800m"}, {"cpu": "3", "memory": "50Mi"}, name="i")])
    r = qos.pod_resources(p)
    assert r.cpu_shares == 819  # max(500m, 800m) -> 800 * 1024 / 1000
    assert r.cpu_quota == 300000  # max(2 CPUs, 3 CPUs)
    assert r.memory_limit == 200 * 2**20
    # a container without a memory limit leaves the pod unlimited
    r = qos.pod_resources(pod(c({"memory": "1Mi"}, {"memory": "2Mi"}), c({"cpu": "1"})))
    assert r.memory_limit is None and r.cpu_quota is None
    assert qos.pod_resources(pod(c())) == qos.CgroupResources()


def test_oom_score_adj():
    cap = 1000 * 2**20
    g = pod(c(limits={"cpu": "1", "memory": "1Gi"}))
    assert qos.oom_score_adj(g, g["spec"]["containers"][0], cap) == -997
    b = pod(c())
    assert qos.oom_score_adj(b, b["spec"]["containers"][0], cap) == 1000
    half = c({"memory": f"{500 * 2**20}"})
    assert qos.oom_score_adj(pod(half), half, cap) == 500
    tiny = c({"memory": "1"})
    assert qos.oom_score_adj(pod(tiny), tiny, cap) == 999  # never as likely as best effort
    big = c({"memory": f"{cap}"})
    assert qos.oom_score_adj(pod(big), big, cap) == 3  # never as safe as guaranteed


def test_oom_score_adj_floor_without_cap_sys_resource():
    """Where root lacks CAP_SYS_RESOURCE the kernel refuses values below 0: a Guaranteed pod gets 0, not -997."""
    cap = 1000 * 2**20
    g = pod(c(limits={"cpu": "1", "memory": "1Gi"}))
    assert qos.oom_score_adj(g, g["spec"]["containers"][0], cap, floor=0) == 0
    half = c({"memory": f"{500 * 2**20}"})
    assert qos.oom_score_adj(pod(half), half, cap, floor=0) == 500
    assert qos.oom_score_adj_floor("Name:\tx\nCapEff:\t000001ffffffffff\n") == -1000
    assert qos.oom_score_adj_floor("Name:\tx\nCapEff:\t000001fffeffffff\n") == 0  # bit 24 cleared
