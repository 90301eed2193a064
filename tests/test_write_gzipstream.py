"""The gzip encoder of layers (encapsulate/write/gzipstream.py): one gzip
member with an empty header (mtime 0, no name), made of segments deflated
independently and joined in order, already-compressed content stored; the
same bytes whatever the threads, the pieces it is fed in, or the run."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import pytest

from encapsulate.write.gzipstream import SEGMENT, CompressPool, GzipMember, deflate_segment
from tests.sample import blob

WINDOW = 1 << 15
STORED_BLOCK = 65535


def noise(n: int, seed: int) -> bytes:
    """Bytes deflate cannot shrink."""
    return random.Random(seed).randbytes(n)


def text(n: int, seed: int) -> bytes:
    """Bytes deflate shrinks a lot, but not to nothing."""
    words = [b"package", b"debian", b"layer", b"ostree", b"component", b"changelog", b"\n", b"usr/lib"]
    return b" ".join(random.Random(seed).choices(words, k=n // 5))[:n]


# (how, bytes): "c" to compress, "s" to store; crosses several segments, ends
# on a stored run then a short compressed tail, and has a stored run shorter
# than one stored block.
CALLS = [
    ("c", text(2 * SEGMENT + 12345, 1)),
    ("s", noise(3 * STORED_BLOCK + 17, 2)),
    ("c", text(SEGMENT // 2, 3)),
    ("s", noise(1000, 4)),
    ("c", text(SEGMENT + 1, 5)),
    ("s", noise(STORED_BLOCK, 6)),
    ("c", b"tail\n"),
]


def member(
    calls: Sequence[tuple[str, bytes]], threads: int = 1, piece: int | None = None, level: int = 6
) -> bytes:
    """The member written for ``calls`` by a pool of ``threads``, bytes to
    compress given in pieces of ``piece`` bytes (whole when None).  Stored
    runs are given as the calls cut them: each call's bytes are its own
    stored blocks (the tar writer gives content in fixed 1 MiB blocks)."""
    out = io.BytesIO()
    with CompressPool(threads) as pool:
        gz = GzipMember(out, level, pool)
        for how, data in calls:
            if how == "s":
                gz.stored(data)
                continue
            step = piece or max(1, len(data))
            for i in range(0, len(data), step):
                gz.compressed(data[i : i + step])
        gz.finish()
    return out.getvalue()


def one_member(blob: bytes) -> bytes:
    """The content of ``blob``, which must be exactly one whole gzip member."""
    d = zlib.decompressobj(31)
    content = d.decompress(blob) + d.flush()
    assert d.eof and d.unused_data == b"", "not exactly one whole gzip member"
    return content


def test_one_member_that_decompresses_to_the_input() -> None:
    blob = member(CALLS)
    expected = b"".join(data for _, data in CALLS)
    assert one_member(blob) == expected
    assert gzip.decompress(blob) == expected
    # The trailer: CRC-32 and size of the content (RFC 1952).
    assert blob[-8:] == struct.pack("<II", zlib.crc32(expected), len(expected))


def test_header_has_mtime_0_no_name_and_says_unix() -> None:
    blob = member(CALLS[:1])
    magic, method, flags, mtime, extra_flags, os_id = struct.unpack("<2sBBIBB", blob[:10])
    assert magic == b"\x1f\x8b" and method == 8  # deflate
    # No FNAME, FCOMMENT, FEXTRA, FHCRC: nothing from the machine or the file.
    assert flags == 0 and mtime == 0 and extra_flags == 0 and os_id == 3
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
        f.read()
        assert f.mtime == 0


def test_an_empty_member() -> None:
    blob = member([])
    assert one_member(blob) == b""
    assert blob[:10] == bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3)) and blob[-8:] == bytes(8)


def test_stored_content_is_in_the_blob_as_it_is() -> None:
    """Already-compressed bytes go into stored blocks of at most 65535 bytes,
    each after its 5-byte header (BFINAL 0, BTYPE 00, LEN, NLEN)."""
    stored = noise(2 * STORED_BLOCK + 100, 7)
    blob = member([("c", text(5000, 8)), ("s", stored), ("c", text(5000, 9))])
    at = blob.index(stored[:STORED_BLOCK])
    pos = at - 5
    for i in range(0, len(stored), STORED_BLOCK):
        piece = stored[i : i + STORED_BLOCK]
        assert blob[pos : pos + 5] == struct.pack("<BHH", 0, len(piece), len(piece) ^ 0xFFFF)
        assert blob[pos + 5 : pos + 5 + len(piece)] == piece
        pos += 5 + len(piece)
    # Stored, the noise costs 5 bytes a block more than its size: deflate
    # would have done no better.
    assert len(blob) < len(stored) + 3 * 5 + 2 * 5000


def test_same_bytes_whatever_the_threads_and_the_pieces() -> None:
    first = member(CALLS)
    for threads, piece in ((1, 4097), (2, None), (3, SEGMENT - 1), (5, 65536), (2, SEGMENT + 3)):
        assert member(CALLS, threads, piece) == first, (threads, piece)


class SlowFirstPool(CompressPool):
    """A pool whose first piece finishes last."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads)
        self.calls = 0

    def submit(self, fn: Callable[..., bytes], *args: object) -> Future[bytes]:
        self.calls += 1
        if self.calls > 1:
            return super().submit(fn, *args)

        def late(*a: object) -> bytes:
            time.sleep(0.3)
            return fn(*a)

        return super().submit(late, *args)


def test_pieces_that_finish_out_of_order_are_written_in_order() -> None:
    data = text(5 * SEGMENT + 99, 10)
    out, pool = io.BytesIO(), SlowFirstPool(4)
    with pool:
        gz = GzipMember(out, 6, pool)
        gz.compressed(data)
        gz.finish()
    assert pool.calls == 6
    assert out.getvalue() == member([("c", data)])
    assert one_member(out.getvalue()) == data


def test_the_window_reaches_back_across_segments() -> None:
    """Each segment is primed with the 32 KiB before it, compressed or stored,
    so a repeat across a cut costs a few bytes, not its size again."""
    head = noise(SEGMENT, 11)
    tail = head[-30_000:]
    blob = member([("c", head + tail)])
    without_window = len(deflate_segment(tail, b"", 6, True))
    with_window = len(deflate_segment(tail, head[-WINDOW:], 6, True))
    assert without_window > 30_000 and with_window < 1000
    assert one_member(blob) == head + tail
    assert len(blob) < len(head) + 2000
    # The same after stored content.
    stored = noise(40_000, 12)
    blob = member([("s", stored), ("c", stored[-20_000:])])
    assert one_member(blob) == stored + stored[-20_000:]
    assert len(blob) < len(stored) + 5 + 18 + 1000


def test_deflate_segments_join_into_one_stream() -> None:
    a, b, c = text(70_000, 13), text(50_000, 14), noise(10_000, 15)
    parts = [
        deflate_segment(a, b"", 6, False),
        deflate_segment(b, a[-WINDOW:], 6, False),
        deflate_segment(c, (a + b)[-WINDOW:], 6, True),
    ]
    # A segment that is not the last ends with a sync flush's empty stored block.
    assert all(p.endswith(b"\x00\x00\xff\xff") for p in parts[:2])
    d = zlib.decompressobj(-15)
    assert d.decompress(b"".join(parts)) == a + b + c and d.eof and d.unused_data == b""
    # The window is a preset dictionary: the same bytes as one continuous stream would match.
    assert len(parts[1]) < len(deflate_segment(b, b"", 6, False))


def hashed_text(n: int, seed: str) -> bytes:
    """Words picked by SHA-256 output: the same bytes from any Python."""
    words = [b"package", b"debian", b"layer", b"ostree", b"component", b"changelog", b"\n", b"usr/lib"]
    return b" ".join(words[b % 8] for b in blob(seed, n // 5))[:n]


# The member of PINNED at level 6 and at level 1: every layer's digest
# depends on these bytes, so they must change only with a deliberate change
# of the compressor (zlib-ng is pinned in pyproject.toml for that).
PINNED = [
    ("c", hashed_text(3 * SEGMENT // 2, "a")),
    ("s", blob("b", 100_000)),
    ("c", hashed_text(300_000, "c")),
]
PINNED_SHA256 = {
    6: "e2023b5c4af67bd44d5709fe376afbe3125b5bc790dd0e32b79ce37f71663caa",
    1: "76de374dfa395fdc0afe85ded1d59acae3e43f351a723e7298f4376b90afb3ae",
}


@pytest.mark.parametrize("level", sorted(PINNED_SHA256))
def test_the_bytes_are_pinned(level: int) -> None:
    blob = member(PINNED, threads=2, level=level)
    assert one_member(blob) == b"".join(data for _, data in PINNED)
    assert hashlib.sha256(blob).hexdigest() == PINNED_SHA256[level]


def test_a_pool_of_one_compresses_where_it_is_asked() -> None:
    with CompressPool(0) as pool:
        assert pool.threads == 1
        done = pool.submit(lambda: threading.current_thread().name.encode())
        assert done.done() and done.result() == threading.current_thread().name.encode()


def test_a_pool_of_threads_compresses_in_them_and_drops_what_is_not_started() -> None:
    pool = CompressPool(2)
    assert pool.threads == 2
    assert pool.submit(lambda: threading.current_thread().name.encode()).result().startswith(b"compress")
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> bytes:
        started.release()
        release.wait(10)
        return b"ran"

    running = [pool.submit(blocked) for _ in range(2)]
    # Both threads busy before the third piece is queued and the pool closed.
    assert started.acquire(timeout=10) and started.acquire(timeout=10)
    waiting = pool.submit(blocked)
    closer = threading.Thread(target=pool.close)
    closer.start()
    deadline = time.monotonic() + 10
    while not waiting.cancelled():
        assert time.monotonic() < deadline, "close did not drop the piece not started"
        time.sleep(0.01)
    release.set()
    closer.join(10)
    assert [f.result() for f in running] == [b"ran", b"ran"]
    with pytest.raises(RuntimeError):
        pool.submit(blocked)


# The same member where zlib-ng is not installed (the Debian package): the
# standard library's zlib, whose bytes are the same from Debian 12's zlib
# 1.2.13 and trixie's 1.3.1 (tests/test_package_deb.py) and on every CPU
# (benches/compressors.py), and differ from zlib-ng's.
PINNED_ZLIB_SHA256 = {
    6: "6cc3700f9ccb39a1cbf9ae7ccf051dde255be9b655033db4e25a25a60187939e",
    1: "429158d177c7bb2200fa3c70c956e63026bd3826a9b8185710da7407083e9688",
}


@pytest.mark.parametrize("level", sorted(PINNED_ZLIB_SHA256))
def test_without_zlib_ng_the_standard_librarys_zlib_compresses(level: int) -> None:
    from benches.compressors import load_gzipstream

    module = load_gzipstream(stdlib_zlib=True)
    compressor: str = module.COMPRESSOR
    assert compressor == f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    out = io.BytesIO()
    with module.CompressPool(2) as pool:
        gz = module.GzipMember(out, level, pool)
        for how, data in PINNED:
            (gz.compressed if how == "c" else gz.stored)(data)
        gz.finish()
    assert one_member(out.getvalue()) == b"".join(data for _, data in PINNED)
    assert hashlib.sha256(out.getvalue()).hexdigest() == PINNED_ZLIB_SHA256[level]
    assert PINNED_ZLIB_SHA256[level] != PINNED_SHA256[level]
