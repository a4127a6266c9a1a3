"""Quality of service and cgroup numbers from a pod's resources, as the upstream kubelet computes them.

QoS class: BestEffort (no cpu/memory requests or limits anywhere), Guaranteed
(every container limits cpu and memory and requests equal limits), Burstable
(the rest). The class places the pod cgroup (`kubepods/pod<uid>`,
`kubepods/burstable/pod<uid>`, `kubepods/besteffort/pod<uid>`) and sets the
OOM score adjustment. CPU requests become cpu.shares (1024 per CPU, at
least 2), CPU limits a CFS quota over a 100 ms period, memory limits bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kapal.kube.meta.quantity import parse_quantity

GUARANTEED, BURSTABLE, BEST_EFFORT = "Guaranteed", "Burstable", "BestEffort"
MIN_SHARES = 2
SHARES_PER_CPU = 1024
QUOTA_PERIOD = 100_000
MIN_QUOTA = 1000
GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000
_COMPUTE = ("cpu", "memory")


def _quantities(section: dict[str, Any] | None) -> dict[str, Fraction]:
    out = {}
    for name, value in (section or {}).items():
        if name in _COMPUTE:
            q = parse_quantity(value)
            if q > 0:
                out[name] = q
    return out


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def qos_class(pod: dict[str, Any]) -> str:
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in all_containers(pod):
        res = c.get("resources") or {}
        for name, q in _quantities(res.get("requests")).items():
            requests[name] = requests.get(name, Fraction(0)) + q
        container_limits = _quantities(res.get("limits"))
        for name, q in container_limits.items():
            limits[name] = limits.get(name, Fraction(0)) + q
        if set(container_limits) != set(_COMPUTE):
            guaranteed = False
    if not requests and not limits:
        return BEST_EFFORT
    if guaranteed and all(requests.get(n, limits[n]) == limits[n] for n in limits) and set(requests) <= set(limits):
        return GUARANTEED
    return BURSTABLE


def _request(c: dict[str, Any], name: str) -> Fraction:
    res = c.get("resources") or {}
    q = _quantities(res.get("requests")).get(name)
    if q is None:  # a limit without a request means request == limit (the API server defaults it so, too)
        q = _quantities(res.get("limits")).get(name)
    return q or Fraction(0)


def _limit(c: dict[str, Any], name: str) -> Fraction | None:
    return _quantities((c.get("resources") or {}).get("limits")).get(name)


def effective_request(pod: dict[str, Any], name: str) -> Fraction:
    """max(largest init container request, sum of the containers' requests): what the pod occupies."""
    spec = pod.get("spec") or {}
    regular = sum((_request(c, name) for c in spec.get("containers") or []), Fraction(0))
    init = max((_request(c, name) for c in spec.get("initContainers") or []), default=Fraction(0))
    return max(regular, init)


def cpu_shares(milli_cpu: int) -> int:
    if milli_cpu <= 0:
        return MIN_SHARES
    return max(MIN_SHARES, milli_cpu * SHARES_PER_CPU // 1000)


def cpu_quota(milli_cpu: int, period: int = QUOTA_PERIOD) -> int:
    if milli_cpu <= 0:
        return 0
    return max(MIN_QUOTA, milli_cpu * period // 1000)


def _milli(q: Fraction) -> int:
    return int(-(-q * 1000 // 1))


@dataclass(frozen=True)
class CgroupResources:
    """The limits one cgroup gets; None leaves a value unlimited."""

    cpu_shares: int = MIN_SHARES
    cpu_quota: int | None = None
    cpu_period: int = QUOTA_PERIOD
    memory_limit: int | None = None


def container_resources(c: dict[str, Any]) -> CgroupResources:
    cpu_limit = _limit(c, "cpu")
    mem_limit = _limit(c, "memory")
    return CgroupResources(cpu_shares=cpu_shares(_milli(_request(c, "cpu"))),
                           cpu_quota=cpu_quota(_milli(cpu_limit)) if cpu_limit else None,
                           memory_limit=int(mem_limit) if mem_limit else None)


def pod_resources(pod: dict[str, Any]) -> CgroupResources:
    """The pod cgroup's limits: summed requests as shares; quota and memory only when every container limits them."""
    if qos_class(pod) == BEST_EFFORT:
        return CgroupResources()
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []

    def summed_limit(name: str) -> Fraction | None:
        if not containers or any(_limit(c, name) is None for c in containers + inits):
            return None
        regular = sum((_limit(c, name) or Fraction(0) for c in containers), Fraction(0))
        return max(regular, max((_limit(c, name) or Fraction(0) for c in inits), default=Fraction(0)))

    cpu_limit = summed_limit("cpu")
    mem_limit = summed_limit("memory")
    return CgroupResources(cpu_shares=cpu_shares(_milli(effective_request(pod, "cpu"))),
                           cpu_quota=cpu_quota(_milli(cpu_limit)) if cpu_limit else None,
                           memory_limit=int(mem_limit) if mem_limit else None)


def oom_score_adj(pod: dict[str, Any], c: dict[str, Any], memory_capacity: int, floor: int = -1000) -> int:
    """Upstream's numbers, never below `floor` (oom_score_adj_floor(): what this host lets the runtime set)."""
    qos = qos_class(pod)
    if qos == GUARANTEED:
        return max(floor, GUARANTEED_OOM_SCORE_ADJ)
    if qos == BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    request = _request(c, "memory")
    adj = 1000 - int(1000 * request / max(1, memory_capacity))
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return max(floor, 1000 + GUARANTEED_OOM_SCORE_ADJ)
    if adj == BEST_EFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return max(floor, adj)


CAP_SYS_RESOURCE = 24


def oom_score_adj_floor(status: str | None = None) -> int:
    """-1000 when this process holds CAP_SYS_RESOURCE; else 0. Without it the kernel refuses any oom_score_adj
    below the minimum (0), so a Guaranteed pod's -997 would keep it from starting (root in some VMs and
    containers lacks the capability)."""
    if status is None:
        try:
            with open("/proc/self/status") as f:
                status = f.read()
        except OSError:
            return -1000
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return -1000 if int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1 else 0
    return -1000


def pod_cgroup_parent(qos: str, uid: str) -> str:
    """The pod's cgroup path below the kubelet's cgroup root."""
    if qos == GUARANTEED:
        return f"kubepods/pod{uid}"
    return f"kubepods/{qos.lower()}/pod{uid}"
