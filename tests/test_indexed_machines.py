"""Every machine finds a transition by lookup, and finds what Automat's scan finds."""

from __future__ import annotations

from typing import Any

import pytest
from automat import NoTransition
from automat._core import Automaton
from automat._typed import TypedState

from redesdl.machines import central_link, central_session, chunk_request, chunk_session
from redesdl.machines.indexed import IndexedAutomaton

MACHINES = {
    module.__name__.rsplit(".", 1)[1]: module.MACHINE
    for module in (central_link, central_session, chunk_request, chunk_session)
}


def automaton_of(name: str) -> IndexedAutomaton:
    automaton = MACHINES[name].__automat_automaton__
    assert isinstance(automaton, IndexedAutomaton)
    return automaton


def every_state_and_input(automaton: Automaton[Any, str, Any]) -> list[tuple[Any, str]]:
    states = automaton.states() | {automaton.initialState}
    inputs = automaton.inputAlphabet()
    return [(state, symbol) for state in states for symbol in sorted(inputs)]


def outcome(lookup: Any, state: Any, symbol: str) -> Any:
    try:
        out_state, outputs = lookup(state, symbol)
    except NoTransition:
        return "no transition"
    return out_state, list(outputs)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_state_and_input_gets_what_automats_scan_gives(name: str) -> None:
    automaton = automaton_of(name)
    pairs = every_state_and_input(automaton)
    handled = 0
    for state, symbol in pairs:
        scanned = outcome(
            lambda s, i: Automaton.outputForInput(automaton, s, i), state, symbol
        )
        assert outcome(automaton.outputForInput, state, symbol) == scanned
        handled += scanned != "no transition"
    assert handled == len(automaton.allTransitions())


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_a_transition_is_found_without_comparing_states(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    automaton = automaton_of(name)
    transitions = sorted(automaton.allTransitions(), key=repr)
    comparisons = 0
    equal = TypedState.__eq__

    def counted(self: Any, other: Any) -> Any:
        nonlocal comparisons
        comparisons += 1
        return equal(self, other)

    monkeypatch.setattr(TypedState, "__eq__", counted)
    for state, symbol, _, _ in transitions:
        automaton.outputForInput(state, symbol)
    assert comparisons == 0
    for state, symbol, _, _ in transitions:
        Automaton.outputForInput(automaton, state, symbol)
    assert comparisons > len(transitions), "Automat's own scan compares states"
