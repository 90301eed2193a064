"""Reproducible tar layers, compressed as they are written.

In: entries of a tree, in order.  Out: a layer blob (gzip, zstd or plain tar)
with its digest and its diff_id (the sha256 of the uncompressed tar), computed
in one pass.  Every header is PAX, owners are numeric only, every mtime is the
same given value, extended attributes are ``SCHILY.xattr.*`` records, later
paths of an inode are hardlinks to its first path in the layer.  Compression
uses libraries bundled with their Python packages (zlib-ng, zstd), so the bytes
are the same on every machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard
from zlib_ng import zlib_ng

from mapping import Entry, EntryType

from .oci import MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD, BlobWriter, Descriptor

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
_COPY_BLOCK = 1 << 20

MEDIA_TYPES = {"gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD, "none": MEDIA_LAYER_TAR}


class _Sink:
    """Takes the tar stream: hashes it, compresses it into the blob."""

    def __init__(self, blob: BlobWriter, compression: str) -> None:
        self.blob = blob
        self.diff = hashlib.sha256()
        self.size = 0
        self._gzip = zlib_ng.compressobj(GZIP_LEVEL, zlib_ng.DEFLATED, 31) if compression == "gzip" else None
        self._zstd = (
            zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj() if compression == "zstd" else None
        )

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self.size += len(data)
        if self._gzip is not None:
            out = self._gzip.compress(data)
        elif self._zstd is not None:
            out = self._zstd.compress(data)
        else:
            out = bytes(data)
        if out:
            self.blob.write(out)
        return len(data)

    def finish(self) -> None:
        if self._gzip is not None:
            self.blob.write(self._gzip.flush())
        elif self._zstd is not None:
            self.blob.write(self._zstd.flush())


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its descriptor, diff_id and uncompressed size."""

    descriptor: Descriptor
    diff_id: str
    tar_size: int
    files: int


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


# What goes after a tar header: nothing, bytes, or a way to open the content.
Content = bytes | Callable[[], BinaryIO] | None


def entry_items(
    entries: Iterable[tuple[str, Entry]], mtime: int
) -> Iterator[tuple[tarfile.TarInfo, Content]]:
    """Tar items of tree entries at the given names; later paths of an inode
    become hardlinks to its first path."""
    first_of: dict[str, str] = {}
    for name, entry in entries:
        link = None
        if entry.type is EntryType.FILE and entry.hardlink is not None:
            link = first_of.get(entry.hardlink)
            if link is None:
                first_of[entry.hardlink] = name
        info = tar_info(entry, name, mtime, link)
        yield info, (entry.open if info.type == tarfile.REGTYPE else None)


def write_layer(
    blob: BlobWriter,
    items: Iterable[tuple[tarfile.TarInfo, Content]],
    compression: str = "gzip",
    annotations: dict[str, str] | None = None,
) -> LayerBlob:
    """Write tar items as one layer into ``blob`` and commit it."""
    sink = _Sink(blob, compression)
    files = 0
    with tarfile.open(
        fileobj=sink,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
        bufsize=_COPY_BLOCK,
    ) as tar:  # type: ignore[call-overload]
        tar.copybufsize = _COPY_BLOCK
        for info, content in items:
            if isinstance(content, bytes):
                tar.addfile(info, io.BytesIO(content))
            elif content is not None:
                with content() as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            files += info.type != tarfile.DIRTYPE
    sink.finish()
    descriptor = blob.commit(MEDIA_TYPES[compression], annotations)
    return LayerBlob(descriptor, "sha256:" + sink.diff.hexdigest(), sink.size, files)
