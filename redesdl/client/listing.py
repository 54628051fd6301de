"""How the client shows the catalog and a finished download to a person."""

from __future__ import annotations

from typing import Any

from redesdl.client.progress import human_size
from redesdl.transfer.result import DownloadResult


def format_listing(files: list[dict[str, Any]]) -> list[str]:
    """The catalog as aligned lines for a person."""
    if not files:
        return ["no files yet"]
    width = max(len(str(f.get("name"))) for f in files)
    return [
        f"{entry.get('name')!s:<{width}}  {human_size(entry.get('size', 0)):>10}  "
        f"{entry.get('sources')} source(s)  {str(entry.get('sha256'))[:16]}"
        for entry in files
    ]


def describe_result(result: DownloadResult) -> str:
    used = ", ".join(f"{name} {human_size(n)}" for name, n in result.sources.items())
    rate = result.size / result.seconds if result.seconds else 0
    return (
        f"saved {result.path} ({human_size(result.size)}, sha256 {result.sha256}) "
        f"in {result.seconds:.2f} s, {human_size(rate)}/s from "
        f"{used or 'nowhere (empty file)'}"
    )
