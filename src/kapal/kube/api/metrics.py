"""/metrics in the Prometheus text format, with the apiserver metric names dashboards know."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45,
            60)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self.latency: dict[tuple[tuple[str, str], ...], list[int]] = {}
        self.latency_sum: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe(self, verb: str, group: str, version: str, resource: str, subresource: str, scope: str, code: int,
                seconds: float) -> None:
        base = (("verb", verb), ("group", group), ("version", version), ("resource", resource),
                ("subresource", subresource), ("scope", scope))
        self.requests[(*base, ("code", str(code)))] += 1
        if verb == "WATCH":
            return
        counts = self.latency.get(base)
        if counts is None:
            counts = self.latency[base] = [0] * (len(_BUCKETS) + 1)
        counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.latency_sum[base] += seconds

    def render(self) -> str:
        out = ["# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, "
               "group, version, resource, scope, component, and HTTP response code.",
               "# TYPE apiserver_request_total counter"]
        for key, n in sorted(self.requests.items()):
            out.append(f"apiserver_request_total{_labels(key)} {n}")
        out += ["# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, "
                "dry run value, group, version, resource, subresource, scope and component.",
                "# TYPE apiserver_request_duration_seconds histogram"]
        for key, counts in sorted(self.latency.items()):
            total = 0
            for bound, c in zip(_BUCKETS, counts):
                total += c
                out.append(f"apiserver_request_duration_seconds_bucket{_labels((*key, ('le', str(bound))))} {total}")
            total += counts[-1]
            out.append(f"apiserver_request_duration_seconds_bucket{_labels((*key, ('le', '+Inf')))} {total}")
            out.append(f"apiserver_request_duration_seconds_sum{_labels(key)} {self.latency_sum[key]:.6f}")
            out.append(f"apiserver_request_duration_seconds_count{_labels(key)} {total}")
        for name, fn in sorted(self.gauges.items()):
            metric, _, label = name.partition("|")
            out.append(f"# TYPE {metric} gauge")
            out.append(f"{metric}{label} {fn()}")
        out.append("# TYPE process_start_time_seconds gauge")
        out.append(f"process_start_time_seconds {self.started:.3f}")
        return "\n".join(out) + "\n"
