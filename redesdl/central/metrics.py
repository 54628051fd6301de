"""What the central exposes to Prometheus (see docs/operations.md).

A scrape reads counts the registry and planner keep as things happen; it
never walks the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from redesdl.metrics import COUNTER, GAUGE, families

if TYPE_CHECKING:
    from redesdl.central.protocol import CentralFactory


def central_metrics(factory: CentralFactory) -> Iterable[Metric]:
    registry, admission = factory.registry, factory.admission
    totals = factory.stats.totals
    return families(
        [
            (GAUGE, "redesdl_central_secondaries",
             "Secondaries registered and heard from.", len(registry.secondaries)),
            (GAUGE, "redesdl_central_files",
             "Files in the catalog.", registry.file_count()),
            (GAUGE, "redesdl_central_downloads_active",
             "Client downloads holding a slot.", len(admission.active)),
            (GAUGE, "redesdl_central_downloads_queued",
             "Client downloads waiting for a slot.", len(admission.waiting)),
            (COUNTER, "redesdl_central_downloads_completed",
             "Downloads clients reported complete and verified.",
             totals["completed"]),
            (COUNTER, "redesdl_central_downloads_failed",
             "Downloads clients reported failed.",
             totals["failed"]),
            (COUNTER, "redesdl_central_downloaded_bytes",
             "Bytes clients reported fetching, completed or not.",
             totals["bytes"]),
            (GAUGE, "redesdl_central_replication_backlog_copies",
             "Copies still needed for every secondary to hold every file.",
             factory.planner.backlog()),
            (GAUGE, "redesdl_central_replications_active",
             "Copies secondaries are making now.", len(factory.planner.inProgress)),
            (GAUGE, "redesdl_central_connections",
             "Open connections from clients and secondaries.",
             len(factory.connections)),
        ]
    )  # fmt: skip
