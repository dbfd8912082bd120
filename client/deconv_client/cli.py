"""``deconv``: command-line client (.npy files in, .npy file out).

::

    deconv conv-transpose --input x.npy --weight w.npy [--bias b.npy] --stride 2 --padding 1 \\
        [--output-padding 1] [--output-shape 16 16] [--dilation 1] [--groups 1] \\
        --output y.npy --target 127.0.0.1:50051
    deconv conv --input x.npy --weight w.npy --padding same --output y.npy
    deconv health [--service deconv.v1.Deconv]
    deconv info
    deconv explain conv-transpose --input-shape 1 8 3 3 --weight-shape 8 4 3 3 --stride 2 \
        --padding same [--convention onnx] [--json]

``explain`` needs no server: it prints, per axis, the full-result length, the crop window and the
output size, and the same call in PyTorch, TensorFlow, Keras and ONNX (or why one cannot).

``--padding`` takes one int, one int per axis, ``before:after`` pairs per axis, or
valid/same/same_lower. ``--target`` defaults to $DECONV_TARGET or 127.0.0.1:50051.

Security: ``--ca ca.pem`` (TLS; $DECONV_CA), ``--cert client.pem --key client.key`` (mutual TLS;
$DECONV_CERT, $DECONV_KEY), ``--tls`` (TLS with the system roots), ``--server-name`` (name the
server certificate must carry), ``--token`` ($DECONV_TOKEN) or ``--token-file``
($DECONV_TOKEN_FILE); a flag wins over the variables. Exit codes:
0 success, 1 the server or the connection failed (or health is not SERVING), 2 usage errors,
unreadable input files and arguments the client rejects before sending.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from deconv import wire

from deconv_client import _explain
from deconv_client.client import Client
from deconv_client.errors import DeconvClientError, InvalidArgumentError

__all__ = ["build_parser", "main"]

_MODES = tuple(wire.enum_values(wire.PADDING_MODE_NAMES))
_FILLS = tuple(wire.enum_values(wire.PADDING_FILL_NAMES))
_CONVENTIONS = tuple(wire.enum_values(wire.CONVENTION_NAMES))


class UsageError(Exception):
    """A command-line problem: exit code 2."""


def _padding(tokens: list[str]) -> Any:
    if len(tokens) == 1 and tokens[0].lower() in _MODES:
        return tokens[0].lower()
    try:
        if any(":" in t for t in tokens):
            pairs = []
            for t in tokens:
                before, sep, after = t.partition(":")
                if not sep:
                    raise ValueError(t)
                pairs.append((int(before), int(after)))
            return pairs
        values = [int(t) for t in tokens]
    except ValueError:
        raise UsageError(
            f"--padding {' '.join(tokens)}: use one int, one int per axis, before:after pairs, "
            f"or one of {', '.join(_MODES)}"
        ) from None
    return values[0] if len(values) == 1 else values


def _ints(values: list[int] | None, default: Any) -> Any:
    if values is None:
        return default
    return values[0] if len(values) == 1 else values


def _load(path: str | None, flag: str) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {flag} {path}: {exc}") from None


def _op_flags(p: argparse.ArgumentParser, name: str) -> None:
    """The flags only one of conv / conv-transpose has."""
    if name == "conv":
        p.add_argument("--padding-mode", default="zeros", choices=_FILLS, help="pad fill")
        return
    p.add_argument("--output-padding", type=int, nargs="+", help="one int or per axis")
    p.add_argument("--output-shape", type=int, nargs="+", help="spatial output sizes")
    p.add_argument("--convention", default="default", choices=_CONVENTIONS, help="window rules")


def _run_explain(args: argparse.Namespace) -> int:
    op = args.op.replace("-", "_")
    result = _explain.explain(
        op,
        args.input_shape,
        args.weight_shape,
        stride=_ints(args.stride, 1),
        padding=_padding(args.padding) if args.padding else 0,
        dilation=_ints(args.dilation, 1),
        output_padding=_ints(args.output_padding, 0),
        output_shape=args.output_shape,
        data_format=args.data_format,
        weight_format=args.weight_format,
        convention=args.convention,
        padding_mode=args.padding_mode,
    )
    print(result.to_json() if args.json else result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``deconv``."""
    parser = argparse.ArgumentParser(
        prog="deconv", description="Client of the deconv gRPC service (.npy in, .npy out)."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=os.environ.get("DECONV_TARGET", "127.0.0.1:50051"),
        help="server address or gRPC URI (default $DECONV_TARGET or %(default)s)",
    )
    common.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    common.add_argument("--token", help="bearer token (default $DECONV_TOKEN)")
    common.add_argument("--token-file", help="file holding the token ($DECONV_TOKEN_FILE)")
    common.add_argument("--ca", help="PEM CA bundle of the server certificate ($DECONV_CA)")
    common.add_argument("--cert", help="PEM client certificate for mutual TLS ($DECONV_CERT)")
    common.add_argument("--key", help="PEM client private key for mutual TLS ($DECONV_KEY)")
    common.add_argument(
        "--tls", action="store_true", help="use TLS with the system roots (implied by --ca)"
    )
    common.add_argument("--server-name", help="expected name in the server certificate")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, helptext in (
        ("conv", "convolution (cross-correlation) with optional bias"),
        ("conv-transpose", "transposed convolution with optional bias"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        p.add_argument("--input", required=True, help="input .npy (N, C_in, spatial...)")
        p.add_argument("--weight", required=True, help="weight .npy")
        p.add_argument("--bias", help="bias .npy (C_out,)")
        p.add_argument("--output", required=True, help="result .npy to write")
        p.add_argument("--stride", type=int, nargs="+", help="one int or one per axis")
        p.add_argument("--padding", nargs="+", help="int(s), before:after pairs, or a mode")
        p.add_argument("--dilation", type=int, nargs="+", help="one int or one per axis")
        p.add_argument("--groups", type=int, default=1)
        p.add_argument(
            "--data-format", default="channels_first", choices=("channels_first", "channels_last")
        )
        p.add_argument("--weight-format", default="torch", choices=("torch", "tf"))
        _op_flags(p, name)
    p = sub.add_parser("explain", help="explain a call's windows and framework equivalents")
    p.add_argument("op", choices=("conv", "conv-transpose"))
    p.add_argument("--input-shape", type=int, nargs="+", required=True, help="input shape")
    p.add_argument("--weight-shape", type=int, nargs="+", required=True, help="weight shape")
    p.add_argument("--stride", type=int, nargs="+", help="one int or one per axis")
    p.add_argument("--padding", nargs="+", help="int(s), before:after pairs, or a mode")
    p.add_argument("--dilation", type=int, nargs="+", help="one int or one per axis")
    p.add_argument(
        "--data-format", default="channels_first", choices=("channels_first", "channels_last")
    )
    p.add_argument("--weight-format", default="torch", choices=("torch", "tf"))
    p.add_argument("--output-padding", type=int, nargs="+", help="one int or per axis")
    p.add_argument("--output-shape", type=int, nargs="+", help="spatial output sizes")
    p.add_argument("--convention", default="default", choices=_CONVENTIONS)
    p.add_argument("--padding-mode", default="zeros", choices=_FILLS)
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p = sub.add_parser("health", parents=[common], help="print the grpc.health.v1 status")
    p.add_argument("--service", default="", help='service name (default "": the server)')
    sub.add_parser("info", parents=[common], help="print GetServerInfo as JSON")
    return parser


def _compute(client: Client, args: argparse.Namespace) -> int:
    x = _load(args.input, "--input")
    w = _load(args.weight, "--weight")
    b = _load(args.bias, "--bias")
    params: dict[str, Any] = {
        "stride": _ints(args.stride, 1),
        "padding": _padding(args.padding) if args.padding else 0,
        "dilation": _ints(args.dilation, 1),
        "groups": args.groups,
        "data_format": args.data_format,
        "weight_format": args.weight_format,
    }
    if args.command == "conv":
        y = client.conv(x, w, b, **params, padding_mode=args.padding_mode)
    else:
        params["output_padding"] = _ints(args.output_padding, 0)
        params["output_shape"] = args.output_shape
        params["convention"] = args.convention
        y = client.conv_transpose(x, w, b, **params)
    try:
        np.save(args.output, y, allow_pickle=False)
    except OSError as exc:
        raise UsageError(f"cannot write --output {args.output}: {exc}") from None
    print(f"wrote {args.output}: shape {tuple(y.shape)} {y.dtype}")
    return 0


def _security(args: argparse.Namespace) -> dict[str, Any]:
    """Client security arguments from the flags, else the DECONV_* variables."""
    env = os.environ
    token, token_file = args.token, args.token_file
    if token is None and token_file is None:
        token = env.get("DECONV_TOKEN") or None
        token_file = None if token else env.get("DECONV_TOKEN_FILE") or None
    return {
        "token": token,
        "token_file": token_file,
        "root_certificates": args.ca or env.get("DECONV_CA") or None,
        "certificate_chain": args.cert or env.get("DECONV_CERT") or None,
        "private_key": args.key or env.get("DECONV_KEY") or None,
        "tls": True if args.tls else None,
        "server_name": args.server_name,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deconv``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explain":
            return _run_explain(args)
        with Client(args.target, timeout=args.timeout, **_security(args)) as client:
            if args.command == "health":
                status = client.health(args.service)
                print(status)
                return 0 if status == "SERVING" else 1
            if args.command == "info":
                print(json.dumps(client.server_info().as_dict(), indent=2, sort_keys=True))
                return 0
            return _compute(client, args)
    except (UsageError, InvalidArgumentError) as exc:
        if isinstance(exc, InvalidArgumentError) and exc.__cause__ is not None:
            print(f"deconv: error: {exc.code.name}: {exc}", file=sys.stderr)
            return 1
        print(f"deconv: error: {exc}", file=sys.stderr)
        return 2
    except DeconvClientError as exc:
        print(f"deconv: error: {exc.code.name}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a malformed target or load-balancing option
        print(f"deconv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
