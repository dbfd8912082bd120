"""The method handler table of ``deconv.v1.Deconv``: which servicer method serves which RPC.

The compute methods are registered as streaming handlers (gRPC's reader/writer API) so that a
unary call's request gets a time bound; on the wire a unary RPC is a stream of one message each
way, so clients see the proto's unary methods. Methods with one response are registered as
stream-unary, so gRPC sends that response together with the status. The request deserializers
never raise (:mod:`deconv_server.parsing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import grpc.aio
from deconv import frames
from deconv.v1 import deconv_pb2 as pb

from deconv_server.parsing import lenient_parser

if TYPE_CHECKING:
    from deconv_server.servicer import DeconvServicer

__all__ = ["add_to_server"]

#: The shared-memory management RPCs (:mod:`deconv_server.shared_memory`): name, request, response.
_SHARED_MEMORY_RPCS = (
    ("RegisterSharedMemory", pb.RegisterSharedMemoryRequest, pb.SharedMemoryRegion),
    ("UnregisterSharedMemory", pb.UnregisterSharedMemoryRequest, pb.UnregisterSharedMemoryResponse),
    ("SharedMemoryStatus", pb.SharedMemoryStatusRequest, pb.SharedMemoryStatusResponse),
)


def _chunk_parser(message_type: object) -> object:
    """Data messages as zero-copy views (:mod:`deconv.frames`), the rest parsed leniently."""
    return frames.chunk_parser(message_type, lenient_parser(message_type))


def add_to_server(servicer: DeconvServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` on ``server`` as ``deconv.v1.Deconv``.

    The compute methods are registered as streaming handlers (the reader/writer API), so that a
    unary call's request and response get time bounds; on the wire a unary RPC is a stream of
    one message each way, so clients see the unary methods of the proto. The request
    deserializers never raise: a request whose bytes do not parse reaches the servicer as an
    :class:`~deconv_server.parsing.Unparsed` and gets INVALID_ARGUMENT.

    Parameters
    ----------
    servicer : DeconvServicer
    server : grpc.aio.Server
    """
    stream = grpc.stream_stream_rpc_method_handler
    unary = grpc.stream_unary_rpc_method_handler  # one response, sent with the status
    reply = pb.ConvResponse.SerializeToString
    chunk = frames.chunk_serializer(pb.TensorChunk)  # data messages come pre-framed
    handlers = {
        "Conv": unary(
            servicer.Conv,
            request_deserializer=lenient_parser(pb.ConvRequest),
            response_serializer=reply,
        ),
        "TransposedConv": unary(
            servicer.TransposedConv,
            request_deserializer=lenient_parser(pb.TransposedConvRequest),
            response_serializer=reply,
        ),
        "GetServerInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetServerInfo,
            request_deserializer=lenient_parser(pb.GetServerInfoRequest),
            response_serializer=pb.GetServerInfoResponse.SerializeToString,
        ),
        "ConvChunked": stream(
            servicer.ConvChunked,
            request_deserializer=_chunk_parser(pb.ConvRequestChunk),
            response_serializer=chunk,
        ),
        "TransposedConvChunked": stream(
            servicer.TransposedConvChunked,
            request_deserializer=_chunk_parser(pb.TransposedConvRequestChunk),
            response_serializer=chunk,
        ),
        "ConvBackward": unary(
            servicer.ConvBackward,
            request_deserializer=lenient_parser(pb.ConvBackwardRequest),
            response_serializer=pb.BackwardResponse.SerializeToString,
        ),
        "TransposedConvBackward": unary(
            servicer.TransposedConvBackward,
            request_deserializer=lenient_parser(pb.TransposedConvBackwardRequest),
            response_serializer=pb.BackwardResponse.SerializeToString,
        ),
        "Deconvolve": unary(
            servicer.Deconvolve,
            request_deserializer=lenient_parser(pb.DeconvolveRequest),
            response_serializer=pb.DeconvolveResponse.SerializeToString,
        ),
        "DeconvolveStream": stream(
            servicer.DeconvolveStream,
            request_deserializer=lenient_parser(pb.DeconvolveRequest),
            response_serializer=pb.DeconvolveUpdate.SerializeToString,
        ),
    }
    for method, request_type, response_type in _SHARED_MEMORY_RPCS:
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method),
            request_deserializer=lenient_parser(request_type),
            response_serializer=response_type.SerializeToString,
        )
    name = pb.DESCRIPTOR.services_by_name["Deconv"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
