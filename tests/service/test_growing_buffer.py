"""deconv_server.chunked.GrowingBuffer: the bytes come out as they went in, every byte held is
reserved before it is stored, and memory is backed only as bytes arrive (mapped ranges), on
both storage paths. The bound with a real server is in test_attacks.py (claims that send a
little hold only what they sent)."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from deconv_server import chunked
from deconv_server.chunked import GrowingBuffer

MIB = 1 << 20


def _fill(buf: GrowingBuffer, data: bytes, step: int) -> list[int]:
    reserved: list[int] = []
    for start in range(0, len(data), step):
        buf.append(memoryview(data)[start : start + step], reserved.append)
    return reserved


@pytest.fixture(params=["mapped", "grown"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "grown":
        monkeypatch.setattr(chunked, "LAZY_PAGES", False)
    elif not chunked.LAZY_PAGES:
        pytest.skip("this kernel accounts mappings strictly (or is not Linux)")
    return str(request.param)


SIZES_AND_STEPS = [
    (size, step)
    for size in (0, 5, MIB - 1, MIB, 3 * MIB + 7, 9 * MIB + 1)
    for step in (1000, 256 * 1024 + 3, MIB)
    if size <= 2 * MIB or step > 1000  # past 2 MiB, 1000-byte messages only cost time
]


@pytest.mark.parametrize(("size", "step"), SIZES_AND_STEPS)
def test_the_bytes_come_out_as_they_went_in(path: str, size: int, step: int) -> None:
    data = np.random.default_rng(size + step).bytes(size)
    buf = GrowingBuffer(size)
    assert (buf._range is not None) == (path == "mapped" and size >= chunked.MAPPED_BYTES)
    reserved: list[int] = []
    for start in range(0, size, step):
        piece = memoryview(data)[start : start + step]
        buf.append(piece, reserved.append)
        counted, filled = sum(reserved), buf.filled
        if buf._range is None:  # the growths: at most twice what had arrived before
            assert filled <= counted <= max(filled, 2 * (filled - len(piece)))
        elif filled < chunked.HUGE_PAGES_AFTER:  # 4 KiB pages: exactly what arrived
            assert counted == filled
        else:  # huge pages may back one more: counted before they can be
            assert counted == min(size, filled + chunked.HUGE_PAGE_BYTES)
    assert buf.full and buf.filled == size
    assert buf.array.tobytes() == data
    assert sum(reserved) == size


@pytest.mark.skipif(not chunked.LAZY_PAGES, reason="no lazily backed mappings here")
def test_a_mapped_claim_is_backed_only_where_bytes_arrived() -> None:
    buf = GrowingBuffer(512 * MIB)  # a claim; only 64 KiB of it ever arrives
    _fill(buf, bytes(range(256)) * 256, 64 * 1024)
    assert buf._range is not None and not buf._huge
    resident = _resident_pages(buf._range)
    assert resident * mmap.PAGESIZE <= 64 * 1024 + mmap.PAGESIZE


def test_a_refused_reservation_stores_nothing(path: str) -> None:
    buf = GrowingBuffer(2 * MIB)

    def refuse(n: int) -> None:
        raise RuntimeError("over budget")

    with pytest.raises(RuntimeError, match="over budget"):
        buf.append(memoryview(b"\x01" * 1000), refuse)
    assert buf.filled == 0
    assert not buf.array[:1000].any()  # not a byte stored (a fresh mapping reads as zeros)


def _resident_pages(region: mmap.mmap) -> int:
    """Pages of ``region`` the kernel backs (mincore through ctypes)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pages = -(-len(region) // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(len(region)), vec) != 0:
        pytest.skip(f"mincore failed: errno {ctypes.get_errno()}")
    return sum(v & 1 for v in vec)
