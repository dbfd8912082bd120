"""The one exception hierarchy of deconv_core.

Every error the core raises is a :class:`DeconvError`. Bad values and shapes also subclass
:class:`ValueError`, bad dtypes :class:`TypeError`, so callers that only know the builtin
exceptions still catch them. The server maps each class to exactly one gRPC status code.
"""

from __future__ import annotations

__all__ = [
    "DeconvError",
    "InvalidArgumentError",
    "UnsupportedDtypeError",
]


class DeconvError(Exception):
    """Base class of every error raised by deconv_core."""


class InvalidArgumentError(DeconvError, ValueError):
    """A parameter, shape or size breaks a rule of the operation (maps to INVALID_ARGUMENT)."""


class UnsupportedDtypeError(DeconvError, TypeError):
    """An array has a dtype the core does not compute in, or dtypes are mixed."""
