"""An existing container image as the origin of a build (``--from IMGREF``).

In: an image read back (``oci.read.SourceImage``, its blobs on this machine).
Out: its layer blobs as ``mapping.LayerArchive`` values, which the mapping
stage applies in order into one tree, and what of its config the new image
keeps: the runtime settings, the labels that do not describe the old layers,
and its platform.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import replace
from typing import Any

from mapping import Entry, EntryType, LayerArchive, Mapping, Tree

from .errors import EncapsulateError
from .oci.labels import (
    COMPONENTS_LABEL,
    LAYERS_LABEL,
    OSTREE_COMMIT_LABEL,
    OSTREE_FINAL_DIFFID_LABEL,
    PLAN_LABEL,
)
from .oci.layout import LAYER_COMPRESSION, Descriptor
from .oci.read import SourceImage
from .write.image import BaseLayers

# The runtime settings a re-chunked image keeps (image-spec config.md, "config").
KEPT_SETTINGS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal")
# Labels that describe the old image's layers, not its content: they would be
# wrong on the new one (the new build writes its own).
LAYER_LABELS = frozenset(
    (OSTREE_FINAL_DIFFID_LABEL, OSTREE_COMMIT_LABEL, PLAN_LABEL, COMPONENTS_LABEL, LAYERS_LABEL)
)


def layer_archives(image: SourceImage) -> list[LayerArchive]:
    """The image's layers, bottom first, as blobs the mapping stage reads;
    refuses encrypted layers and media types that are not tar layers."""
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
        out.append(LayerArchive(image.layout.blob_path(digest), digest, compression))
    if not out:
        raise EncapsulateError("the image has no layers", where=image.ref)
    return out


def kept_config(source: MappingABC[str, Any], remove_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the new image keeps of ``source`` (the old image's config), as a
    full image config to build on: its runtime settings, its labels less
    those of the old layers, and its os variant."""
    runtime = source.get("config")
    runtime = runtime if isinstance(runtime, dict) else {}
    kept: dict[str, Any] = {k: runtime[k] for k in KEPT_SETTINGS if runtime.get(k) is not None}
    labels = runtime.get("Labels")
    if isinstance(labels, dict):
        kept["Labels"] = {
            str(k): str(v) for k, v in labels.items() if k not in LAYER_LABELS and k not in remove_labels
        }
    document: dict[str, Any] = {"config": kept}
    for key in ("variant", "os.version", "os.features", "author"):
        if source.get(key) is not None:
            document[key] = source[key]
    return document


def source_architecture(source: MappingABC[str, Any]) -> str | None:
    """The old image's architecture, if it says one."""
    arch = source.get("architecture")
    return arch if isinstance(arch, str) and arch else None


def shared_base(image: SourceImage, base: SourceImage) -> BaseLayers:
    """The layers of ``image`` that are ``base``'s, all of them and in order
    (``base`` must be what ``image`` was built FROM)."""
    ours = [d.digest for d in image.layers]
    theirs = [d.digest for d in base.layers]
    if not theirs or ours[: len(theirs)] != theirs:
        raise EncapsulateError(
            f"the image does not start with the {len(theirs)} layer(s) of {base.ref}",
            where=image.ref,
            hint="give --keep-base the image it was built FROM",
        )
    if len(ours) == len(theirs):
        raise EncapsulateError(
            f"the image adds nothing to {base.ref}", where=image.ref, hint="push the base image as it is"
        )
    k = len(theirs)
    diff_ids = image.config.diff_ids
    if len(diff_ids) != len(ours):
        raise EncapsulateError("its config's diff_ids do not match its layers", where=image.ref)
    kept_history: list[dict[str, Any]] = []
    seen = 0
    for entry in image.config.history:
        if seen >= k:
            break
        kept_history.append(entry)
        if not entry.get("empty_layer"):
            seen += 1
    descriptors = tuple(Descriptor(d.media_type, d.digest, d.size) for d in image.layers[:k])
    return BaseLayers(descriptors, tuple(str(x) for x in diff_ids[:k]), tuple(kept_history), image.open_blob)


def _same(a: Entry, b: Entry) -> bool:
    return (a.type, a.mode, a.uid, a.gid, a.size, a.xattrs, a.target, a.content_id, a.rdev) == (
        b.type,
        b.mode,
        b.uid,
        b.gid,
        b.size,
        b.xattrs,
        b.target,
        b.content_id,
        b.rdev,
    )


def above_base(mapping: Mapping, base: Tree) -> tuple[Mapping, list[str]]:
    """What the layers above the base add: ``mapping`` (of the whole image)
    with only the entries that are new or differ from ``base`` owned (the
    components sized by what they hold of those), and the paths of the base
    to white out (the topmost of each removed subtree)."""
    assert mapping.tree is not None
    tree = mapping.tree
    owners = list(mapping.owners)
    for i, e in enumerate(tree.entries):
        before = base.get(e.path)
        if owners[i] >= 0 and before is not None and _same(before, e):
            owners[i] = -1
    # A hardlink group any of whose paths is written is written whole (its
    # paths must stay one inode in the layer that holds them).
    written = {e.hardlink for i, e in enumerate(tree.entries) if owners[i] >= 0 and e.hardlink}
    for i, e in enumerate(tree.entries):
        if e.hardlink in written and owners[i] < 0:
            owners[i] = mapping.owners[i]
    sizes = [0] * len(mapping.components)
    files = [0] * len(mapping.components)
    seen: set[tuple[int, str]] = set()
    for i, e in enumerate(tree.entries):
        o = owners[i]
        if o < 0:
            continue
        files[o] += 1
        if (o, e.content_id or e.path) not in seen:
            seen.add((o, e.content_id or e.path))
            sizes[o] += e.size
    keep = [k for k, n in enumerate(files) if n]
    renumber = {old: new for new, old in enumerate(keep)}
    components = tuple(replace(mapping.components[k], size=sizes[k], files=files[k]) for k in keep)
    owners = [renumber.get(o, -1) for o in owners]
    # Whiteouts: each topmost base path that is gone, or whose kind changed
    # between directory and not (the new one is written above the whiteout).
    removed: list[str] = []
    below: set[str] = set()
    for e in base.entries:
        if not e.path:
            continue
        if e.path.rpartition("/")[0] in below:
            below.add(e.path)
            continue
        now = tree.get(e.path)
        if now is None or (now.type is EntryType.DIR) != (e.type is EntryType.DIR):
            removed.append(e.path)
            below.add(e.path)
    return replace(mapping, components=components, owners=owners), removed
