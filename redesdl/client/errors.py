"""Failures of a command already phrased for a person.

A download's own errors (disk, integrity, no source) live with the transfer
engine in L{redesdl.transfer.errors}.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure already phrased for a person."""
