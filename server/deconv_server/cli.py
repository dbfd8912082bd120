"""``deconv-server``: run the gRPC service (flags override DECONV_* environment variables)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from deconv_server import __version__
from deconv_server.config import (
    ENV_VARS,
    SETTINGS,
    ConfigError,
    Kind,
    ServerConfig,
    Setting,
    format_default,
)

__all__ = ["build_parser", "flag", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``deconv-server``: one flag per :class:`ServerConfig` field.

    Flags, their parsing and help come from the fields' metadata
    (:data:`deconv_server.config.SETTINGS`): ``max_message_bytes`` is ``--max-message-bytes``,
    a bool such as ``warmup`` is ``--warmup``/``--no-warmup``. Every flag defaults to None, so
    its variable or the field's default applies unless it is given.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog="deconv-server",
        description="gRPC service for N-d convolution and transposed convolution. "
        "Prints 'deconv-server listening on HOST:PORT' once bound; logs to stderr. "
        "Every flag overrides its DECONV_* environment variable.",
    )
    groups: dict[str | None, Any] = {None: p}
    for name, setting in SETTINGS.items():
        if setting.group not in groups:
            groups[setting.group] = p.add_argument_group(setting.group)
        help_text = f"{setting.help} (env {ENV_VARS[name]}, default {format_default(name)})"
        kwargs: dict[str, Any] = {"dest": name, "default": None}
        kwargs["help"] = help_text.replace("%", "%%")  # argparse formats help with %
        if setting.kind is Kind.BOOL:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _flag_type(setting)
            kwargs["metavar"] = _METAVARS.get(setting.kind, name.upper())
            if setting.choices:
                kwargs["choices"] = setting.choices
                del kwargs["metavar"]
        groups[setting.group].add_argument(flag(name), **kwargs)
    p.add_argument("--version", action="version", version=f"deconv-server {__version__}")
    return p


def flag(name: str) -> str:
    """The command-line flag of field ``name`` (``--max-message-bytes`` for ``max_message_bytes``).

    For a bool the negative form is ``--no-`` + the rest of the flag.
    """
    return "--" + name.replace("_", "-")


_METAVARS = {
    Kind.INT: "N",
    Kind.SECONDS: "SECONDS",
    Kind.PATH: "FILE",
    Kind.SECRET: "TOKEN",
    Kind.LEVEL: "LEVEL",
}


def _flag_type(setting: Setting) -> Callable[[str], Any]:
    """An argparse ``type`` parsing text as ``setting`` does for its variable."""

    def parse(raw: str) -> Any:
        try:
            return setting.parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r} {exc}") from None

    parse.__name__ = setting.kind.value  # argparse names the type in some messages
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deconv-server``; returns the exit code (2 for a bad configuration)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = ServerConfig.from_env(**vars(args))
    except ConfigError as exc:
        parser.error(str(exc))
    from deconv_server.app import serve  # loads the core: keep --help fast

    try:
        return serve(config)
    except ConfigError as exc:  # an unreadable token or TLS file
        print(f"deconv-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deconv-server: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
