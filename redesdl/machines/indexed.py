"""Automat machines whose transitions are found by dict lookup, not a scan.

Automat's L{Automaton.outputForInput} walks every transition of the machine
for each input and compares states with their dataclass C{__eq__}: about 40
comparisons an input in the chunk session (78 transitions), 95 in the
central's session (189). A secondary calls it on every sendfile wake-up,
where it was 8% of the Python time, and a central on every message.

L{indexed} rebuilds a built L{TypeMachine} on L{IndexedAutomaton}: the same
transitions (added through Automat's own C{addTransition}, so its duplicate
check still runs), found in a dict keyed by (state, input). An input with no
transition still raises Automat's own C{NoTransition}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from automat import TypeMachine
from automat._core import Automaton

InputProtocol = TypeVar("InputProtocol")
Core = TypeVar("Core")


class IndexedAutomaton(Automaton[Any, str, Any]):
    """An L{Automaton} with the transitions of another, looked up in a dict."""

    def __init__(self, source: Automaton[Any, str, Any]) -> None:
        super().__init__(source.initialState)
        self._index: dict[tuple[Any, str], tuple[Any, tuple[Any, ...]]] = {}
        for in_state, input_symbol, out_state, outputs in source.allTransitions():
            self.addTransition(in_state, input_symbol, out_state, tuple(outputs))
            self._index[in_state, input_symbol] = (out_state, tuple(outputs))

    def outputForInput(
        self, inState: Any, inputSymbol: str
    ) -> tuple[Any, Sequence[Any]]:
        found = self._index.get((inState, inputSymbol))
        if found is None:
            return super().outputForInput(inState, inputSymbol)
        out_state, outputs = found
        return out_state, list(outputs)


def indexed(
    machine: TypeMachine[InputProtocol, Core],
) -> TypeMachine[InputProtocol, Core]:
    """C{machine}, its transitions found by lookup."""
    return TypeMachine(
        machine.__automat_type__,
        IndexedAutomaton(machine.__automat_automaton__),
    )
