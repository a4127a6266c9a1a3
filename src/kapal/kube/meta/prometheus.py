"""Metrics in the Prometheus text format (0.0.4): counters, gauges and histograms that components render on
`/metrics`. Pure and dependency-free, shared by the node components (proxy, DNS, the kubelet's resource
metrics); values are plain floats updated by the owner's own code.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence

Labels = tuple[tuple[str, str], ...]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
                   16.384)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_text(labels: Labels | dict[str, str]) -> str:
    pairs = labels.items() if isinstance(labels, dict) else labels
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def sample(name: str, labels: Labels | dict[str, str], value: float, timestamp_ms: int | None = None) -> str:
    stamp = f" {timestamp_ms}" if timestamp_ms is not None else ""
    return f"{name}{labels_text(labels)} {number(value)}{stamp}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)

    def _labels(self, values: Sequence[str]) -> Labels:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(values)}")
        return tuple(zip(self.label_names, values, strict=True))

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self.values: dict[Labels, float] = {}
        if not self.label_names:
            self.values[()] = 0.0

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        key = self._labels(label_values)
        self.values[key] = self.values.get(key, 0.0) + by

    def get(self, *label_values: str) -> float:
        return self.values.get(self._labels(label_values), 0.0)

    def lines(self) -> list[str]:
        return [sample(self.name, k, v) for k, v in sorted(self.values.items())]


class Gauge(Counter):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (),
                 read: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text, label_names)
        self.read = read

    def set(self, value: float, *label_values: str) -> None:
        self.values[self._labels(label_values)] = float(value)

    def lines(self) -> list[str]:
        if self.read is not None:
            self.values[()] = float(self.read())
        return super().lines()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (),
                 buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def observe(self, value: float, *label_values: str) -> None:
        key = self._labels(label_values)
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value

    def count(self, *label_values: str) -> int:
        return sum(self.counts.get(self._labels(label_values), ()))

    def lines(self) -> list[str]:
        out = []
        for key, counts in sorted(self.counts.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                out.append(sample(f"{self.name}_bucket", (*key, ("le", number(bound))), running))
            out.append(sample(f"{self.name}_sum", key, self.sums[key]))
            out.append(sample(f"{self.name}_count", key, running))
        return out


class Registry:
    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        self.metrics.append(metric)
        return metric

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        c = Counter(name, help_text, label_names)
        self.metrics.append(c)
        return c

    def gauge(self, name: str, help_text: str, label_names: Sequence[str] = (),
              read: Callable[[], float] | None = None) -> Gauge:
        g = Gauge(name, help_text, label_names, read)
        self.metrics.append(g)
        return g

    def histogram(self, name: str, help_text: str, label_names: Sequence[str] = (),
                  buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
        h = Histogram(name, help_text, label_names, buckets)
        self.metrics.append(h)
        return h

    def render(self) -> str:
        out: list[str] = []
        for m in self.metrics:
            out += m.header() + m.lines()
        return "\n".join(out) + "\n"
