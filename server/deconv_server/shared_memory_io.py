"""The I/O half of shared memory: registered regions and one call's reads and writes.

A :class:`Region` holds the server's descriptor of a caller's file. A :class:`Binding` holds the
regions one Conv/TransposedConv call uses (so their descriptors stay open while a worker thread
reads or writes them), checks each file with ``fstat`` before every use (a removed file drops its
region, a shrunken one is OUT_OF_RANGE), reads tensors with ``os.preadv`` into fresh buffers and
writes the result with ``os.pwrite``. Nothing is ever mapped, so a caller that truncates its file
cannot crash the server; a short read or write is OUT_OF_RANGE. The registry is
:mod:`deconv_server.shared_memory`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

from deconv_server.errors import (
    SharedMemoryError,
    SharedMemoryFileError,
    SharedMemoryNotFoundError,
    SharedMemoryPermissionError,
    SharedMemoryRangeError,
)

if TYPE_CHECKING:
    from deconv_server.shared_memory import SharedMemoryRegistry

__all__ = ["Binding", "Region", "open_file", "region_descriptor_room", "unlinked"]

#: Reads and writes at least this large run on a worker thread.
_THREAD_BYTES = 1 << 20
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


@dataclass(eq=False)
class Region:
    """One registered window of a file; ``fd`` stays open until dropped and unused."""

    name: str
    key: str
    owner: str
    fd: int
    offset: int
    byte_size: int
    writable: bool
    last_used: float
    users: int = 0
    dropped: bool = False

    def expired(self, now: float, lease: float) -> bool:
        """Unused (no call holds it) for longer than ``lease`` seconds."""
        return self.users == 0 and now - self.last_used > lease

    def close_if_unused(self) -> None:
        """Close the descriptor once dropped and no call holds the region any more."""
        if self.dropped and self.users == 0 and self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def open_file(dir_fd: int, what: str, key: str) -> tuple[int, bool]:
    """Open the regular file ``key`` of the directory ``dir_fd``, never following a symlink.

    Returns
    -------
    (int, bool)
        The descriptor, and whether it is open for writing too (else reading only).

    Raises
    ------
    SharedMemoryFileError
        No such file (NOT_FOUND).
    SharedMemoryError
        A symlink, directory, FIFO, device or another failure to open (INVALID_ARGUMENT).
    SharedMemoryPermissionError
        The server may not read it.
    """
    try:
        try:
            fd, writable = os.open(key, _OPEN_FLAGS | os.O_RDWR, dir_fd=dir_fd), True
        except PermissionError:
            fd, writable = os.open(key, _OPEN_FLAGS | os.O_RDONLY, dir_fd=dir_fd), False
    except FileNotFoundError:
        raise SharedMemoryFileError(
            f"{what}: no file {key!r} in the shared-memory directory; create it first"
        ) from None
    except PermissionError:
        raise SharedMemoryPermissionError(f"{what}: the server may not read {key!r}") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise SharedMemoryError(
                f"{what}: {key!r} is not a regular file (symbolic links are never followed)"
            ) from None
        raise SharedMemoryError(f"{what}: cannot open {key!r}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise SharedMemoryError(f"{what}: {key!r} is not a regular file")
    return fd, writable


#: Descriptors kept free for connections, logs and the server's own files.
_SPARE_DESCRIPTORS = 256


def region_descriptor_room() -> int:
    """How many region descriptors the process can hold: each region keeps its file open.

    Raises the soft ``RLIMIT_NOFILE`` to the hard limit first (a default soft limit of 1024
    would otherwise let registrations use up the descriptors connections need), then leaves
    :data:`_SPARE_DESCRIPTORS` of it free.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return 1 << 30
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(0, soft - _SPARE_DESCRIPTORS)


def unlinked(fd: int) -> bool:
    """True when the file of ``fd`` has no name left (or ``fd`` is unusable)."""
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return True


def _check_file(registry: SharedMemoryRegistry, what: str, region: Region) -> None:
    """The file still has a name and still covers the whole region (checked at every use)."""
    info = os.fstat(region.fd)
    if info.st_nlink == 0:
        registry.drop(region)
        raise SharedMemoryNotFoundError(
            f"{what}: the file {region.key!r} of region {region.name!r} was removed; the region is "
            f"dropped"
        )
    end = region.offset + region.byte_size
    if info.st_size < end:
        raise SharedMemoryRangeError(
            f"{what}: the file {region.key!r} is now {info.st_size} bytes, shorter than region "
            f"{region.name!r} needs ({end}); grow it back or register a smaller region"
        )


def _pread(fd: int, view: memoryview, position: int, what: str) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], position + done)
        if n <= 0:
            raise SharedMemoryRangeError(
                f"{what}: short read, {done} of {len(view)} bytes (the file shrank)"
            )
        done += n


def _pwrite(fd: int, data: memoryview, position: int, what: str) -> None:
    done = 0
    while done < len(data):
        n = os.pwrite(fd, data[done:], position + done)
        if n <= 0:
            raise SharedMemoryRangeError(f"{what}: short write, {done} of {len(data)} bytes")
        done += n


async def _io(fn: Any, *args: Any, nbytes: int) -> None:
    if nbytes >= _THREAD_BYTES:
        await asyncio.to_thread(fn, *args)
    else:
        fn(*args)


@dataclass
class Binding:
    """The regions one call uses, held (their descriptors open) until :meth:`release`."""

    registry: SharedMemoryRegistry
    inputs: list[tuple[str, Region, int]]
    output: tuple[Region, int] | None
    _held: list[Region] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = time.monotonic()
        for region in {id(r): r for r in self.regions()}.values():
            region.users += 1
            region.last_used = now
            self._held.append(region)

    def regions(self) -> list[Region]:
        """Every region the call uses."""
        return [r for _, r, _ in self.inputs] + ([self.output[0]] if self.output else [])

    async def read(self, plan: Any) -> dict[str, memoryview]:
        """The bytes of the plan's shared-memory tensors, read into fresh buffers.

        The buffers are uninitialised numpy memory (zero-filling them first would cost as much
        as the read), each filled completely or the call fails.
        """
        out: dict[str, memoryview] = {}
        for name, region, position in self.inputs:
            what = f"{plan.op}: {name}"
            _check_file(self.registry, what, region)
            view = memoryview(np.empty(plan.nbytes[name], np.uint8))
            await _io(_pread, region.fd, view, position, what, nbytes=len(view))
            self.registry.bytes_read += len(view)
            out[name] = view
        return out

    async def respond(self, y: np.ndarray, plan: Any) -> pb.ConvResponse:
        """Write the result into the output window; the response names where it lies."""
        assert self.output is not None
        region, offset = self.output
        what = f"{plan.op}: output"
        _check_file(self.registry, what, region)
        _, wire = codec.wire_array(y, dtype=plan.wire_dtype)
        data = memoryview(wire).cast("B")
        await _io(_pwrite, region.fd, data, region.offset + offset, what, nbytes=len(data))
        self.registry.bytes_written += len(data)
        response = pb.ConvResponse()
        out = response.output
        out.dtype = plan.wire_dtype
        out.shape.extend(wire.shape)
        out.shared_memory.region, out.shared_memory.offset = region.name, offset
        out.shared_memory.byte_size = len(data)
        return response

    def release(self) -> None:
        """Let go of the regions (a use renews their lease); close those dropped meanwhile."""
        now = time.monotonic()
        held, self._held = self._held, []
        for region in held:
            region.users -= 1
            region.last_used = now
            region.close_if_unused()
