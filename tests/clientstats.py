"""Read a client's statistics as a person would: ``redesdl stats --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def client_stats(path: Path, timelines: bool = False) -> dict[str, Any]:
    """The JSON document of the statistics kept in C{path}."""
    extra = ["--timelines"] if timelines else []
    shown = subprocess.run(
        [str(BIN / "redesdl"), "--stats", str(path), "stats", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)
