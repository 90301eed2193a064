"""One image, as the read-back tools see it: ``inspect``, ``diff`` and
``report`` are built on this model.

In: an image opened by ``encapsulate.oci.read.open_image`` (its manifest and
config; the blobs are not read here).
Out: an ``ImageModel``: each layer's digest, media type, compressed size,
diff id, components (largest first), their summed size and the layer's
weekly change probability (``encapsulate.oci.labels``), the image's
components (from the ``org.debchunk.components`` label), and the one
definition of the bytes an average week's update downloads.

Expected download bytes per week: ``sum over layers of size(L) * p_L``, with
``size(L)`` the layer's *compressed* size, because that is what a client
pulls when the layer changes, and ``p_L = 1 - prod(1 - p_c)`` over the
layer's components as the chunker counts it.  Layers holding no component
(the directories layer, the ostree commit layer) have no known probability
and add nothing; the figure is None when the image records no components or
a layer names one the components label lacks.  ``debchunk plan`` counts the
same sum with uncompressed content sizes, the unit the planner works in, so
its figure (``expected_update_bytes``) is larger by about the compression
ratio; the names differ so that the two are not taken for one another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_LABEL,
    PLAN_LABEL,
    ComponentInfo,
    components_from_label,
    groups_per_layer,
    json_label,
    layer_change_probability,
    plan_groups,
)
from ..oci.model import Descriptor, Digest
from ..oci.read import SourceImage

log = logging.getLogger("debchunk.model")


@dataclass(frozen=True)
class ImageLayer:
    """One layer.  ``components`` are largest first; ``content_size`` (the sum
    of their sizes) and ``change_probability`` are None when the image does
    not record them (or the layer holds none)."""

    index: int
    digest: Digest
    media_type: str
    size: int
    diff_id: str | None
    components: tuple[str, ...]
    content_size: int | None
    change_probability: float | None

    @property
    def descriptor(self) -> Descriptor:
        """The layer's descriptor (media type, digest, size)."""
        return Descriptor(self.media_type, self.digest, self.size)

    @property
    def expected_download_bytes(self) -> float | None:
        """``size * change_probability``: this layer's share of an average week's
        download, in compressed bytes (None when its probability is unknown)."""
        if self.change_probability is None:
            return None
        return self.size * self.change_probability


@dataclass(frozen=True)
class ImageModel:
    """An image read back: its layers and what its labels say about them."""

    ref: str
    manifest_digest: Digest
    config_digest: Digest
    created: str
    architecture: str
    debchunk: bool
    layers: tuple[ImageLayer, ...]
    components: dict[str, ComponentInfo]

    @property
    def size(self) -> int:
        """Compressed size of the layers, each distinct blob once."""
        return sum({layer.digest: layer.size for layer in self.layers}.values())

    @property
    def has_components(self) -> bool:
        """Whether the image records which components each layer holds."""
        return any(layer.components for layer in self.layers)

    @property
    def expected_download_bytes(self) -> float | None:
        """``sum size(L) * p_L`` over the layers holding components (see the
        module's docstring); None when it cannot be known."""
        held = [layer for layer in self.layers if layer.components]
        if not self.components or not held or any(layer.change_probability is None for layer in held):
            return None
        return sum(layer.expected_download_bytes or 0.0 for layer in held)


def _damaged(image: SourceImage, what: str, lenient: bool) -> None:
    """A damaged label: an error, or with ``lenient`` a warning (the label is left out)."""
    if not lenient:
        raise EncapsulateError(f"{image.ref}: {what}; the image is damaged: build it again")
    log.warning(f"{image.ref}: {what}; it is left out")


def _label(image: SourceImage, key: str, lenient: bool) -> Any:
    labels = image.config.labels
    if lenient and not labels.get(key):
        return None
    try:
        return json_label(labels, key)
    except ValueError:
        _damaged(image, f"label {key} is not JSON", lenient)
        return None


def read_components(image: SourceImage, *, lenient: bool = False) -> dict[str, ComponentInfo]:
    """The image's ``org.debchunk.components`` label (empty when absent)."""
    data = _label(image, COMPONENTS_LABEL, lenient)
    if data is None:
        return {}
    if not isinstance(data, dict):
        _damaged(image, f"label {COMPONENTS_LABEL} is not a JSON object", lenient)
        return {}
    components, bad = components_from_label(data, lenient=lenient)
    for name in bad:
        _damaged(
            image,
            f"label {COMPONENTS_LABEL}: component {name!r} has no valid size and change_probability",
            lenient,
        )
    return components


def layer_groups(image: SourceImage, *, lenient: bool = False) -> list[tuple[str, ...]]:
    """Component names of each layer: from the plan label (the first layer holds
    none; layers added on top of the image, as by a derived build, hold none),
    else from the layers' ``ostree.components`` annotations."""
    value = _label(image, PLAN_LABEL, lenient)
    plan = None if value is None else plan_groups(value, names_only=True)
    if value is not None and plan is None:
        _damaged(image, f"label {PLAN_LABEL} is not a list of lists of names", lenient)
    return groups_per_layer(plan, image.layers)


def read_model(image: SourceImage, *, lenient: bool = False) -> ImageModel:
    """The model of an opened image.  A damaged debchunk label fails, or with
    ``lenient`` is left out with a warning."""
    labels = image.config.labels
    components = read_components(image, lenient=lenient)
    groups = layer_groups(image, lenient=lenient)
    diff_ids = image.config.diff_ids
    layers = []
    for k, d in enumerate(image.layers):
        names = sorted(groups[k], key=lambda n: (-(components[n].size if n in components else -1), n))
        known = bool(names) and all(n in components for n in names)
        layers.append(
            ImageLayer(
                k + 1,
                d.digest,
                d.media_type,
                d.size,
                diff_ids[k] if k < len(diff_ids) else None,
                tuple(names),
                sum(components[n].size for n in names) if known else None,
                layer_change_probability(names, components) if names else None,
            )
        )
    return ImageModel(
        image.ref,
        image.manifest_digest,
        image.manifest.config.digest,
        image.config.created or "",
        image.config.architecture or "",
        PLAN_LABEL in labels or COMPONENTS_LABEL in labels,
        tuple(layers),
        components,
    )
