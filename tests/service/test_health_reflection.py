"""grpc.health.v1 (NOT_SERVING until warm, then SERVING) and server reflection."""

from __future__ import annotations

import threading

import grpc
import pytest
from deconv_client import Client, NotFoundError
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ServerConfig
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

import deconv_core

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


@pytest.mark.parametrize("service", ["", "deconv.v1.Deconv"])
def test_health_is_serving_when_warm(target: str, service: str) -> None:
    assert _check(target, service) == SERVING
    with Client(target, timeout=10) as c:
        assert c.health(service) == "SERVING"


def test_unknown_service_is_not_found(target: str) -> None:
    with Client(target, timeout=10) as c, pytest.raises(NotFoundError):
        c.health("no.such.Service")


def test_not_serving_until_warmup_finishes(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_warmup() -> float:
        entered.set()
        assert release.wait(30)
        return 0.0

    monkeypatch.setattr(deconv_core, "warmup", slow_warmup)
    handle = start_server(ServerConfig(port=0, warmup=True, log_level="WARNING"))
    try:
        assert entered.wait(10)
        for service in ("", "deconv.v1.Deconv"):
            assert _check(handle.target, service) == NOT_SERVING
        with Client(handle.target, timeout=10) as c:
            assert not c.server_info().warm
            release.set()
            c.wait_until_serving(10)
            assert c.server_info().warm
        assert _check(handle.target, "deconv.v1.Deconv") == SERVING
        handle.stop(0).wait(5)  # graceful shutdown flips health before the port closes
    finally:
        release.set()
        handle.stop(0).wait(5)


def test_reflection_lists_and_describes_the_service(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"deconv.v1.Deconv", "grpc.health.v1.Health"} <= services
        proto = db.FindFileContainingSymbol("deconv.v1.Deconv")
        methods = {m.name for s in proto.service for m in s.method}
        assert {"Conv", "TransposedConv", "GetServerInfo"} <= methods


def test_server_info(target: str) -> None:
    with Client(target, timeout=10) as c:
        info = c.server_info()
    assert info.version
    assert info.dtypes == ("float32", "float64", "float16", "bfloat16")
    assert info.ranks == (1, 2, 3)
    assert info.limits["max_message_bytes"] > 0 and info.limits["max_tensor_elements"] > 0
    assert info.numba_version == deconv_core.runtime_info()["numba_version"]
    assert info.threading_layer and info.threads >= 1
    assert info.instance_id.count(":") >= 2 and info.warm
