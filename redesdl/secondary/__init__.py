"""The secondary: indexes a data folder, serves chunks, replicates from peers."""
