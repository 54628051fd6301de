"""Names from the network never escape a folder."""

from __future__ import annotations

import pytest

from redesdl.names import name_problem, validate_name
from redesdl.protocol.errors import ProtocolError


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../secret",
        "a/../../b",
        "a//b",
        "a/./b",
        ".hidden",
        "dir/.redesdl-incoming/x",
        "back\\slash",
        "nul\x00byte",
        "escape\x1b[2Jclear",
        "csi\x9b2J",
        "del\x7f",
        "x" * 2000,
        "a/",
    ],
)
def test_dangerous_names_are_refused(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(ProtocolError):
        validate_name(name)


@pytest.mark.parametrize("name", ["video.mp4", "sub/dir/file", "ñandú..txt", "a b"])
def test_ordinary_names_pass(name: str) -> None:
    assert validate_name(name) == name
