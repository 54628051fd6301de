"""What a trace line shows of a message: short, whatever its nesting."""

from __future__ import annotations

from redesdl.trace import summarize

SHA = "ab" * 32


def test_hashes_in_a_short_catalog_page_are_cut_to_12_characters() -> None:
    entry = {"name": "a.mp4", "size": 1, "sha256": SHA, "root": SHA, "sources": 2}
    line = summarize({"type": "catalog", "id": 3, "files": [entry], "more": False})
    assert SHA not in line
    assert f'"sha256":"{SHA[:12]}…"' in line and '"name":"a.mp4"' in line


def test_long_lists_show_their_length_and_chunks_their_bytes() -> None:
    manifest = {"type": "manifest", "id": 1, "chunk_hashes": [SHA] * 9}
    assert '"chunk_hashes":"[9 items]"' in summarize(manifest)
    chunk = summarize({"type": "chunk", "id": 2, "index": 0, "length": 512})
    assert chunk.endswith("+ 512 bytes of data")
