"""The interceptor chain applied at handler lookup (deconv_server.lookup): the same handlers,
in the same order, as grpc.aio's interceptors would give, and the wrapped form reused."""

from __future__ import annotations

from typing import Any

import grpc
from deconv_server.interceptors import DrainGate, TokenAuth
from deconv_server.lookup import InterceptingRegistrar
from deconv_server.observe import ObservabilityInterceptor


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str, metadata: tuple = ()) -> None:
        self.method = method
        self.invocation_metadata = metadata


class _Server:
    def __init__(self) -> None:
        self.generic: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)


async def _echo(request: Any, context: Any) -> Any:
    return request


def _chain(tokens: tuple[str, ...] = ("s3cret",)) -> tuple[_Server, DrainGate, Any]:
    server = _Server()
    gate = DrainGate()
    obs = ObservabilityInterceptor(None, "deconv.v1.Deconv")
    registrar = InterceptingRegistrar(server, [obs, gate, TokenAuth(tokens)])
    handlers = {"Conv": grpc.unary_unary_rpc_method_handler(_echo)}
    registrar.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("deconv.v1.Deconv", handlers),)
    )
    registrar.add_registered_method_handlers("deconv.v1.Deconv", handlers)  # ignored
    health = {"Check": grpc.unary_unary_rpc_method_handler(_echo)}
    registrar.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.health.v1.Health", health),)
    )
    return server, gate, obs


def _lookup(server: _Server, details: _Details) -> Any:
    for generic in server.generic:
        found = generic.service(details)
        if found is not None:
            return found
    return None


def test_admitted_calls_reuse_one_wrapped_handler_and_refused_ones_get_a_rejecting_one():
    server, gate, _ = _chain()
    ok = _Details("/deconv.v1.Deconv/Conv", (("authorization", "Bearer s3cret"),))
    first, second = _lookup(server, ok), _lookup(server, ok)
    assert first is second and first.unary_unary is not _echo  # wrapped once, kept
    refused = _lookup(server, _Details("/deconv.v1.Deconv/Conv", ()))
    assert refused is not first and refused.unary_unary is not _echo
    assert _lookup(server, _Details("/deconv.v1.Deconv/Conv", ())) is not refused  # not kept
    health = _lookup(server, _Details("/grpc.health.v1.Health/Check", ()))  # no token needed
    assert health is _lookup(server, _Details("/grpc.health.v1.Health/Check", ()))
    gate.close()
    draining = _lookup(server, ok)
    assert draining is not first  # a rejecting handler once the gate is closed
    assert _lookup(server, _Details("/grpc.health.v1.Health/Check", ())) is health
    assert _lookup(server, _Details("/deconv.v1.Deconv/Nope", ())) is None
    assert len(server.generic) == 2  # the registered-method copies were not added
