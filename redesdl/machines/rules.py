"""The rule for messages that have no meaning in the current state.

A machine lists the transitions that mean something; L{refuse_the_rest}
then gives every other (state, input) pair one refusal transition, so a
message at the wrong time is refused by rule (a typed error, or a hang-up)
and never by a forgotten ``if``. The refusals appear in the machine's table,
and so in the generated diagrams' tables too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def state_of(machine: Any) -> str:
    """The name of the state a built machine's instance is in.

    Automat has no public way to ask; consoles and tests need it.
    """
    return str(machine.__automat_transitioner__._state.name)


def refuse_the_rest(
    states: Iterable[Any],
    inputs: Iterable[Callable[..., Any]],
    refusal: Callable[..., Any],
) -> None:
    """Make C{refusal} the transition (a loop) for every pair not yet defined.

    C{refusal} is called like any Automat output: C{(inputs, core, *args)}.
    """
    for state in states:
        for an_input in inputs:
            try:
                state.upon(an_input).loop()(refusal)
            except ValueError:
                # Automat refuses a second transition for a pair: this one
                # was defined on purpose above.
                continue
