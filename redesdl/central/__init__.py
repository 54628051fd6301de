"""The central registry: live secondaries, merged catalog, replication plans."""
