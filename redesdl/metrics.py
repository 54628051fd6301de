"""Prometheus metrics over HTTP, read from each daemon's live state per scrape.

``--metrics ENDPOINT`` on either daemon serves the text exposition format at
``/metrics`` (prometheus_client's Twisted resource on a twisted.web Site).
Each daemon gives a collector that reads its registry, queues and statistics
when Prometheus scrapes, so nothing is counted twice and the numbers always
agree with the statistics file and the consoles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Site

METRICS_PARAMETER = [
    "metrics",
    None,
    None,
    "Twisted server endpoint serving Prometheus metrics at /metrics, such as "
    "tcp:9100:interface=127.0.0.1 [default: none].",
]


def gauge(name: str, help: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, help)
    family.add_metric([], value)
    return family


def counter(name: str, help: str, value: float) -> Metric:
    """A counter; C{name} is given without the ``_total`` Prometheus adds."""
    family = CounterMetricFamily(name, help)
    family.add_metric([], value)
    return family


class StateCollector:
    """A prometheus_client collector that asks a function for its metrics."""

    def __init__(self, metrics: Callable[[], Iterable[Metric]]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics()


class _Quiet(Site):
    """A Site that does not log a line per scrape."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def metrics_site(metrics: Callable[[], Iterable[Metric]]) -> Site:
    """A web site with C{metrics} at /metrics and nothing else."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(metrics))
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    return _Quiet(root)
