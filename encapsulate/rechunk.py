"""An existing container image as the origin of a build (``--from IMGREF``).

In: an image read back (``oci.read.SourceImage``, its blobs on this machine).
Out: its layer blobs as ``mapping.LayerArchive`` values, which the mapping
stage applies in order into one tree, and what of its config the new image
keeps: the runtime settings, the labels that do not describe the old layers,
and its platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mapping import LayerArchive

from .errors import EncapsulateError
from .oci.labels import COMPONENTS_LABEL, PLAN_LABEL
from .oci.layout import LAYER_COMPRESSION
from .oci.read import SourceImage

# The runtime settings a re-chunked image keeps (image-spec config.md, "config").
KEPT_SETTINGS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal")
# Labels that describe the old image's layers, not its content: they would be
# wrong on the new one (the new build writes its own).
LAYER_LABELS = frozenset(("ostree.final-diffid", "ostree.commit", PLAN_LABEL, COMPONENTS_LABEL))


def layer_archives(image: SourceImage) -> list[LayerArchive]:
    """The image's layers, bottom first, as blobs the mapping stage reads;
    refuses encrypted layers and media types that are not tar layers."""
    if image.layout is None:
        raise EncapsulateError("the image's blobs were not fetched", where=image.ref)
    out = []
    for i, d in enumerate(image.layers, 1):
        media_type = str(d.get("mediaType", "")) if isinstance(d, dict) else ""
        digest = str(d.get("digest", "")) if isinstance(d, dict) else ""
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


def kept_config(source: Mapping[str, Any], remove_labels: tuple[str, ...] = ()) -> dict[str, Any]:
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


def source_architecture(source: Mapping[str, Any]) -> str | None:
    """The old image's architecture, if it says one."""
    arch = source.get("architecture")
    return arch if isinstance(arch, str) and arch else None
