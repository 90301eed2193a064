"""The gzip encoder of layers: one gzip member whose deflate stream is made of
segments compressed independently, by as many threads as there are, and
joined in order (as pigz does), with already-compressed content stored.

It imports only the standard library and zlib-ng, so that
benches/compressors.py can load this file alone and run it under emulated
CPUs (``qemu-x86_64 -cpu MODEL``), where numpy does not start, to check that
its bytes do not depend on the CPU.

Deflate is zlib-ng's (the PyPI install) or, where zlib-ng is not importable
(Debian has no package of it), the standard library's zlib, which has the same
interface and whose bytes do not depend on the CPU either, but differ from
zlib-ng's (docs/install.md measures both).  ``COMPRESSOR`` names the one used
and its version: images record it, and layer keys include it.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

try:
    from zlib_ng import zlib_ng as _zlib

    COMPRESSOR = f"zlib-ng {_zlib.ZLIBNG_VERSION}"
except ImportError:
    import zlib as _zlib  # type: ignore[no-redef]

    COMPRESSOR = f"zlib {_zlib.ZLIB_RUNTIME_VERSION}"

# Uncompressed bytes of each independently compressed segment, and the
# history each is primed with (deflate's whole window).
SEGMENT = 1 << 20
_WINDOW = 1 << 15
_AHEAD = 4  # segments in flight per compression thread, for each layer
_GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3))  # RFC 1952: deflate, mtime 0, unix
_STORED_BLOCK = 65535  # RFC 1951 3.2.4: LEN is 16 bits


class Writer(Protocol):
    """Where the member goes (a ``BlobWriter``)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class CompressPool:
    """Threads that compress pieces of layers, shared by every layer written at
    once (zlib-ng and zstd release the GIL).  With one thread, pieces are
    compressed where they are submitted.  The bytes written never depend on
    the number of threads."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, threads)
        self._executor = ThreadPoolExecutor(self.threads, "compress") if self.threads > 1 else None

    def submit(self, fn: Callable[..., bytes], *args: object) -> Future[bytes]:
        """``fn(*args)``, run by one of the threads."""
        if self._executor is not None:
            return self._executor.submit(fn, *args)
        done: Future[bytes] = Future()
        done.set_result(fn(*args))
        return done

    def close(self) -> None:
        """Stop the threads, dropping pieces not started."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> CompressPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def deflate_segment(data: bytes, window: bytes, level: int, last: bool) -> bytes:
    """Raw deflate of one segment of a stream, ``window`` (the up to 32 KiB of
    the stream before it) preset as its dictionary, so matches reach back into
    it as they would in one continuous stream.  A segment that is not the last
    ends with a sync flush: byte aligned, no final block, so the next one's
    deflate data follows it in the same stream (as pigz joins its blocks)."""
    deflate = (
        _zlib.compressobj(level, _zlib.DEFLATED, -15, zdict=window)
        if window
        else _zlib.compressobj(level, _zlib.DEFLATED, -15)
    )
    return deflate.compress(data) + deflate.flush(_zlib.Z_FINISH if last else _zlib.Z_SYNC_FLUSH)


class GzipMember:
    """One gzip member (ostree-ext reads only the first) whose deflate stream is
    made of independently compressed segments, so every core can compress one
    layer.  The compressible bytes are cut into segments of ``SEGMENT`` bytes
    of the stream, and before each run of already-compressed content, which is
    stored as it is; where the cuts fall depends on the tar stream alone, and
    each segment's bytes on its data, the 32 KiB before it and the level,
    so the blob is the same whatever the number of threads.  Segments are
    written in order; at most ``_AHEAD`` per thread are in flight."""

    def __init__(self, blob: Writer, level: int, pool: CompressPool) -> None:
        self.blob = blob
        self.level = level
        self.pool = pool
        self.crc = 0
        self.size = 0
        self._pending = bytearray()
        self._window = b""  # the last _WINDOW bytes of the stream so far
        self._queue: deque[Future[bytes] | bytes] = deque()
        blob.write(_GZIP_HEADER)

    def _emit(self, piece: Future[bytes] | bytes) -> None:
        self._queue.append(piece)
        limit = _AHEAD * self.pool.threads
        queue = self._queue
        while queue and (len(queue) > limit or not isinstance(queue[0], Future) or queue[0].done()):
            head = queue.popleft()
            self.blob.write(head.result() if isinstance(head, Future) else head)

    def _segment(self, data: bytes, last: bool = False) -> None:
        self._emit(self.pool.submit(deflate_segment, data, self._window, self.level, last))
        self._window = (self._window + data[-_WINDOW:])[-_WINDOW:]

    def compressed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes to compress."""
        self.crc = _zlib.crc32(data, self.crc)
        self.size += len(data)
        pending = self._pending
        pending += data
        if len(pending) > SEGMENT:
            n = (len(pending) - 1) // SEGMENT * SEGMENT
            for i in range(0, n, SEGMENT):
                self._segment(bytes(pending[i : i + SEGMENT]))
            del pending[:n]

    def stored(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes stored as they are (already compressed: deflate would not shrink them)."""
        self.crc = _zlib.crc32(data, self.crc)
        self.size += len(data)
        if self._pending:
            self._segment(bytes(self._pending))
            self._pending.clear()
        with memoryview(data) as view:
            for i in range(0, len(view), _STORED_BLOCK):
                piece = view[i : i + _STORED_BLOCK]
                n = len(piece)
                # BFINAL 0, BTYPE 00, padding, LEN, NLEN (RFC 1951 3.2.4).
                self._emit(struct.pack("<BHH", 0, n, n ^ 0xFFFF) + piece)
            self._window = (self._window + bytes(view[-_WINDOW:]))[-_WINDOW:]

    def finish(self) -> None:
        """End the member: the last segment, then the CRC and size."""
        self._segment(bytes(self._pending), last=True)
        self._pending.clear()
        while self._queue:
            head = self._queue.popleft()
            self.blob.write(head.result() if isinstance(head, Future) else head)
        self.blob.write(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
