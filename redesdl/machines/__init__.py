"""The conversations of the protocol as explicit state machines (Automat).

Each module here holds one conversation's machine: its inputs (one per
message type it can receive, plus connection events and timeouts), the
states that docs/protocol.md draws, and every transition, with the table at
the bottom of the module. A machine reaches the world only through a small
interface of verbs (send a message, hang up, ...), so it is pure: nothing
here imports ``twisted.internet``, and tests drive the machines on fakes.
``python -m redesdl.machines.diagrams`` draws them into docs/protocol.md.
"""
