"""Make ``twistd redesdl-central`` and ``twistd redesdl-secondary`` exist."""

from twisted.application.service import ServiceMaker

redesdlCentral = ServiceMaker(
    "redesdl central",
    "redesdl.central.tap",
    "The redesdl registry: live secondaries, merged catalog, replication.",
    "redesdl-central",
)

redesdlSecondary = ServiceMaker(
    "redesdl secondary",
    "redesdl.secondary.tap",
    "A redesdl chunk server: serves and replicates the files of a data folder.",
    "redesdl-secondary",
)
