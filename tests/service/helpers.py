"""Shared helpers of the service tests: core calls under the server's lock, raw stubs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv_server.servicer import CORE_LOCK

import deconv_core


def core(op: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """deconv_core.<op>(...) under the server's lock (the in-process server may be computing)."""
    with CORE_LOCK:
        return getattr(deconv_core, op)(*args, **kwargs)


@contextmanager
def raw_stub(target: str, **options: Any) -> Iterator[pb_grpc.DeconvStub]:
    """A bare generated stub on a fresh channel (no client-side checks or retries)."""
    opts = [(f"grpc.{k}", v) for k, v in options.items()]
    with grpc.insecure_channel(target, options=opts) as channel:
        yield pb_grpc.DeconvStub(channel)


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """Standard-normal data of a dtype."""
    return rng.standard_normal(shape).astype(dtype)
