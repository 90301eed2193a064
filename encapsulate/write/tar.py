"""Reproducible tar layers, compressed as they are written.

In: entries of a tree, in order.  Out: a layer blob (gzip, zstd or plain tar)
with its digest and its diff_id (the sha256 of the uncompressed tar), computed
in one pass while several threads compress the layer.  Every header is PAX,
owners are numeric only, mtimes are the ones given, extended attributes are
``SCHILY.xattr.*`` records, later paths of an inode are hardlinks to its first
path in the layer.  Compression uses libraries bundled with their Python
packages (zlib-ng, zstd; the standard library's zlib where zlib-ng is not
installed), at settings whose bytes are the same on every
machine and whatever the number of threads (benches/compressors.py checks
them under emulated CPUs)."""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import zstandard

from mapping import Entry, EntryType

from ..config import COMPRESSION_DEFAULT
from ..oci.labels import LAYER_ANNOTATION
from ..oci.layout import MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD, BlobWriter, Descriptor
from ..oci.model import Digest
from .gzipstream import COMPRESSOR, SEGMENT, CompressPool, GzipMember

_BLOCK = 1 << 20
# Content chunks at least this long whose bytes look random (already compressed:
# .xz modules, the kernel, images) are stored in the deflate stream as they are.
_STORED_MIN = 1 << 16
_STORED_ENTROPY = 7.9  # bits per byte, estimated from _SAMPLE bytes of the chunk
_SAMPLE = 4096  # bytes taken at 4 places of the chunk

MEDIA_TYPES = {"gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD, "none": MEDIA_LAYER_TAR}


def looks_random(chunk: bytes | bytearray | memoryview) -> bool:
    """Whether a chunk's bytes look already compressed: the order-0 entropy of
    samples from four places in it is close to 8 bits per byte."""
    n = len(chunk)
    step = (n - _SAMPLE) // 3
    sample = np.concatenate([np.frombuffer(chunk, np.uint8, _SAMPLE, k * step) for k in range(4)])
    counts = np.bincount(sample, minlength=256)
    p = counts[counts > 0] / sample.size
    return float(-(p * np.log2(p)).sum()) > _STORED_ENTROPY


class _Sink:
    """Takes the tar stream: hashes it, compresses it into the blob."""

    def __init__(self, blob: BlobWriter, compression: str, level: int, pool: CompressPool) -> None:
        self.blob = blob
        self.diff = hashlib.sha256()
        self.size = 0
        self._gzip = GzipMember(blob, level, pool) if compression == "gzip" else None
        # zstd's own workers; with one or more, the frame is the same whatever
        # their number (not so with none, zstd's single-threaded mode).
        self._zstd = (
            zstandard.ZstdCompressor(level=level, threads=pool.threads).compressobj()
            if compression == "zstd"
            else None
        )

    def write(self, data: bytes | bytearray | memoryview, content: bool = False) -> None:
        """Add tar bytes; ``content`` marks a chunk of a file's content."""
        self.diff.update(data)
        self.size += len(data)
        if self._gzip is not None:
            if content and len(data) >= _STORED_MIN and looks_random(data):
                self._gzip.stored(data)
            else:
                self._gzip.compressed(data)
            return
        out = self._zstd.compress(data) if self._zstd is not None else data
        if out:
            self.blob.write(out)

    def finish(self) -> None:
        if self._gzip is not None:
            self._gzip.finish()
        elif self._zstd is not None:
            self.blob.write(self._zstd.flush())


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its descriptor, diff_id and uncompressed size;
    ``reused`` when an identical blob was already in the layout."""

    descriptor: Descriptor
    diff_id: str
    tar_size: int
    files: int
    reused: bool = False

    def record(self, key: str) -> str:
        """The ``LAYER_ANNOTATION`` value of this layer, whose key is ``key``."""
        return layer_record(key, self.diff_id, self.tar_size, self.files)


def layer_record(key: str, diff_id: str, tar_size: int, files: int) -> str:
    """A ``LAYER_ANNOTATION`` value."""
    return f"{key} {diff_id} {tar_size} {files}"


# Entries of ostree-format component layers (content objects and the layers'
# skeleton) carry mtime 0, as in ostree-ext's export (its tar headers never set
# one) and as OSTree itself keeps objects: the bytes of a component layer then
# depend on its content alone, and a layer whose components did not change is
# the same blob in the next build.  Only the first layer (commit and metadata)
# has the image's time.  Plain layers keep each file's mtime, clamped
# (``plain._mtimes``).
CONTENT_MTIME = 0


def _xattr_headers(entry: Entry) -> dict[str, str]:
    # PAX values are UTF-8; binary values travel as surrogate escapes and
    # tarfile marks the header hdrcharset=BINARY (POSIX pax, "hdrcharset").
    return {
        "SCHILY.xattr." + name.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
        for name, value in entry.xattrs
    }


_TYPES = {
    EntryType.FILE: tarfile.REGTYPE,
    EntryType.DIR: tarfile.DIRTYPE,
    EntryType.SYMLINK: tarfile.SYMTYPE,
    EntryType.CHAR: tarfile.CHRTYPE,
    EntryType.BLOCK: tarfile.BLKTYPE,
    EntryType.FIFO: tarfile.FIFOTYPE,
}


def tar_info(entry: Entry, name: str, mtime: int, link_to: str | None = None) -> tarfile.TarInfo:
    """The tar header of an entry at ``name`` (a hardlink to ``link_to`` if given)."""
    info = tarfile.TarInfo(name)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.pax_headers = _xattr_headers(entry)
    if link_to is not None:
        info.type = tarfile.LNKTYPE
        info.linkname = link_to
        return info
    info.type = _TYPES[entry.type]
    if entry.type is EntryType.FILE:
        info.size = entry.size
    elif entry.type is EntryType.SYMLINK:
        info.linkname = entry.target or ""
    elif entry.type in (EntryType.CHAR, EntryType.BLOCK):
        info.devmajor, info.devminor = os.major(entry.rdev), os.minor(entry.rdev)
    return info


@dataclass(frozen=True)
class Opener:
    """A file's content, opened when written; ``identity`` names that content
    (an OSTree content checksum or a sha256), so a layer's key can be computed
    without reading it."""

    open: Callable[[], BinaryIO]
    identity: str | None

    def __call__(self) -> BinaryIO:
        return self.open()


# What goes after a tar header: nothing, bytes, or a way to open the content.
Content = bytes | Opener | Callable[[], BinaryIO] | None
# A layer's entries, in the order written.
Items = Iterator[tuple[tarfile.TarInfo, Content]]

# Bumped whenever the bytes written for the same items change.
# The level is not in it: it is part of the compression named to ``layer_key``.
WRITER_VERSION = f"2 {COMPRESSOR} segments {SEGMENT} zstd {zstandard.ZSTD_VERSION} mt"


def compressor(compression: str) -> str | None:
    """The library (and its version) that compresses layers with ``compression``; None for plain tar."""
    zstd = ".".join(str(part) for part in zstandard.ZSTD_VERSION)
    return {"gzip": COMPRESSOR, "zstd": f"zstd {zstd}"}.get(compression)


def compression_setting(compression: str, level: int | None = None) -> str:
    """How a layer is compressed, as ``layer_key`` takes it: the algorithm and
    its level (default ``COMPRESSION_DEFAULT``'s)."""
    return f"{compression} {_level(compression, level)}"


def _level(compression: str, level: int | None) -> int:
    if level is not None:
        return level
    # Compression is a StrEnum: its members are found by their names.
    defaults: dict[str, int] = {str(k): v for k, v in COMPRESSION_DEFAULT.items()}
    return defaults.get(compression, 0)


def layer_key(items: Iterable[tuple[tarfile.TarInfo, Content]], compression: str) -> str | None:
    """What decides a layer's bytes, hashed: the writer and its settings, every
    header and every content's identity.  ``compression`` names the algorithm
    and level (``compression_setting``).  Two layers with the same key are the
    same blob.  None when some content has no identity."""
    h = hashlib.sha256(f"{WRITER_VERSION} {compression}\n".encode())
    for info, content in items:
        h.update(tar_header(info))
        if isinstance(content, bytes):
            h.update(hashlib.sha256(content).digest())
        elif isinstance(content, Opener):
            if content.identity is None:
                return None
            h.update(content.identity.encode() + b"\n")
        elif content is not None:
            return None
    return Digest.of_hash(h)


def entry_items(entries: Iterable[tuple[str, Entry, int]]) -> Iterator[tuple[tarfile.TarInfo, Content]]:
    """Tar items of tree entries at the given names, with the given mtimes;
    later paths of an inode become hardlinks to its first path."""
    first_of: dict[str, str] = {}
    for name, entry, mtime in entries:
        link = None
        if entry.type is EntryType.FILE and entry.hardlink is not None:
            link = first_of.get(entry.hardlink)
            if link is None:
                first_of[entry.hardlink] = name
        info = tar_info(entry, name, mtime, link)
        yield info, (Opener(entry.open, entry.content_id) if info.type == tarfile.REGTYPE else None)


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_LIMIT_ID, _LIMIT_SIZE = 8**7, 8**11  # what 7 and 11 octal digits hold


def tar_header(info: tarfile.TarInfo) -> bytes:
    """The header bytes of ``info`` as ``tarfile`` writes them in PAX format.
    Plain entries (ASCII names up to 100 bytes, small numbers, no PAX records)
    take a direct path; every other entry goes through ``TarInfo.tobuf``."""
    name, link = info.name, info.linkname
    if info.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    uid, gid, size, mtime = info.uid, info.gid, info.size, info.mtime
    if (
        info.pax_headers
        or info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
        or info.uname
        or info.gname
        or not (name.isascii() and len(name) <= 100 and link.isascii() and len(link) <= 100)
        or type(mtime) is not int
        or not (0 <= uid < _LIMIT_ID and 0 <= gid < _LIMIT_ID and 0 <= size < _LIMIT_SIZE)
        or not 0 <= mtime < _LIMIT_SIZE
    ):
        return _with_base256(info, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    buf = bytearray(
        _USTAR.pack(
            name.encode("ascii"),
            b"%07o\0" % (info.mode & 0o7777),
            b"%07o\0" % uid,
            b"%07o\0" % gid,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b"        ",
            info.type,
            link.encode("ascii"),
            tarfile.POSIX_MAGIC,
            b"",
            b"",
            b"",
            b"",
            b"",
        )
    )
    buf[148:155] = b"%06o\0" % sum(buf)
    return bytes(buf)


# The ustar numeric fields (offset, width) that can overflow: uid, gid, size, mtime.
_NUMERIC_FIELDS = ((108, 8, "uid"), (116, 8, "gid"), (124, 12, "size"), (136, 12, "mtime"))


def _with_base256(info: tarfile.TarInfo, header: bytes) -> bytes:
    """``header`` with every numeric field that octal cannot hold written in
    GNU base-256 (a 0x80 byte, then the value big-endian) instead of the 0
    tarfile leaves there, and its checksum made again.  The PAX record stays:
    readers that apply PAX uid/gid/size take it, older ones (tar-rs before
    0.4.40, in ostree-ext builds of Debian 12) read the field.  ostree-ext's own
    export writes these fields in base-256 too (tar-rs ``Header::set_uid``)."""
    patched: bytearray | None = None
    start = len(header) - tarfile.BLOCKSIZE  # the entry's own header follows any PAX header
    for offset, width, name in _NUMERIC_FIELDS:
        value = getattr(info, name)
        if type(value) is int and value >= 8 ** (width - 1):
            if value >= 256 ** (width - 1):
                raise ValueError(f"{info.name}: {name} {value} does not fit a tar header")
            patched = patched if patched is not None else bytearray(header)
            at = start + offset
            patched[at : at + width] = b"\x80" + value.to_bytes(width - 1, "big")
    if patched is None:
        return header
    block = patched[start:]
    block[148:156] = b"        "
    patched[start + 148 : start + 155] = b"%06o\0" % sum(block)
    return bytes(patched)


def write_layer(
    blob: BlobWriter,
    items: Iterable[tuple[tarfile.TarInfo, Content]],
    compression: str = "gzip",
    annotations: dict[str, str] | None = None,
    key: str | None = None,
    level: int | None = None,
    pool: CompressPool | None = None,
) -> LayerBlob:
    """Write tar items as one layer into ``blob`` and commit it; with its
    ``key``, the layer's ``LAYER_ANNOTATION`` is added to ``annotations``.
    ``level`` defaults to ``COMPRESSION_DEFAULT``'s; ``pool``'s threads
    compress (default: this one).  The blob's bytes depend on neither."""
    sink = _Sink(blob, compression, _level(compression, level), pool if pool is not None else CompressPool())
    files = 0
    for info, content in items:
        sink.write(tar_header(info))
        if content is not None and info.type in tarfile.REGULAR_TYPES:
            size = info.size
            if isinstance(content, bytes):
                if len(content) != size:
                    raise OSError(errno.EIO, f"{info.name}: {len(content)} bytes, not {size}")
                with memoryview(content) as view:
                    for i in range(0, size, _BLOCK):
                        sink.write(view[i : i + _BLOCK], content=True)
            else:
                with content() as f:
                    left = size
                    while left:
                        chunk = f.read(min(left, _BLOCK))
                        if not chunk:
                            raise OSError(errno.EIO, f"{info.name}: shorter than its {size} bytes")
                        sink.write(chunk, content=True)
                        left -= len(chunk)
            if size % tarfile.BLOCKSIZE:
                sink.write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
        files += info.type != tarfile.DIRTYPE
    # Two zero blocks end the archive, padded to a whole record (as tarfile does).
    end = sink.size + 2 * tarfile.BLOCKSIZE
    sink.write(bytes(2 * tarfile.BLOCKSIZE + -end % tarfile.RECORDSIZE))
    sink.finish()
    diff_id = Digest.of_hash(sink.diff)
    annotations = dict(annotations or {})
    if key is not None:
        annotations[LAYER_ANNOTATION] = layer_record(key, diff_id, sink.size, files)
    descriptor = blob.commit(MEDIA_TYPES[compression], annotations)
    return LayerBlob(descriptor, diff_id, sink.size, files)
