"""What the central exposes to Prometheus (see docs/operations.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from redesdl.metrics import counter, gauge

if TYPE_CHECKING:
    from redesdl.central.protocol import CentralFactory


def central_metrics(factory: CentralFactory) -> Iterable[Metric]:
    registry, stats = factory.registry, factory.stats.data
    files = stats["files"].values()
    yield gauge(
        "redesdl_central_secondaries",
        "Secondaries registered and heard from.",
        len(registry.secondaries),
    )
    yield gauge(
        "redesdl_central_files", "Files in the catalog.", len(registry.catalog())
    )
    yield gauge(
        "redesdl_central_downloads_active",
        "Client downloads holding a slot.",
        len(factory.admission.active),
    )
    yield gauge(
        "redesdl_central_downloads_queued",
        "Client downloads waiting for a slot.",
        len(factory.admission.waiting),
    )
    yield counter(
        "redesdl_central_downloads_completed",
        "Downloads clients reported complete and verified.",
        sum(entry["completed"] for entry in files),
    )
    yield counter(
        "redesdl_central_downloads_failed",
        "Downloads clients reported failed.",
        sum(entry["failed"] for entry in files),
    )
    yield counter(
        "redesdl_central_downloaded_bytes",
        "Bytes clients reported fetching, completed or not.",
        sum(entry["bytes"] for entry in files),
    )
    yield gauge(
        "redesdl_central_replication_backlog_copies",
        "Copies still needed for every secondary to hold every file.",
        factory.planner.backlog(),
    )
    yield gauge(
        "redesdl_central_replications_active",
        "Copies secondaries are making now.",
        len(factory.planner.inProgress),
    )
    yield gauge(
        "redesdl_central_connections",
        "Open connections from clients and secondaries.",
        len(factory.connections),
    )
