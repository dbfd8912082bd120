"""Service-level messages as plain Python: :class:`ServerInfo`, and grpc.health.v1 by hand.

The health messages are two one-field protobufs, encoded here so the client needs no
grpcio-health-checking (a test checks the bytes against the real stubs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from deconv import frames
from deconv.v1 import deconv_pb2 as pb

from deconv_client.errors import DeadlineExceededError

__all__ = ["HEALTH_CHECK_METHOD", "ServerInfo", "decode_health", "encode_health", "server_info"]


@dataclass(frozen=True)
class ServerInfo:
    """What ``GetServerInfo`` reports, as plain Python values.

    Attributes
    ----------
    version : str
    dtypes : tuple of str
        e.g. ("float32", "float64", "float16", "bfloat16").
    ranks : tuple of int
    limits : dict
        Every field of the ``Limits`` message by name: max_message_bytes, max_tensor_elements,
        max_output_elements, workers, max_flops_per_request, max_inflight_bytes,
        max_workspace_bytes, weight_cache_bytes and the shared-memory limits.
    numba_version, threading_layer : str
    threads : int
    runtime : dict of str to str
    instance_id : str
        Differs between server processes (replicas).
    requests_served, requests_failed : int
    warm : bool
    shared_memory_regions : int
        Shared-memory regions the server holds now, all callers together.
    """

    version: str
    dtypes: tuple[str, ...]
    ranks: tuple[int, ...]
    limits: dict[str, int]
    numba_version: str
    threading_layer: str
    threads: int
    runtime: dict[str, str]
    instance_id: str
    requests_served: int
    requests_failed: int
    warm: bool
    shared_memory_regions: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def server_info(response: pb.GetServerInfoResponse) -> ServerInfo:
    """:class:`ServerInfo` of a ``GetServerInfoResponse``."""
    lim = response.limits
    return ServerInfo(
        version=response.version,
        dtypes=tuple(_dtype_label(d) for d in response.dtypes),
        ranks=tuple(int(r) for r in response.ranks),
        limits={field.name: getattr(lim, field.name) for field in lim.DESCRIPTOR.fields},
        numba_version=response.numba_version,
        threading_layer=response.threading_layer,
        threads=response.threads,
        runtime=dict(response.runtime),
        instance_id=response.instance_id,
        requests_served=response.requests_served,
        requests_failed=response.requests_failed,
        warm=response.warm,
        shared_memory_regions=response.shared_memory_regions,
    )


def _dtype_label(value: int) -> str:
    try:
        return pb.DType.Name(value).removeprefix("DTYPE_").lower()
    except ValueError:
        return str(value)


# grpc.health.v1, encoded by hand so the client needs no grpcio-health-checking:
# HealthCheckRequest {string service = 1;}  HealthCheckResponse {ServingStatus status = 1;}
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
_HEALTH_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_health(service: str) -> bytes:
    """Serialized ``grpc.health.v1.HealthCheckRequest``."""
    raw = service.encode()
    return b"\x0a" + frames.varint(len(raw)) + raw if raw else b""


def decode_health(data: bytes) -> str:
    """Status name of a serialized ``grpc.health.v1.HealthCheckResponse``."""
    status, pos = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if field == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"malformed health response (wire type {wire})")
    return _HEALTH_NAMES.get(status, str(status))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("malformed health response (truncated varint)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


class ServingWait:
    """The deadline of ``wait_until_serving``, and whether to poll again after a status.

    Parameters
    ----------
    target : str
        For the error message.
    timeout : float
        Seconds to wait in all.
    """

    #: Seconds between two polls.
    interval = 0.05

    def __init__(self, target: str, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    def again(self, status: str) -> bool:
        """Whether to poll again, after :attr:`interval`; False once ``status`` is SERVING.

        Parameters
        ----------
        status : str
            The last poll's health status, or the code name of its error ("UNAVAILABLE").

        Returns
        -------
        bool

        Raises
        ------
        deconv_client.errors.DeadlineExceededError
            Not SERVING, and no time left for another poll.
        """
        if status == "SERVING":
            return False
        if time.monotonic() + self.interval >= self._deadline:
            raise DeadlineExceededError(
                f"{self._target} not SERVING after {self._timeout} s (last status {status})"
            )
        return True
