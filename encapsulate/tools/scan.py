"""Streaming a layer once: its tar's size, its entries and, when asked, the
sha256 of its files, checked against the manifest's digest and size.

In: an opened image (``encapsulate.oci.read.SourceImage``) with its blobs,
and one of its layer descriptors.  Out: ``LayerScan``.  The layer is read by
the mapping stage's layer reader (``mapping.LayerStream``: the compression
its media type names, the tar as Go's archive/tar reads it), never unpacked
to disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from mapping import LayerArchive, LayerStream, MappingError

from ..errors import EncapsulateError
from ..oci.model import LAYER_COMPRESSION, Descriptor, Digest, blob_mismatch
from ..oci.read import SourceImage

_DAMAGED = "the image is damaged: fetch or build it again"


@dataclass(frozen=True)
class LayerScan:
    """What streaming a layer found: the size of its tar, its non-directory
    entries and, when asked for, the sha256 -> size of its regular files."""

    uncompressed_size: int
    files: int
    contents: dict[str, int]


def _blob_fault(path: str, layer: Descriptor) -> str | None:
    """What is wrong with the blob's bytes (size, digest), if anything."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < layer.size:
            return blob_mismatch(size, "", layer)
        found = Digest.of_hash(hashlib.file_digest(f, layer.digest.algorithm))
    return (
        None if (size, found) == (layer.size, layer.digest) else blob_mismatch(size, found, layer, "manifest")
    )


def scan_layer(
    image: SourceImage, index: int, layer: Descriptor, want: Callable[[int], bool] | None = None
) -> LayerScan:
    """Stream layer ``index`` (1-based) of ``image``: the size of its tar and its
    non-directory entries; with ``want``, the sha256 of each regular file whose
    size it accepts.  The blob must match the descriptor's digest and size,
    and its uncompressed stream the config's diff_id for the layer."""
    where = f"{image.ref}: layer {index} ({layer.digest})"
    if image.layout is None:
        raise EncapsulateError(f"{image.ref}: the image's blobs were not fetched")
    compression = LAYER_COMPRESSION.get(layer.media_type)
    if compression is None:
        raise EncapsulateError(f"{where}: media type {layer.media_type!r} is not a tar layer")
    path = image.layout.blob_path(layer.digest)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise EncapsulateError(f"{where}: the blob is missing; fetch or build the image again") from None
    except OSError as e:
        raise EncapsulateError(f"{where}: cannot read the blob ({e.strerror})") from None
    if size != layer.size:
        raise EncapsulateError(f"{where}: {_blob_fault(path, layer)}; {_DAMAGED}")
    diff_ids, count = image.config.diff_ids, len(image.layers)
    if len(diff_ids) != count:
        raise EncapsulateError(
            f"{image.ref}: its config lists {len(diff_ids)} diff_ids for {count} layers; {_DAMAGED}"
        )
    archive = LayerArchive(path, layer.digest, compression, diff_ids[index - 1], layer.size)
    stream = LayerStream(archive, want)
    contents: dict[str, int] = {}
    files = 0
    try:
        for member in stream:
            if member.is_dir:
                continue
            files += 1
            if member.sha256 is not None:
                contents.setdefault(member.sha256, member.size)
    except MappingError as e:
        # Bytes that are not the manifest's explain the failure best.
        fault = _blob_fault(path, layer) or e.what
        raise EncapsulateError(f"{where}: {fault}; {_DAMAGED}") from None
    return LayerScan(stream.tar_size, files, contents)
