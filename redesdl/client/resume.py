"""The resume state beside ``PATH.part``; kept with the transfer engine."""

from redesdl.transfer.resume import load_claimed, remove_state, save_state, state_path

__all__ = ["load_claimed", "remove_state", "save_state", "state_path"]
