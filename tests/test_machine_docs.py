"""docs/protocol.md draws the machines the code runs, and says what each refuses."""

from __future__ import annotations

from redesdl.machines import diagrams


def test_protocol_md_is_generated_from_the_machines() -> None:
    assert diagrams.main(["--check"]) == 0


def test_every_machine_has_a_drawing_and_a_meaning_per_state() -> None:
    text = diagrams.DOC.read_text()
    for key, module in diagrams.machine_modules().items():
        block = diagrams.render(key, module)
        assert block in text
        named = {edge[0] for edge in diagrams.transitions(module.MACHINE)}
        assert named <= set(module.STATES), f"{key}: states without a meaning"
