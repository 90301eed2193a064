"""What a client holding one image downloads to get another (``debchunk diff``).

In: two image references (any ``IMGREF``, read by ``encapsulate.oci.read``).
Out: ``ImageDiff``: NEW's layers reused or new (by digest), the compressed
bytes to download, the components changed (from both images'
``org.debchunk.components`` labels) and, when both images' layers are at
hand, the ideal: NEW's file content found nowhere in OLD.  Built on
``tools.model``; its JSON and its table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..oci.imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref
from ..oci.labels import ComponentChange, component_changes
from ..oci.read import SourceImage, open_image
from .inspect import TOP_COMPONENTS, TOP_COMPONENTS_TEXT, reads_blobs
from .model import ImageModel, read_model
from .scan import scan_layer
from .text import component_names, how_to_read_layers, human_size, printable, short_digest, table


@dataclass(frozen=True)
class ImageDiff:
    """NEW's layers as seen by a client holding OLD.

    ``download_bytes``: compressed sizes of NEW's layer blobs not in OLD (each
    once): what is pulled.  ``total_bytes``: compressed sizes of all of NEW's
    layer blobs.  ``download_content_bytes``: the sizes of the components in
    those layers, from NEW's components label (None without it), the unit of
    ``benches.update_cost``.  ``ideal_bytes``: regular-file content of NEW found
    nowhere in OLD, each distinct content once (None when the layers were not
    read).  ``changes``: None unless both images carry the components label."""

    old: ImageModel
    new: ImageModel
    reused: tuple[bool, ...]
    download_bytes: int
    total_bytes: int
    download_content_bytes: int | None
    ideal_bytes: int | None
    changes: tuple[ComponentChange, ...] | None

    def to_json(self) -> dict[str, Any]:
        """The shape of ``debchunk diff --json``."""
        changes = None
        if self.changes is not None:
            changes = {
                status: [c.to_json() for c in self.changes if c.status == status]
                for status in ("added", "removed", "changed")
            }
        return {
            "old": {"image": self.old.ref, "manifest": self.old.manifest_digest},
            "new": {"image": self.new.ref, "manifest": self.new.manifest_digest},
            "layers": [
                {
                    "digest": layer.digest,
                    "size": layer.size,
                    "reused": reused,
                    "components": list(layer.components[:TOP_COMPONENTS]),
                    "other_components": max(0, len(layer.components) - TOP_COMPONENTS),
                    "content_size": layer.content_size,
                }
                for layer, reused in zip(self.new.layers, self.reused, strict=True)
            ],
            "reused_layers": sum(self.reused),
            "new_layers": len(self.reused) - sum(self.reused),
            "download_bytes": self.download_bytes,
            "total_bytes": self.total_bytes,
            "download_content_bytes": self.download_content_bytes,
            "ideal_bytes": self.ideal_bytes,
            "components": changes,
        }


def ideal_bytes(old: SourceImage, old_model: ImageModel, new: SourceImage, new_model: ImageModel) -> int:
    """File content of NEW found nowhere in OLD: NEW's new layers are streamed
    and each regular file hashed, then every layer of OLD, hashing only files
    of a size found among NEW's (each distinct blob streamed once)."""
    have = {layer.digest for layer in old_model.layers}
    fresh: dict[str, int] = {}
    done: set[str] = set()
    for layer in new_model.layers:
        if layer.digest in have or layer.digest in done:
            continue
        done.add(layer.digest)
        scan = scan_layer(new, layer.index, layer.descriptor, want=lambda _: True)
        for digest, size in scan.contents.items():
            fresh.setdefault(digest, size)
    if not fresh:
        return 0
    sizes = set(fresh.values())
    done.clear()
    for layer in old_model.layers:
        if layer.digest in done:
            continue
        done.add(layer.digest)
        scan = scan_layer(old, layer.index, layer.descriptor, want=sizes.__contains__)
        for digest in scan.contents:
            fresh.pop(digest, None)
    return sum(fresh.values())


def compare(old: SourceImage, new: SourceImage, read_layers: bool = True) -> ImageDiff:
    """What a client holding ``old`` downloads to get ``new``."""
    old_model, new_model = read_model(old), read_model(new)
    have = {layer.digest for layer in old_model.layers}
    reused = tuple(layer.digest in have for layer in new_model.layers)
    blobs = {layer.digest: layer for layer in new_model.layers}
    fresh = [layer for digest, layer in blobs.items() if digest not in have]
    content: int | None = None
    if new_model.components:
        content = sum(
            new_model.components[n].size
            for layer in fresh
            for n in layer.components
            if n in new_model.components
        )
    ideal: int | None = 0 if not fresh else None
    if fresh and read_layers and old.layout is not None and new.layout is not None:
        ideal = ideal_bytes(old, old_model, new, new_model)
    changes = None
    if old_model.components and new_model.components:
        changes = component_changes(old_model.components, new_model.components)
    return ImageDiff(
        old_model,
        new_model,
        reused,
        sum(layer.size for layer in fresh),
        sum(layer.size for layer in blobs.values()),
        content,
        ideal,
        changes,
    )


def diff_images(
    old_ref: ImageRef | str,
    new_ref: ImageRef | str,
    *,
    fetch: bool = False,
    read_layers: bool = True,
    registry: RegistryOptions = DEFAULT_REGISTRY,
) -> ImageDiff:
    """Read both images and compare them.  ``ideal_bytes`` needs both images'
    layers (local, or fetched with ``fetch``) and costs a pass over NEW's new
    layers and all of OLD's: time in proportion to their uncompressed size;
    ``read_layers=False`` skips it."""
    old_at, new_at = (parse_imgref(r) if isinstance(r, str) else r for r in (old_ref, new_ref))
    with (
        open_image(old_at, registry, blobs=reads_blobs(old_at, fetch, read_layers)) as old,
        open_image(new_at, registry, blobs=reads_blobs(new_at, fetch, read_layers)) as new,
    ):
        return compare(old, new, read_layers)


def format_diff(d: ImageDiff) -> str:
    """NEW's layers, reused or new, and what the update costs; names and
    versions from the images printed escaped (``text.printable``)."""
    rows = [("LAYER", "DIGEST", "SIZE", "STATUS", "COMPONENTS")]
    for layer, reused in zip(d.new.layers, d.reused, strict=True):
        rows.append(
            (
                str(layer.index),
                short_digest(layer.digest),
                human_size(layer.size),
                "reused" if reused else "new",
                component_names(layer.components, TOP_COMPONENTS_TEXT),
            )
        )
    new_count = len(d.reused) - sum(d.reused)
    lines = [f"{printable(d.old.ref)} -> {printable(d.new.ref)}", *table(rows, (1, 3, 4)), ""]
    lines.append(
        f"download {human_size(d.download_bytes)} of {human_size(d.total_bytes)}: "
        f"{new_count} of {len(d.reused)} layers new, {sum(d.reused)} reused"
    )
    extra = []
    if d.download_content_bytes is not None:
        extra.append(f"content {human_size(d.download_content_bytes)}")
    if d.ideal_bytes is not None:
        extra.append(f"ideal {human_size(d.ideal_bytes)} (file content not in the old image)")
    else:
        remote = d.new.ref if not parse_imgref(d.new.ref).direct else d.old.ref
        extra.append(f"ideal unknown: layers not read ({how_to_read_layers(remote)})")
    if extra:
        lines.append("; ".join(extra))
    if d.changes is not None:
        by = {s: [c for c in d.changes if c.status == s] for s in ("changed", "added", "removed")}
        parts = []
        for status, items in by.items():
            if items:
                shown = ", ".join(
                    printable(f"{c.name} {c.old.version} -> {c.new.version}")
                    if status == "changed" and c.old and c.new and c.old.version != c.new.version
                    else printable(c.name)
                    for c in items[:10]
                )
                parts.append(f"{status} {len(items)}: {shown}" + (" ..." if len(items) > 10 else ""))
        lines.append("components: " + ("; ".join(parts) if parts else "none changed"))
    return "\n".join(lines)
