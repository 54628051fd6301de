"""The core is pure: the codec, the messages and the machines never touch a reactor."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import redesdl.machines

#: Modules that must work without twisted.internet (sockets, reactor, Deferreds).
PURE = [
    "redesdl.protocol.codec",
    "redesdl.protocol.wire",
    "redesdl.protocol.fields",
    "redesdl.protocol.errors",
    "redesdl.protocol.auth",
    "redesdl.protocol.tickets",
    "redesdl.manifest",
    "redesdl.names",
    "redesdl.transfer.plan",
] + [
    f"redesdl.machines.{info.name}"
    for info in pkgutil.iter_modules(redesdl.machines.__path__)
    if info.name != "diagrams"
]


def test_the_core_imports_no_twisted_internet() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {PURE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in sys.modules "
        "if m.startswith('twisted.internet'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"the core pulls in: {result.stdout}"
