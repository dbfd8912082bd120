"""The machinery behind :class:`deconv_server.config.ServerConfig`'s fields.

A field's metadata is a :class:`Setting`: its :class:`Kind` (how text parses, which values are
valid), help text, range and, where it differs from the derived ``DECONV_<NAME>``, its variable.
The config module derives env reading, validation and the CLI flags from these.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["GRPC_MAX_SECONDS", "MIB", "ConfigError", "Kind", "Setting", "setting"]

MIB = 1024 * 1024
#: Longest time gRPC takes as a millisecond option (a C int).
GRPC_MAX_SECONDS = (2**31 - 1) / 1000
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A configuration value is malformed or out of range."""


class Kind(enum.Enum):
    """How a setting is written as text (env var, flag) and which values it takes."""

    #: An integer in ``[lo, hi]``; text may be decimal or 0x/0o/0b-prefixed.
    INT = "int"
    #: A number of seconds, ``>= lo`` (``> lo`` when the range is open) and ``<= hi`` when set.
    SECONDS = "seconds"
    #: true/false; text 1/0, true/false, yes/no, on/off.
    BOOL = "bool"
    #: A non-empty string, one of ``choices`` when those are given.
    STR = "str"
    #: A Python logging level name, any case.
    LEVEL = "level"
    #: Unset (None) or a non-empty file path.
    PATH = "path"
    #: Unset (None) or a non-empty string that is never echoed in messages or help.
    SECRET = "secret"


@dataclass(frozen=True)
class Setting:
    """What a :class:`ServerConfig` field's metadata states about it.

    Attributes
    ----------
    kind : Kind
    help : str
        One line for ``--help``; the variable and the default are appended.
    lo, hi : float or None
        Inclusive bounds of INT and SECONDS values (None = no bound).
    lo_open : bool
        The lower bound is exclusive (SECONDS that must be > 0).
    choices : tuple of str
        The allowed values of a STR setting (empty = any non-empty string).
    env : str or None
        The environment variable when it is not the derived ``DECONV_<NAME>``.
    group : str or None
        Heading of the flag in ``--help`` (None = the main list).
    """

    kind: Kind
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    env: str | None = None
    group: str | None = None

    def parse(self, raw: str) -> Any:
        """The value written as ``raw`` (before range checks).

        Raises
        ------
        ValueError
            ``raw`` is not text of this kind; the message says what was expected.
        """
        if self.kind is Kind.INT:
            try:
                return int(raw.strip(), 0)
            except ValueError:
                raise ValueError("must be an integer") from None
        if self.kind is Kind.SECONDS:
            try:
                return float(raw)
            except ValueError:
                raise ValueError("must be a number of seconds") from None
        if self.kind is Kind.BOOL:
            lowered = raw.strip().lower()
            if lowered in _TRUE or lowered in _FALSE:
                return lowered in _TRUE
            raise ValueError("must be true/false/1/0")
        return raw

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` unless ``value`` is valid for field ``name``."""
        kind = self.kind
        if kind is Kind.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r} must be an integer")
            if not self._in_range(value):
                raise ConfigError(f"{name}={value} must be in [{self.lo}, {self.hi}]")
        elif kind is Kind.SECONDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name}={value!r} must be a number of seconds")
            if not self._in_range(value):
                raise ConfigError(f"{name}={value!r} must be a number of seconds {self._span()}")
        elif kind is Kind.BOOL:
            if not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} must be a bool")
        elif kind is Kind.STR:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string")
            if self.choices and value not in self.choices:
                allowed = " or ".join(repr(c) for c in self.choices)
                raise ConfigError(f"{name}={value!r} must be {allowed}")
        elif kind is Kind.LEVEL:
            if not isinstance(logging.getLevelName(str(value).upper()), int):
                raise ConfigError(f"{name}={value!r} is not a logging level name")
        elif value is not None and (not isinstance(value, str) or not value):
            if kind is Kind.SECRET:
                raise ConfigError(f"{name} must be unset or non-empty")
            raise ConfigError(f"{name}={value!r} must be unset or a file path")

    def _in_range(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or value <= self.hi

    def _span(self) -> str:
        """The range in words: ``> 0``, ``>= 0`` or ``in (0, 2147483.647]``."""
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}]"


def setting(default: Any, kind: Kind, help: str, **spec: Any) -> Any:
    """A dataclass field with ``default`` whose metadata is ``Setting(kind, help, **spec)``."""
    return dataclasses.field(default=default, metadata={"setting": Setting(kind, help, **spec)})


