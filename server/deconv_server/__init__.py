"""deconv_server: the gRPC service ``deconv.v1.Deconv`` around the deconv_core compute core.

Modules:

- :mod:`~deconv_server.config` (settings), :mod:`~deconv_server.settings` (the metadata each
  setting carries) and :mod:`~deconv_server.cli` (``deconv-server``);
- :mod:`~deconv_server.parsing` (deserializers that never raise), :mod:`~deconv_server.convert`
  (request -> the core's plan, limits, decoding), :mod:`~deconv_server.chunked` (streamed
  tensors), :mod:`~deconv_server.messages` (time-bounded reads and writes),
  :mod:`~deconv_server.weights` (the weight cache), :mod:`~deconv_server.shared_memory` and
  :mod:`~deconv_server.shared_memory_io` (tensors in files of callers on the same host);
- :mod:`~deconv_server.servicer` (the RPCs), :mod:`~deconv_server.operators` (gradients and
  deconvolve), :mod:`~deconv_server.handlers` (the method table), :mod:`~deconv_server.compute`
  (the core thread, batch slices, time estimates);
- :mod:`~deconv_server.errors` (the server's own exceptions), :mod:`~deconv_server.status`
  (exception -> status code and trailing metadata), :mod:`~deconv_server.budget` (in-flight
  byte budget);
- :mod:`~deconv_server.app` (server assembly on grpc.aio, health, warmup, signals),
  :mod:`~deconv_server.handle` (the blocking handle and the process's event loop),
  :mod:`~deconv_server.interceptors` (drain gate and token auth),
  :mod:`~deconv_server.lookup` (the interceptors applied at handler lookup),
  :mod:`~deconv_server.reflection` (server reflection v1 and v1alpha),
  :mod:`~deconv_server.tls` (TLS and mTLS credentials), :mod:`~deconv_server.healthcheck`
  (container probe);
- :mod:`~deconv_server.observe` (request ids, access log, per-RPC metrics),
  :mod:`~deconv_server.metrics` (Prometheus registry and HTTP endpoint),
  :mod:`~deconv_server.logging_setup` (JSON or text logs, written by one thread).

``import deconv_server`` is cheap; :func:`create_server` and :func:`serve` load the core on use.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

__all__ = ["ServerConfig", "__version__", "create_server", "serve"]

try:
    __version__ = metadata.version("deconv")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "ServerConfig":
        from deconv_server.config import ServerConfig

        return ServerConfig
    if name in ("create_server", "serve"):
        from deconv_server import app

        return getattr(app, name)
    raise AttributeError(f"module 'deconv_server' has no attribute {name!r}")
