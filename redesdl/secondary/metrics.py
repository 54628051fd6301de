"""What a secondary exposes to Prometheus (see docs/operations.md).

Every name starts ``redesdl_secondary_``, as the central's start
``redesdl_central_``, so a dashboard never mistakes one role's figure for
the other's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from redesdl.metrics import COUNTER, GAUGE, families

if TYPE_CHECKING:
    from redesdl.secondary.service import SecondaryService


def secondary_metrics(secondary: SecondaryService) -> Iterable[Metric]:
    served = secondary.stats.data["served"].values()
    replication = secondary.stats.data["replication"]
    entries = secondary.index.entries.values()
    copies = secondary.replicator.active.values()
    return families(
        [
            (COUNTER, "redesdl_secondary_served_bytes",
             "Bytes of chunks sent to clients and peers.",
             sum(entry["bytes"] for entry in served)),
            (COUNTER, "redesdl_secondary_served_chunks",
             "Chunks sent to clients and peers.",
             sum(entry["chunks"] for entry in served)),
            (GAUGE, "redesdl_secondary_active_transfers",
             "Connections sending a chunk right now.",
             secondary.chunkServer.activeTransfers()),
            (GAUGE, "redesdl_secondary_connections",
             "Open connections from clients and peers.",
             len(secondary.chunkServer.connections)),
            (COUNTER, "redesdl_secondary_replication_bytes",
             "Bytes of files copied from peers and verified.", replication["bytes"]),
            (COUNTER, "redesdl_secondary_replications_failed",
             "Copies from peers that failed.", replication["failed"]),
            (GAUGE, "redesdl_secondary_replications_active",
             "Copies from peers running now.", len(secondary.replicator.active)),
            (GAUGE, "redesdl_secondary_replication_copying_bytes",
             "Bytes the copies running now hold so far (verified).",
             sum(copy.bytesDone for copy in copies)),
            (GAUGE, "redesdl_secondary_replication_copying_size_bytes",
             "Full size of the files the copies running now fetch.",
             sum(copy.info.size for copy in copies)),
            (GAUGE, "redesdl_secondary_index_files",
             "Files indexed and served.", len(entries)),
            (GAUGE, "redesdl_secondary_index_bytes",
             "Bytes of the files indexed and served.",
             sum(entry.manifest.size for entry in entries)),
            (GAUGE, "redesdl_secondary_central_links",
             "Centrals this secondary is registered with (1 with one central).",
             len(secondary.links)),
        ]
    )  # fmt: skip
