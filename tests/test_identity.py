"""A secondary's identity is stable across restarts; its boot counter is not."""

from __future__ import annotations

from pathlib import Path

from twisted.python.filepath import FilePath

from redesdl.secondary.identity import default_name, load_identity


def test_same_id_and_a_rising_boot_counter(tmp_path: Path) -> None:
    state = FilePath(str(tmp_path))
    first_id, first_boot = load_identity(state)
    second_id, second_boot = load_identity(state)
    assert first_id == second_id
    assert (first_boot, second_boot) == (1, 2)
    assert default_name(first_id) == default_name(second_id)


def test_a_damaged_identity_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "identity.json").write_text('{"id": 5}')
    secondary_id, boot = load_identity(FilePath(str(tmp_path)))
    assert len(secondary_id) == 32 and boot == 1
