"""The client: locates a file at the central and downloads it from all sources."""
