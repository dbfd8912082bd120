"""Server reflection under both ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcurl and current tools ask for ``grpc.reflection.v1.ServerReflection`` first; grpcio-reflection
ships only ``v1alpha``. The two protos declare the same messages with the same field numbers
under different package names, so their messages are the same bytes on the wire. One
:class:`grpc_reflection.v1alpha.reflection.ReflectionServicer` therefore answers both: v1alpha
through its generated registration, v1 through a generic handler whose (de)serializers are the
v1alpha message classes.

So that v1 clients can also describe the v1 service, its file
``grpc/reflection/v1/reflection.proto`` is added to the descriptor pool, built from the v1alpha
file with the package renamed (unless the pool already has it, e.g. from a grpcio-reflection that
ships v1).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

__all__ = [
    "V1ALPHA_SERVICE_NAME",
    "V1_SERVICE_NAME",
    "enable_reflection",
    "v1_file_descriptor",
]

#: Full name of the v1alpha service (what grpcio-reflection serves).
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
#: Full name of the v1 service.
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection file: the v1alpha one with its package (and type references) renamed.

    Returns
    -------
    google.protobuf.descriptor_pb2.FileDescriptorProto
        Named ``grpc/reflection/v1/reflection.proto``, package ``grpc.reflection.v1``.
    """
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    new = f".{_V1_PACKAGE}."
    proto.name = _V1_FILE
    proto.package = _V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated=true and its java/go package names
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return proto


def _ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(
    service_names: Iterable[str],
    server: grpc.aio.Server,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> reflection.BaseReflectionServicer:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both.

    Parameters
    ----------
    service_names : iterable of str
        Full names of the other services ``ListServices`` reports (the reflection services are
        added).
    server : grpc.aio.Server
        Not started yet.
    pool : DescriptorPool, optional
        Where descriptors are looked up; default the protobuf default pool.

    Returns
    -------
    grpc_reflection.v1alpha.reflection.aio.ReflectionServicer
        The (asyncio) servicer behind both services.
    """
    pool = descriptor_pool.Default() if pool is None else pool
    _ensure_v1_descriptor(pool)
    names = {*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME}
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handlers = {
        _METHOD: grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, handlers),)
    )
    return servicer
