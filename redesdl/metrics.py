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

from redesdl.listening import ListeningService

METRICS_PARAMETER = [
    "metrics",
    None,
    None,
    "Twisted server endpoint serving Prometheus metrics at /metrics, such as "
    "tcp:9100:interface=127.0.0.1 [default: none].",
]


GAUGE = GaugeMetricFamily
#: Counter names are given without the ``_total`` Prometheus adds.
COUNTER = CounterMetricFamily


def families(rows: Iterable[tuple[type, str, str, float]]) -> list[Metric]:
    """One metric per (kind, name, help, value) row, with that single value."""
    metrics = []
    for kind, name, help, value in rows:
        family = kind(name, help)
        family.add_metric([], value)
        metrics.append(family)
    return metrics


def metrics_service(
    description: str, metrics: Callable[[], Iterable[Metric]], role: str, reactor: Any
) -> ListeningService:
    """Serve C{metrics} at /metrics on C{description}; exit if it cannot listen."""
    name = f"{role} metrics"
    return ListeningService(description, metrics_site(metrics, name), name, reactor)


class StateCollector:
    """A prometheus_client collector that asks a function for its metrics."""

    def __init__(self, metrics: Callable[[], Iterable[Metric]]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics()


class MetricsSite(Site):
    """A Site that logs under its daemon's name, and no line per scrape."""

    noisy = False

    def __init__(self, root: Resource, name: str) -> None:
        super().__init__(root)
        self._name = name

    def logPrefix(self) -> str:
        # Twisted's port logs "<prefix> starting on PORT" with it.
        return self._name

    def log(self, request: Any) -> None:
        pass


def metrics_site(
    metrics: Callable[[], Iterable[Metric]], name: str = "metrics"
) -> Site:
    """A web site with C{metrics} at /metrics and nothing else."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(metrics))
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    return MetricsSite(root, name)
