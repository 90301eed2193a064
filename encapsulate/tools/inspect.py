"""What an image holds (``debchunk inspect``).

In: an image reference (any ``IMGREF``, read by ``encapsulate.oci.read``).
Out: ``ImageInfo``: the image's model (``tools.model``: per layer digest,
compressed size, components, weekly change probability; the image's
expected download bytes) and, when its blobs are at hand (``oci:``,
``oci-archive:``, or fetched), what streaming each layer once found (its
uncompressed size and file count, ``tools.scan``); its JSON and its table.

Sizes of components are bytes of distinct content (``mapping.Component.size``),
the unit of the planner; the expected download bytes are compressed bytes, what
a client downloads (see ``tools.model``), named apart from ``debchunk plan``'s
``expected_update_bytes``, which counts content bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..oci.imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref
from ..oci.labels import ComponentInfo
from ..oci.read import SourceImage, open_image
from .model import ImageLayer, ImageModel, read_model
from .scan import LayerScan, scan_layer
from .text import component_names, how_to_read_layers, human_size, printable, short_digest, table

# Components named per layer: in JSON, and in the text table.
TOP_COMPONENTS = 5
TOP_COMPONENTS_TEXT = 3


@dataclass(frozen=True)
class ImageInfo:
    """An image read back: its model and, per layer, what streaming it found
    (None for a layer not read)."""

    image: ImageModel
    scans: tuple[LayerScan | None, ...]
    layers_read: bool

    def to_json(self) -> dict[str, Any]:
        """The shape of ``debchunk inspect --json``."""
        image = self.image
        read = all(s is not None for s in self.scans)
        return {
            "image": image.ref,
            "manifest": image.manifest_digest,
            "config": image.config_digest,
            "debchunk": image.debchunk,
            "layers": [
                _layer_json(layer, scan, image.components)
                for layer, scan in zip(image.layers, self.scans, strict=True)
            ],
            "layers_read": self.layers_read,
            "size": image.size,
            "uncompressed_size": sum(s.uncompressed_size for s in self.scans if s) if read else None,
            "files": sum(s.files for s in self.scans if s) if read else None,
            "components": len(image.components) if image.components else None,
            "expected_download_bytes": image.expected_download_bytes,
        }


def _layer_json(
    layer: ImageLayer, scan: LayerScan | None, components: dict[str, ComponentInfo]
) -> dict[str, Any]:
    top = layer.components[:TOP_COMPONENTS]
    rest = layer.components[TOP_COMPONENTS:]
    return {
        "digest": layer.digest,
        "media_type": layer.media_type,
        "size": layer.size,
        "diff_id": layer.diff_id,
        "uncompressed_size": scan.uncompressed_size if scan else None,
        "files": scan.files if scan else None,
        "content_size": layer.content_size,
        "components": [
            components[n].to_json() if n in components else {"name": n, "size": None} for n in top
        ],
        "other_components": len(rest),
        "other_components_size": sum(components[n].size for n in rest if n in components),
        "change_probability": layer.change_probability,
        "expected_download_bytes": layer.expected_download_bytes,
    }


def reads_blobs(ref: ImageRef, fetch: bool, read_layers: bool) -> bool:
    """Whether reading ``ref``'s layers needs its blobs: local images' are
    at hand, the others' only with ``fetch``."""
    return read_layers and (ref.direct or fetch)


def describe(image: SourceImage, read_layers: bool = True) -> ImageInfo:
    """The model of an opened image; with ``read_layers`` (and its blobs at
    hand) each distinct layer is streamed once to count its files and
    uncompressed size."""
    model = read_model(image)
    read = read_layers and image.layout is not None
    scans: dict[str, LayerScan] = {}
    if read:
        for layer in model.layers:
            if layer.digest not in scans:
                scans[layer.digest] = scan_layer(image, layer.index, layer.descriptor)
    return ImageInfo(model, tuple(scans.get(layer.digest) for layer in model.layers), read)


def inspect_image(
    imgref: ImageRef | str,
    *,
    fetch: bool = False,
    read_layers: bool = True,
    registry: RegistryOptions = DEFAULT_REGISTRY,
) -> ImageInfo:
    """Read and describe the image at ``imgref``.  Layers are streamed when they
    are local (``oci:``, ``oci-archive:``) or, with ``fetch``, after skopeo
    copied them to a temporary directory; ``read_layers=False`` reads the
    manifest and config only."""
    ref = parse_imgref(imgref) if isinstance(imgref, str) else imgref
    with open_image(ref, registry, blobs=reads_blobs(ref, fetch, read_layers)) as image:
        return describe(image, read_layers)


def format_inspect(info: ImageInfo) -> str:
    """The image as a table, one row per layer; what the image names is
    printed escaped (``text.printable``), so each row is one line."""
    image = info.image

    def size(n: float | None) -> str:
        return "-" if n is None else human_size(n)

    rows = [("LAYER", "DIGEST", "SIZE", "UNPACKED", "FILES", "CONTENT", "P(WEEK)", "E(BYTES)", "COMPONENTS")]
    for layer, scan in zip(image.layers, info.scans, strict=True):
        p = layer.change_probability
        rows.append(
            (
                str(layer.index),
                short_digest(layer.digest),
                human_size(layer.size),
                size(scan.uncompressed_size if scan else None),
                "-" if scan is None else str(scan.files),
                size(layer.content_size),
                "-" if p is None else f"{p:.3f}",
                size(layer.expected_download_bytes),
                component_names(layer.components, TOP_COMPONENTS_TEXT),
            )
        )
    lines = [f"{printable(image.ref)}: {image.manifest_digest}", *table(rows, (1, 8)), ""]
    summary = f"{len(image.layers)} layers, {human_size(image.size)}"
    if info.layers_read:
        scans = [s for s in info.scans if s]
        summary += f" ({human_size(sum(s.uncompressed_size for s in scans))} unpacked, "
        summary += f"{sum(s.files for s in scans)} files)"
    if image.components:
        summary += f"; {len(image.components)} components"
    expected = image.expected_download_bytes
    if expected is not None:
        summary += f"; expected update {human_size(expected)} per week"
    elif not image.debchunk:
        summary += "; not written by debchunk: no components or change probabilities"
    lines.append(summary)
    if not info.layers_read:
        lines.append(
            f"layers not read: {how_to_read_layers(image.ref)} to count files and uncompressed sizes"
        )
    return "\n".join(lines)
