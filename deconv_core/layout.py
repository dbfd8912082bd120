"""The caller's array layouts, as a map from logical axes to the caller's axes.

Logical order is channels-first data ``(N, C, *spatial)`` and torch-layout weights (conv
``(C_out, C_in/g, *k)``, transposed ``(C_in, C_out/g, *k)``). The core computes in logical
order; error messages quote the caller's own axis numbers and layout.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LAYOUT", "Layout"]


@dataclass(frozen=True)
class Layout:
    """How the caller's arrays are laid out: maps logical axes to the caller's axes.

    Logical order is channels-first data ``(N, C, *spatial)`` and torch-layout weights
    (conv ``(C_out, C_in/g, *k)``, transposed ``(C_in, C_out/g, *k)``); error messages quote
    the caller's own axis numbers and shapes.
    """

    data_format: str = "channels_first"
    weight_format: str = "torch"

    def x_axis(self, logical: int, nd: int) -> int:
        """Caller's axis of logical data axis ``logical`` (0 batch, 1 channels, 2.. spatial)."""
        if self.data_format == "channels_first" or logical == 0:
            return logical
        return nd - 1 if logical == 1 else logical - 1

    def w_axis(self, logical: int, nd: int) -> int:
        """Caller's axis of logical (torch-layout) weight axis ``logical``."""
        if self.weight_format == "torch":
            return logical
        return nd - 1 - logical if logical < 2 else logical - 2

    def weight_layout(self, op: str) -> str:
        """The caller's weight layout, for messages."""
        if op == "conv":
            torch, tf = "(C_out, C_in/groups, k...)", "(k..., C_in/groups, C_out)"
        else:
            torch, tf = "(C_in, C_out/groups, k...)", "(k..., C_out/groups, C_in)"
        return torch if self.weight_format == "torch" else f"{tf} (weight_format='tf')"


#: Channels-first data, torch-layout weights.
DEFAULT_LAYOUT = Layout()
