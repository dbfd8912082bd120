"""Shared-memory tensors for callers on the server's host (the .proto, "SHARED MEMORY").

A caller writes tensor bytes into a file of the server's shared-memory directory
(``shared_memory_dir``, a tmpfs; unset = off), registers a window of it as a named region, and
lets unary Conv/TransposedConv requests point at the bytes, and ask for the result there, instead
of carrying them. What this module guards:

- Files: a key is a plain file name (:data:`KEY_PATTERN`: no ``/``, no ``..``, no leading
  ``.``), opened relative to a descriptor of the directory with ``O_NOFOLLOW`` (no symlinks) and
  accepted only when it is a regular file. The window is checked against the file's real size
  (``fstat``) at registration and again at every use; a file whose last link is gone drops its
  region.
- Memory: the server never maps a caller's file (a caller that shrank it would crash the server
  with SIGBUS). Tensors are read with ``os.preadv`` into buffers of the server's own, reserved in
  the in-flight budget like the bytes of a unary message, and the result is written with
  ``os.pwrite``; a short read or write is OUT_OF_RANGE.
- Ownership: a region belongs to the fingerprint (SHA-256) of the bearer token its caller
  presented (every caller is the owner "" without token auth); another owner's name is
  PERMISSION_DENIED. Per-owner and total region limits bound the descriptors held.
- Leases: a region unused and not registered again for ``shared_memory_lease_s`` is dropped,
  lazily when looked up and by a sweep on the event loop. Dropping closes the server's
  descriptor once no call uses it; the server never creates, resizes or deletes a file.

Everything here runs on the server's event loop; the reads and writes of a call are
:mod:`deconv_server.shared_memory_io`'s (large ones on worker threads, while the call holds its
regions so their descriptors stay open).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from typing import Any

import grpc.aio
from deconv.v1 import deconv_pb2 as pb

from deconv_server.config import ConfigError, ServerConfig
from deconv_server.errors import (
    SharedMemoryError,
    SharedMemoryLimitError,
    SharedMemoryNotFoundError,
    SharedMemoryOffError,
    SharedMemoryPermissionError,
    SharedMemoryRangeError,
)
from deconv_server.parsing import require_parsed
from deconv_server.shared_memory_io import (
    Binding,
    Region,
    open_file,
    region_descriptor_room,
    unlinked,
)
from deconv_server.status import status_for, trailers_for

__all__ = [
    "KEY_PATTERN",
    "NAME_PATTERN",
    "SharedMemoryRegistry",
    "SharedMemoryRpcs",
]

#: A region name: 1-128 characters, starting with a letter or digit.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A file key: a plain file name of 1-255 characters, no leading '.', no '/' (and no '..').
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_OFF_HINT = "start the server with DECONV_SHARED_MEMORY_DIR (--shared-memory-dir) to enable it"


def _fingerprint(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            token = text.removeprefix("Bearer ").encode("utf-8", "replace")
            return hashlib.sha256(token).hexdigest()
    return hashlib.sha256(b"").hexdigest()


def _check_name(what: str, name: str, pattern: re.Pattern[str], rule: str) -> None:
    if not pattern.fullmatch(name) or ".." in name:
        raise SharedMemoryError(f"{what} {name[:80]!r} is not allowed: {rule}")


def _check_window(what: str, offset: int, size: int) -> None:
    if offset < 0 or size < 0:
        raise SharedMemoryError(f"{what}: offset={offset} and byte_size={size} must be >= 0")


class SharedMemoryRegistry:
    """The regions of one server, by name.

    Parameters
    ----------
    config : ServerConfig
        ``shared_memory_dir`` (None = off), the lease, the region limits, and whether token auth
        is on (regions then belong to token fingerprints).

    Raises
    ------
    ConfigError
        The directory cannot be opened.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.directory = config.shared_memory_dir
        self.lease = config.shared_memory_lease_s
        self.max_regions = config.max_shared_memory_regions
        if config.shared_memory_dir is not None:  # each region holds a descriptor open
            self.max_regions = min(self.max_regions, region_descriptor_room())
        self.max_per_owner = config.max_shared_memory_regions_per_owner
        self.auth = bool(config.auth_token or config.auth_token_file)
        self._regions: dict[str, Region] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._dir_fd = -1
        #: Bytes read from and written to shared memory; regions registered and dropped by lease.
        self.bytes_read = 0
        self.bytes_written = 0
        self.registrations = 0
        self.expirations = 0
        if self.directory is not None:
            try:
                self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise ConfigError(
                    f"cannot open shared_memory_dir {self.directory}: {exc.strerror}"
                ) from None

    @property
    def enabled(self) -> bool:
        """True when the server has a shared-memory directory."""
        return self._dir_fd >= 0

    def __len__(self) -> int:
        return len(self._regions)

    def owner(self, context: grpc.aio.ServicerContext) -> str:
        """The owner of the caller's regions: its token's fingerprint, or "" without auth."""
        return _fingerprint(context.invocation_metadata()) if self.auth else ""

    def _require_on(self, what: str) -> None:
        if not self.enabled:
            raise SharedMemoryOffError(f"{what}: this server has shared memory off; {_OFF_HINT}")

    # -- registration ------------------------------------------------------------------------

    def register(self, owner: str, request: Any) -> pb.SharedMemoryRegion:
        """Open ``request.key`` and hold ``[offset, offset + byte_size)`` of it as ``name``.

        Raises
        ------
        SharedMemoryError
            A bad name, key or window, or a file that is not a regular file (INVALID_ARGUMENT).
        SharedMemoryFileError, SharedMemoryPermissionError, SharedMemoryRangeError,
        SharedMemoryLimitError, SharedMemoryOffError
            See the .proto, "SHARED MEMORY".
        """
        what = "RegisterSharedMemory"
        self._require_on(what)
        name, key = request.name, request.key
        _check_name(f"{what}: name", name, NAME_PATTERN, "1-128 of A-Z a-z 0-9 . _ -")
        _check_name(
            f"{what}: key", key, KEY_PATTERN, "a plain file name in the shared-memory directory "
            "(1-255 of A-Z a-z 0-9 . _ -, no '/', no '..', not starting with '.')",
        )  # fmt: skip
        _check_window(what, request.offset, request.byte_size)
        if request.byte_size < 1:
            raise SharedMemoryError(f"{what}: byte_size must be >= 1")
        old = self._regions.get(name)
        if old is not None and old.owner != owner:
            raise SharedMemoryPermissionError(f"{what}: region {name!r} belongs to another caller")
        if old is None:
            self._check_limits(what, owner)
        fd, writable = open_file(self._dir_fd, what, key)
        try:
            size = os.fstat(fd).st_size
            end = request.offset + request.byte_size
            if end > size:
                raise SharedMemoryRangeError(
                    f"{what}: the window [{request.offset}, {end}) lies past the end of "
                    f"{key!r} ({size} bytes); grow the file first"
                )
        except BaseException:
            os.close(fd)
            raise
        region = Region(name, key, owner, fd, request.offset, request.byte_size, writable,
                        time.monotonic())  # fmt: skip
        if old is not None:
            self.drop(old)
        self._regions[name] = region
        self.registrations += 1
        self._schedule_sweep()
        return self._describe(region, time.monotonic())

    def _check_limits(self, what: str, owner: str) -> None:
        if len(self._regions) >= self.max_regions:
            raise SharedMemoryLimitError(
                f"{what}: the server holds {len(self._regions)} regions, its limit "
                f"(DECONV_MAX_SHARED_MEMORY_REGIONS); unregister some first"
            )
        mine = sum(r.owner == owner for r in self._regions.values())
        if mine >= self.max_per_owner:
            raise SharedMemoryLimitError(
                f"{what}: you hold {mine} regions, the limit per caller "
                f"(DECONV_MAX_SHARED_MEMORY_REGIONS_PER_OWNER); unregister some first"
            )

    def unregister(self, owner: str, request: Any) -> list[str]:
        """Drop the caller's region ``request.name``, or all of them with ``request.all``."""
        what = "UnregisterSharedMemory"
        self._require_on(what)
        if bool(request.name) == bool(request.all):
            raise SharedMemoryError(f"{what}: give a name or all=true (exactly one)")
        if request.all:
            names = sorted(n for n, r in self._regions.items() if r.owner == owner)
        else:
            names = [self._find(what, owner, request.name).name]
        for name in names:
            self.drop(self._regions[name])
        return names

    def status(self, owner: str, name: str) -> list[pb.SharedMemoryRegion]:
        """The caller's regions (or the one named) as held now."""
        what = "SharedMemoryStatus"
        self._require_on(what)
        now = time.monotonic()
        if name:
            return [self._describe(self._find(what, owner, name), now)]
        self.sweep()
        mine = sorted((r for r in self._regions.values() if r.owner == owner), key=lambda r: r.name)
        return [self._describe(r, now) for r in mine]

    def _describe(self, region: Region, now: float) -> pb.SharedMemoryRegion:
        left = max(0.0, region.last_used + self.lease - now) if not region.users else self.lease
        return pb.SharedMemoryRegion(
            name=region.name, key=region.key, offset=region.offset,
            byte_size=region.byte_size, writable=region.writable, lease_seconds=self.lease,
            expires_in_seconds=left,
        )  # fmt: skip

    # -- lookup, leases ----------------------------------------------------------------------

    def _find(self, what: str, owner: str, name: str) -> Region:
        _check_name(f"{what}: region", name, NAME_PATTERN, "1-128 of A-Z a-z 0-9 . _ -")
        region = self._regions.get(name)
        if region is not None and region.expired(time.monotonic(), self.lease):
            self.drop(region, expired=True)
            region = None
        if region is None:
            raise SharedMemoryNotFoundError(
                f"{what}: no shared-memory region {name!r} (never registered, unregistered, "
                f"expired after {self.lease:g} s unused, or the server restarted); register it "
                f"again"
            )
        if region.owner != owner:
            raise SharedMemoryPermissionError(f"{what}: region {name!r} belongs to another caller")
        return region

    def drop(self, region: Region, *, expired: bool = False) -> None:
        """Forget ``region``; its descriptor closes once no call holds it."""
        if self._regions.get(region.name) is region:
            del self._regions[region.name]
            self.expirations += expired
        region.dropped = True
        region.close_if_unused()

    def sweep(self) -> None:
        """Drop expired regions and regions whose file was removed (every few seconds, and
        before listing them)."""
        now = time.monotonic()
        for region in list(self._regions.values()):
            if region.expired(now, self.lease):
                self.drop(region, expired=True)
            elif region.users == 0 and unlinked(region.fd):
                self.drop(region)

    def _on_timer(self) -> None:
        self._timer = None
        self.sweep()
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        if self._timer is None and self._regions:
            period = min(5.0, max(0.05, self.lease / 4))
            self._timer = asyncio.get_running_loop().call_later(period, self._on_timer)

    def close(self) -> None:
        """Drop every region and close the directory (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for region in list(self._regions.values()):
            self.drop(region)
        if self._dir_fd >= 0:
            fd, self._dir_fd = self._dir_fd, -1
            os.close(fd)

    # -- requests ----------------------------------------------------------------------------

    def bind(self, plan: Any, owner: str) -> Binding:
        """Check a plan's shared-memory references and hold their regions for the call.

        Parameters
        ----------
        plan : deconv_server.convert.RequestPlan
            With ``plan.shared`` (tensors in shared memory) or ``plan.output_ref``.
        owner : str

        Returns
        -------
        Binding
            Release it when the call ends (:meth:`Binding.release`).
        """
        op = plan.op
        self._require_on(op)
        inputs: list[tuple[str, Region, int]] = []
        for name in plan.shared:
            tensor = plan.tensors[name]
            ref = tensor.shared_memory
            if tensor.data:
                raise SharedMemoryError(f"{op}: {name} carries both data and shared_memory")
            if ref.byte_size != plan.nbytes[name]:
                raise SharedMemoryError(
                    f"{op}: {name}.shared_memory.byte_size={ref.byte_size}, but its shape "
                    f"{list(tensor.shape)} of {pb.DType.Name(tensor.dtype)} needs "
                    f"{plan.nbytes[name]} bytes"
                )
            region = self._window(f"{op}: {name}", owner, ref)
            inputs.append((name, region, region.offset + ref.offset))
        output = None
        if plan.output_ref is not None:
            ref = plan.output_ref
            if ref.byte_size < plan.output_bytes:
                raise SharedMemoryError(
                    f"{op}: output_shared_memory.byte_size={ref.byte_size} is smaller than the "
                    f"result {list(plan.output_shape)} ({plan.output_bytes} bytes)"
                )
            region = self._window(f"{op}: output", owner, ref)
            if not region.writable:
                raise SharedMemoryPermissionError(
                    f"{op}: the server may only read the file of region {region.name!r}"
                )
            output = (region, ref.offset)
        return Binding(self, inputs, output)

    def _window(self, what: str, owner: str, ref: Any) -> Region:
        _check_window(what, ref.offset, ref.byte_size)
        region = self._find(what, owner, ref.region)
        if ref.offset + ref.byte_size > region.byte_size:
            raise SharedMemoryRangeError(
                f"{what}: [{ref.offset}, {ref.offset + ref.byte_size}) lies outside region "
                f"{region.name!r} of {region.byte_size} bytes"
            )
        return region


class SharedMemoryRpcs:
    """The RegisterSharedMemory, UnregisterSharedMemory and SharedMemoryStatus RPCs.

    Mixed into :class:`deconv_server.servicer.DeconvServicer`, which sets ``shared_memory``.
    """

    shared_memory: SharedMemoryRegistry

    async def RegisterSharedMemory(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Register (or replace) a region of the caller."""
        return await self._answer(context, "RegisterSharedMemory", request, self._register)

    async def UnregisterSharedMemory(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Drop one region of the caller, or all of them."""
        return await self._answer(context, "UnregisterSharedMemory", request, self._unregister)

    async def SharedMemoryStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        """The caller's regions as the server holds them."""
        return await self._answer(context, "SharedMemoryStatus", request, self._status)

    def _register(self, owner: str, request: Any) -> Any:
        return self.shared_memory.register(owner, request)

    def _unregister(self, owner: str, request: Any) -> Any:
        names = self.shared_memory.unregister(owner, request)
        return pb.UnregisterSharedMemoryResponse(names=names)

    def _status(self, owner: str, request: Any) -> Any:
        regions = self.shared_memory.status(owner, request.name)
        return pb.SharedMemoryStatusResponse(regions=regions)

    async def _answer(self, context: Any, what: str, request: Any, fn: Any) -> Any:
        try:
            return fn(self.shared_memory.owner(context), require_parsed(what, request))
        except Exception as exc:
            code, message = status_for(exc)
            trailers = (*(context.trailing_metadata() or ()), *trailers_for(exc))
            await context.abort(code, message, trailing_metadata=trailers)
