"""The client's half of shared memory: tensors through files on the server's host, not gRPC.

With ``Client(target, shared_memory=<directory>)`` (the server's ``shared_memory_dir`` as this
process sees it) ``conv``/``conv_transpose`` write the input, weight and bias into an *arena*: a
file this client created in that directory and registered as a region (the .proto, "SHARED
MEMORY"). The request carries only references, the server writes the result into the same
arena, and the client copies it out. Each concurrent call takes an arena of its own from a pool
(a new one when all are busy), grown and registered again when a call needs more room. When the
server answers that a region is unknown (its lease ran out, or the server restarted: NOT_FOUND
with the trailing metadata ``deconv-shared-memory: unknown``) the client registers the arena
again and repeats the call once. A weight the server holds by digest stays out of the arena.

The files are written and read with ``os.pwrite``/``os.preadv`` (no mapping), so the results are
the bytes the TCP path would carry, decoded the same way. ``close()`` unregisters the regions and
deletes the files; a client never closed deletes its files when garbage-collected or at exit
(the server then drops its regions when their lease ends: it never deletes files itself).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from deconv.v1 import deconv_pb2 as pb
from deconv.wire import METHODS, SHARED_MEMORY_KEY, SHARED_MEMORY_UNKNOWN

from deconv_client._requests import Prepared, decode_output
from deconv_client.errors import DataLossError, DeconvClientError, InvalidArgumentError

__all__ = ["ALIGN", "MIN_ARENA_BYTES", "Arena", "ArenaPool", "Layout", "SharedMemory"]

#: Every tensor starts at a multiple of this many bytes of its arena.
ALIGN = 64
#: Smallest arena; arenas grow to the next power of two a call needs.
MIN_ARENA_BYTES = 1 << 20
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Arena:
    """One file of the shared-memory directory, registered as the region of the same name.

    Parameters
    ----------
    directory : str
    name : str
        File name and region name.
    """

    def __init__(self, directory: str, name: str) -> None:
        self.name = name
        self.path = os.path.join(directory, name)
        self.fd = os.open(self.path, _CREATE, 0o660)
        self.capacity = 0
        #: The server holds the region with the current capacity (as far as this client knows).
        self.registered = False

    def ensure(self, nbytes: int) -> None:
        """Grow the file to hold ``nbytes`` (a power of two, at least MIN_ARENA_BYTES)."""
        if nbytes <= self.capacity:
            return
        size = max(MIN_ARENA_BYTES, 1 << (nbytes - 1).bit_length())
        os.ftruncate(self.fd, size)
        self.capacity = size
        self.registered = False  # the server holds the smaller window

    def write(self, array: np.ndarray, offset: int) -> None:
        """Write the raw bytes of a C-contiguous array at ``offset``."""
        data, done = memoryview(array).cast("B"), 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], offset + done)

    def read(self, nbytes: int, offset: int) -> memoryview:
        """``nbytes`` bytes from ``offset``, into a fresh (uninitialised, then filled) buffer."""
        view, done = memoryview(np.empty(nbytes, np.uint8)), 0
        while done < nbytes:
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n <= 0:
                raise DataLossError(f"shared memory: {self.path} is shorter than the result")
            done += n
        return view

    def register_request(self) -> pb.RegisterSharedMemoryRequest:
        """The RegisterSharedMemory request of the whole arena."""
        return pb.RegisterSharedMemoryRequest(
            name=self.name, key=self.name, offset=0, byte_size=self.capacity
        )

    def delete(self) -> None:
        """Close the file and remove it (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class ArenaPool:
    """Arenas of one client; each call takes one for itself (thread-safe).

    Parameters
    ----------
    directory : str or path
        The server's shared-memory directory as this process sees it.

    Raises
    ------
    InvalidArgumentError
        ``directory`` is not a directory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        if not os.path.isdir(self.directory):
            raise InvalidArgumentError(f"shared_memory={self.directory!r} is not a directory")
        self._prefix = f"deconv-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._free: list[Arena] = []
        self._all: list[Arena] = []
        #: RegisterSharedMemory calls made (first registrations, growths and re-registrations).
        self.registrations = 0

    @property
    def arenas(self) -> list[Arena]:
        """Every arena created so far."""
        with self._lock:
            return list(self._all)

    @contextlib.contextmanager
    def taken(self, nbytes: int) -> Iterator[Arena]:
        """An arena of at least ``nbytes`` for the block, returned to the pool after it."""
        with self._lock:
            fits = [a for a in self._free if a.capacity >= nbytes]
            if fits:  # the smallest that fits; else the largest, grown
                arena: Arena | None = min(fits, key=lambda a: a.capacity)
            else:
                arena = max(self._free, key=lambda a: a.capacity, default=None)
            if arena is not None:
                self._free.remove(arena)
        if arena is None:
            arena = Arena(self.directory, f"{self._prefix}-{len(self._all)}-{secrets.token_hex(2)}")
            with self._lock:
                self._all.append(arena)
        try:
            arena.ensure(nbytes)
            yield arena
        finally:
            with self._lock:
                if arena.fd >= 0:
                    self._free.append(arena)

    def cleanup(self) -> list[Arena]:
        """Delete every arena's file; returns the arenas that were registered."""
        with self._lock:
            arenas, self._all, self._free = self._all, [], []
        registered = [a for a in arenas if a.registered]
        for arena in arenas:
            arena.delete()
        return registered


@dataclass
class Layout:
    """Where one call's tensors and result go in an arena.

    Attributes
    ----------
    prepared : Prepared
    placed : list of (str, ndarray, int)
        Tensors written into the arena with their offsets (a weight named by digest is not).
    output : (int, int) or None
        Offset and size of the result's window (None: the result comes in the response).
    total : int
        Bytes of arena the call needs.
    """

    prepared: Prepared
    placed: list[tuple[str, np.ndarray, int]]
    output: tuple[int, int] | None
    total: int

    @classmethod
    def of(cls, prepared: Prepared) -> Layout:
        """The layout of ``prepared``: its tensors one after the other, then the result."""
        placed, offset = [], 0
        for name, arr in prepared.payloads:
            if (name == "weight" and prepared.by_reference) or not arr.nbytes:
                continue
            placed.append((name, arr, offset))
            offset += _aligned(arr.nbytes)
        out = prepared.output_nbytes
        output = (offset, out) if out else None
        return cls(prepared, placed, output, max(1, offset + (out or 0)))

    def request(self, arena: Arena) -> Any:
        """The request naming the arena's windows (written by :meth:`write`)."""
        prepared = self.prepared
        request = type(prepared.request)()
        request.CopyFrom(prepared.request)
        request.weight_digest = prepared.digest
        for name, arr, offset in self.placed:
            ref = getattr(request, name).shared_memory
            ref.region, ref.offset, ref.byte_size = arena.name, offset, arr.nbytes
        if self.output is not None:
            ref = request.output_shared_memory
            ref.region, (ref.offset, ref.byte_size) = arena.name, self.output
        return request

    def write(self, arena: Arena) -> None:
        """Copy the tensors into the arena."""
        for _, arr, offset in self.placed:
            arena.write(arr, offset)

    def result(self, arena: Arena, response: Any) -> np.ndarray:
        """The result of ``response``: copied out of the arena, or from its data."""
        tensor, dtype = response.output, self.prepared.input_dtype
        if not tensor.HasField("shared_memory"):
            return decode_output(tensor, dtype)
        ref = tensor.shared_memory
        if self.output is None or (ref.region, ref.offset) != (arena.name, self.output[0]):
            raise DataLossError(f"shared memory: the result names an unexpected window {ref}")
        if not 0 <= ref.byte_size <= self.output[1]:
            raise DataLossError(f"shared memory: the result's {ref.byte_size} bytes overflow")
        return decode_output(tensor, dtype, arena.read(ref.byte_size, ref.offset))


def region_unknown(error: DeconvClientError) -> bool:
    """Whether the server says it does not hold a region the call named (register it again)."""
    return (SHARED_MEMORY_KEY, SHARED_MEMORY_UNKNOWN) in error.trailing_metadata


def _identity(response: Any) -> Any:
    return response


class SharedMemory:
    """Shared-memory calls of one client (blocking and asyncio flavours).

    Parameters
    ----------
    directory : str or path
    client : BaseClient
        Only for the finalizer, which deletes the files when the client is collected or at exit.
    """

    def __init__(self, directory: str | os.PathLike[str], client: Any) -> None:
        self.pool = ArenaPool(directory)
        self._finalizer = weakref.finalize(client, self.pool.cleanup)

    def call(self, client: Any, prepared: Prepared) -> np.ndarray:
        """Make the call ``prepared`` of a blocking client through an arena."""
        layout = Layout.of(prepared)
        method = getattr(client._stub, METHODS[prepared.op].unary)
        with self.pool.taken(layout.total) as arena:
            layout.write(arena)
            for attempt in range(2):
                if not arena.registered:
                    self.pool.registrations += 1
                    register = client._stub.RegisterSharedMemory
                    client._unary_call(register, arena.register_request(), _identity)
                    arena.registered = True
                try:
                    response = client._unary_call(method, layout.request(arena), _identity)
                except DeconvClientError as exc:
                    if attempt or not region_unknown(exc):
                        raise
                    arena.registered = False
                    continue
                return layout.result(arena, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, client: Any, prepared: Prepared) -> np.ndarray:
        """Make the call ``prepared`` of an asyncio client through an arena."""
        layout = Layout.of(prepared)
        method = getattr(client._stub, METHODS[prepared.op].unary)
        with self.pool.taken(layout.total) as arena:
            layout.write(arena)
            for attempt in range(2):
                if not arena.registered:
                    self.pool.registrations += 1
                    register = client._stub.RegisterSharedMemory
                    await client._unary_call(register, arena.register_request(), _identity)
                    arena.registered = True
                try:
                    response = await client._unary_call(method, layout.request(arena), _identity)
                except DeconvClientError as exc:
                    if attempt or not region_unknown(exc):
                        raise
                    arena.registered = False
                    continue
                return layout.result(arena, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self, client: Any) -> None:
        """Unregister the arenas (errors ignored: the lease ends them) and delete their files."""
        for arena in self._cleanup():
            with contextlib.suppress(DeconvClientError):
                client._unary_call(
                    client._stub.UnregisterSharedMemory, _unregister(arena), _identity
                )

    async def aclose(self, client: Any) -> None:
        """:meth:`close` of an asyncio client."""
        for arena in self._cleanup():
            with contextlib.suppress(DeconvClientError):
                call = client._unary_call(
                    client._stub.UnregisterSharedMemory, _unregister(arena), _identity
                )
                await call

    def _cleanup(self) -> list[Arena]:
        self._finalizer.detach()
        return self.pool.cleanup()


def _unregister(arena: Arena) -> pb.UnregisterSharedMemoryRequest:
    return pb.UnregisterSharedMemoryRequest(name=arena.name)
