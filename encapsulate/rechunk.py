"""An existing container image as the origin of a build (``--from IMGREF``).

In: an image read back (``oci.read.SourceImage``, its blobs on this machine).
Out: what the mapping stage reads of it: its layer blobs as a
``mapping.LayersOrigin``, applied in order into one tree, or (``--format
ostree``) that tree committed to a scratch repository as a
``mapping.CommitOrigin`` (about the size of the image's uncompressed
layers again, its free space looked at before it is written); and, with
``--keep-base``, the base image's layers that are kept as they are
(``BaseLayers``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from mapping import CommitOrigin, LayerArchive, LayersOrigin, newest_change_date, read_tree, verify_layer
from mapping.space import Meter

from .describe import config_created
from .errors import EncapsulateError
from .oci.labels import OCI_VERSION_LABEL, VERSION_LABEL
from .oci.layout import LAYER_COMPRESSION, Descriptor
from .oci.read import SourceImage
from .write.image import BaseLayers

# The branch the commit of an image origin is on, in its scratch repository.
IMAGE_REF = "debchunk/image"
# The commit's metadata keys taken from the image's labels (``ostree.commit``'s
# ``version`` is what ``bootc status`` and rpm-ostree show).
_VERSION_LABELS = (OCI_VERSION_LABEL, VERSION_LABEL)


def layers_origin(image: SourceImage, workdir: str) -> LayersOrigin:
    """The image's layers as the mapping stage reads them, spooled under ``workdir``."""
    return LayersOrigin(tuple(layer_archives(image)), os.path.join(workdir, "layers"), image.ref)


def layer_archives(image: SourceImage) -> list[LayerArchive]:
    """The image's layers, bottom first, as blobs the mapping stage reads,
    each with its config's diff_id (checked as the layer is read); refuses
    encrypted layers, media types that are not tar layers, and a config
    whose diff_ids are not one per layer."""
    if image.layout is None:
        raise EncapsulateError("the image's blobs were not fetched", where=image.ref)
    out = []
    for i, d in enumerate(image.layers, 1):
        media_type, digest = d.media_type, d.digest
        if "+encrypted" in media_type:
            raise EncapsulateError(
                f"layer {i} ({digest}) is encrypted ({media_type})",
                where=image.ref,
                hint="decrypt the image first (skopeo copy --decryption-key)",
            )
        compression = LAYER_COMPRESSION.get(media_type)
        if compression is None:
            raise EncapsulateError(
                f"layer {i} ({digest}) has media type {media_type!r}, which is not a tar layer",
                where=image.ref,
                hint="re-chunk an image of tar, tar+gzip or tar+zstd layers",
            )
        out.append(LayerArchive(image.layout.blob_path(digest), digest, compression, size=d.size))
    if not out:
        raise EncapsulateError("the image has no layers", where=image.ref)
    diff_ids = image.config.diff_ids
    if len(diff_ids) != len(out):
        raise EncapsulateError(
            f"its config lists {len(diff_ids)} diff_ids for {len(out)} layers",
            where=image.ref,
            hint="the image is damaged or was altered; pull it again",
        )
    return [replace(layer, diff_id=diff_id) for layer, diff_id in zip(out, diff_ids, strict=True)]


_FROM_HINT = "give --keep-base the image it was built FROM"


def base_blobs_differ(image: SourceImage, base: SourceImage) -> bool:
    """Whether ``image`` starts with ``base``'s layers (their diff_ids, all
    of them and in order) as other blobs: compressed otherwise, or read from
    another transport (containers-storage gives uncompressed digests).  An
    image that does not start with them, or adds nothing, is refused, the
    first layer that differs named."""
    ours, theirs = image.config.diff_ids, base.config.diff_ids
    if not theirs:
        raise EncapsulateError(f"{base.ref} has no layers", hint=_FROM_HINT)
    for i, want in enumerate(theirs):
        have = ours[i] if i < len(ours) else None
        if have != want:
            raise EncapsulateError(
                f"its layer {i + 1} is not layer {i + 1} of {base.ref}: "
                f"diff_id {have or 'none'} against {want}",
                where=image.ref,
                hint=_FROM_HINT,
            )
    if len(ours) == len(theirs):
        raise EncapsulateError(
            f"the image adds nothing to {base.ref}", where=image.ref, hint="push the base image as it is"
        )
    return [d.digest for d in image.layers[: len(theirs)]] != [d.digest for d in base.layers]


def shared_base(image: SourceImage, base: SourceImage) -> BaseLayers:
    """The layers of ``image`` that are ``base``'s, matched by diff_id, kept
    as ``base``'s own blobs (a registry holding the base mounts them, and a
    client holding it has them), read from ``base`` when they are other blobs
    than ``image``'s (``base`` must then be read with its blobs, and each is
    checked against its digest, size and diff_id first)."""
    differ = base_blobs_differ(image, base)
    k = len(base.layers)
    if differ:
        for layer in layer_archives(base):
            verify_layer(layer)
    kept_history: list[dict[str, Any]] = []
    seen = 0
    for entry in image.config.history:
        if seen >= k:
            break
        kept_history.append(entry)
        if not entry.get("empty_layer"):
            seen += 1
    # Kept as the base has them, less their annotations (the new image's own layers carry theirs).
    descriptors = tuple(Descriptor(d.media_type, d.digest, d.size) for d in base.layers)
    open_blob = base.open_blob if differ else image.open_blob
    return BaseLayers(descriptors, tuple(base.config.diff_ids), tuple(kept_history), open_blob)


def commit_image(
    image: SourceImage, layers: LayersOrigin, workdir: str, epoch: int | None, threads: int | None
) -> CommitOrigin:
    """``--from IMGREF --format ostree``: the image's flattened tree laid out
    as an OSTree image builder lays a tree out (``ostree_layout``) and
    committed to a scratch repository under ``workdir``, which the build then
    maps as it maps any commit.  The commit's time is ``epoch``
    (``SOURCE_DATE_EPOCH``), else the newest changelog date in the tree, else
    the image config's ``created``, so the same image gives the same commit."""
    # Only this step and the ostree writer need libostree (gi).
    from .write.ostree_commit import commit_tree, ostree_layout

    laid_out = ostree_layout(read_tree(layers, threads))
    timestamp = epoch
    if timestamp is None:
        newest = newest_change_date(laid_out)
        timestamp = int(newest.timestamp()) if newest is not None else config_created(image.config)
        if timestamp is None:
            raise EncapsulateError(
                "no timestamp for the commit: the tree has no Debian changelogs "
                "and the image's config no created time",
                where=image.ref,
                hint="set SOURCE_DATE_EPOCH",
            )
    labels = image.config.labels
    version = next((labels[k] for k in _VERSION_LABELS if labels.get(k)), None)
    repo = os.path.join(workdir, "ostree")
    # libostree writes the repository itself: its space is looked at before only.
    Meter(repo, "committing the image's tree")
    metadata = {} if version is None else {VERSION_LABEL: version}
    commit_tree(laid_out, repo, IMAGE_REF, timestamp=timestamp, metadata=metadata, threads=threads)
    return CommitOrigin(repo, IMAGE_REF)
