"""grpc.health.v1 (NOT_SERVING until warm, then SERVING) and server reflection (v1 and v1alpha)."""

from __future__ import annotations

import threading

import grpc
import pytest
from deconv_client import Client, NotFoundError
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ServerConfig
from deconv_server.reflection import V1_SERVICE_NAME
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as rpb
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


def _reflect_v1(
    target: str, *requests: rpb.ServerReflectionRequest
) -> list[rpb.ServerReflectionResponse]:
    """Ask ``grpc.reflection.v1.ServerReflection`` (v1 and v1alpha messages are the same bytes)."""
    with grpc.insecure_channel(target) as channel:
        info = channel.stream_stream(
            f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString,
        )
        return list(info(iter(requests), timeout=10))


def _files(response: rpb.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    files = {}
    for data in response.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        files[proto.name] = proto
    return files


def test_reflection_v1_lists_and_describes_the_service() -> None:
    """grpcurl asks v1 first: a real server (as deployed) answers it, not UNIMPLEMENTED."""
    handle = start_server(ServerConfig(port=0, warmup=False, log_level="WARNING"))
    try:
        listed, deconv, v1, missing = _reflect_v1(
            handle.target,
            rpb.ServerReflectionRequest(list_services=""),
            rpb.ServerReflectionRequest(file_containing_symbol="deconv.v1.Deconv"),
            rpb.ServerReflectionRequest(file_containing_symbol=V1_SERVICE_NAME),
            rpb.ServerReflectionRequest(file_containing_symbol="no.such.Service"),
        )
        services = {s.name for s in listed.list_services_response.service}
        assert services == {
            "deconv.v1.Deconv",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        assert listed.original_request.list_services == ""

        files = _files(deconv)
        (proto,) = (f for f in files.values() if f.package == "deconv.v1")
        (service,) = proto.service
        assert service.name == "Deconv"
        assert {"Conv", "TransposedConv", "ConvChunked", "GetServerInfo"} <= {
            m.name for m in service.method
        }

        (own,) = _files(v1).values()  # the v1 service describes itself too
        assert own.name == "grpc/reflection/v1/reflection.proto"
        assert own.package == "grpc.reflection.v1"
        (method,) = own.service[0].method
        assert (method.input_type, method.output_type) == (
            ".grpc.reflection.v1.ServerReflectionRequest",
            ".grpc.reflection.v1.ServerReflectionResponse",
        )
        assert method.client_streaming and method.server_streaming

        assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    finally:
        handle.stop(0).wait(5)


def test_server_info(target: str) -> None:
    with Client(target, timeout=10) as c:
        info = c.server_info()
    assert info.version
    assert info.dtypes == ("float32", "float64", "float16", "bfloat16")
    assert info.ranks == (1, 2, 3)
    assert info.limits["max_message_bytes"] > 0 and info.limits["max_tensor_elements"] > 0
    assert info.numba_version == deconv_core.runtime_info()["numba_version"]
    assert info.threading_layer and info.threads >= 1
    assert info.runtime["workers_pinned"] in ("true", "false")  # JSON text
    assert info.instance_id.count(":") >= 2 and info.warm
