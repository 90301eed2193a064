"""Streaming a layer once: its tar's size, its entries and, when asked, the
sha256 of its files, checked against the manifest's digest and size.

In: an opened image (``encapsulate.oci.read.SourceImage``) with its blobs.
Out: ``LayerScan``.  The layer is read through gzip or zstd (told by its
first bytes) and tar, never unpacked to disk.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import zstandard
from zlib_ng import gzip_ng, zlib_ng

from ..errors import EncapsulateError
from ..oci.read import HashingReader, SourceImage

_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DECOMPRESSION_ERRORS = (OSError, zlib.error, zstandard.ZstdError, cast(type[Exception], zlib_ng.error))


@dataclass(frozen=True)
class LayerScan:
    """What streaming a layer found: the size of its tar, its non-directory
    entries and, when asked for, the sha256 -> size of its regular files."""

    uncompressed_size: int
    files: int
    contents: dict[str, int]


class _Tar:
    """A layer's tar stream, counted.  Past its end it reads as up to
    ``TAIL`` zero bytes more, so that a tar without its end-of-archive blocks
    or its last padding (umoci 0.4 writes them so) reads to its end, as
    container runtimes read it; those bytes are not counted."""

    TAIL = 1536

    def __init__(self, source: Any) -> None:
        self._source = source
        self._tail = self.TAIL
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._source.read(n if n >= 0 else _BLOCK)
        if data:
            self.size += len(data)
            return data
        k = min(n if n >= 0 else self._tail, self._tail)
        self._tail -= k
        return bytes(k)

    def drain(self) -> None:
        """Read what is left."""
        while data := self._source.read(_BLOCK):
            self.size += len(data)


def _decompressor(head: bytes, raw: HashingReader) -> Any:
    """A reader of the layer's tar: compression told by its first bytes, as
    container runtimes do (media types of Docker images do not say)."""
    if head.startswith(_GZIP_MAGIC):
        return gzip_ng.GzipNGFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    if head.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, raw), read_across_frames=True)
    return raw


def _mismatch(found_size: int, found: str, digest: str, size: int) -> str | None:
    """What is wrong with a blob of ``found_size`` bytes and digest ``found``, if anything."""
    if found_size < size:
        return f"truncated: {found_size} of {size} bytes"
    if found_size != size or found != digest:
        return f"its {found_size} bytes have digest {found}, not the manifest's {size} bytes"
    return None


def _blob_fault(image: SourceImage, digest: str, size: int) -> str | None:
    h = hashlib.sha256()
    n = 0
    with image.open_blob(digest) as f:
        while block := f.read(_BLOCK):
            h.update(block)
            n += len(block)
    return _mismatch(n, "sha256:" + h.hexdigest(), digest, size)


def scan_layer(
    image: SourceImage, index: int, digest: str, size: int, want: Callable[[int], bool] | None = None
) -> LayerScan:
    """Stream layer ``index`` (1-based) of ``image``: the size of its tar and its
    non-directory entries; with ``want``, the sha256 of each regular file whose
    size it accepts.  The blob must match ``digest`` and ``size``."""
    where = f"{image.ref}: layer {index} ({digest})"
    if image.layout is not None and not os.path.exists(image.layout.blob_path(digest)):
        raise EncapsulateError(f"{where}: the blob is missing; fetch or build the image again")
    contents: dict[str, int] = {}
    files = 0
    try:
        with image.open_blob(digest) as blob:
            head = blob.read(4)
            blob.seek(0)
            raw = HashingReader(blob)
            tar_stream = _Tar(_decompressor(head, raw))
            with tarfile.open(
                fileobj=cast(BinaryIO, tar_stream), mode="r|", encoding="utf-8", errors="surrogateescape"
            ) as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    files += 1
                    if want is not None and member.isreg() and want(member.size):
                        content = tar.extractfile(member)
                        if content is None:
                            continue
                        h = hashlib.sha256()
                        while block := content.read(_BLOCK):
                            h.update(block)
                        contents.setdefault(h.hexdigest(), member.size)
            tar_stream.drain()
            raw.drain()
    except (*_DECOMPRESSION_ERRORS, EOFError, tarfile.TarError) as e:
        # Bytes that are not the manifest's explain the failure best.
        what = "not a readable tar" if isinstance(e, tarfile.TarError) else "cannot decompress it"
        fault = _blob_fault(image, digest, size) or f"{what} ({e})"
        raise EncapsulateError(f"{where}: {fault}; the image is damaged: fetch or build it again") from None
    mismatch = _mismatch(raw.size, "sha256:" + raw.hash.hexdigest(), digest, size)
    if mismatch is not None:
        raise EncapsulateError(f"{where}: {mismatch}; the image is damaged: fetch or build it again")
    return LayerScan(tar_stream.size, files, contents)
