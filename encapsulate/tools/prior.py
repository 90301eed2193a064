"""The plan of a previous build, read back from its image.

In: an image reference (any transport, read by ``encapsulate.oci.read``; of
an image index, the linux/amd64 image) or a raw manifest file.  Out: a ``Plan`` holding
the previous grouping: from the config label ``org.debchunk.plan`` when it is
there, else from the layers' ``ostree.components`` annotations (podman and
skopeo may drop annotations, which is why the label comes first).
"""

from __future__ import annotations

from typing import Any

from chunker import Plan

from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_ANNOTATION,
    PLAN_LABEL,
    annotation_groups,
    config_labels,
    json_label,
    plan_groups,
)
from ..oci.layout import read_json_object
from ..oci.read import open_image


def plan_from_image(manifest: dict[str, Any], config: dict[str, Any] | None, where: str) -> Plan:
    """The grouping recorded in an image's config label or layer annotations."""
    labels = config_labels(config or {})
    if labels.get(PLAN_LABEL):
        try:
            recorded = plan_groups(json_label(labels, PLAN_LABEL))
        except ValueError:
            recorded = None
        if recorded is None:
            raise EncapsulateError(f"{where}: label {PLAN_LABEL} is not a plan; build without --prior once")
        return Plan.from_groups(recorded)
    layers = manifest.get("layers")
    groups = [list(g) for g in annotation_groups(layers if isinstance(layers, list) else []) if g]
    if not groups:
        raise EncapsulateError(
            f"{where}: the image records no plan (no {PLAN_LABEL} label, no {COMPONENTS_ANNOTATION} "
            "annotations); build without --prior once"
        )
    return Plan.from_groups(groups)


def prior_plan(imgref: str, tls_verify: bool | None = None) -> Plan:
    """The previous build's plan, from an image reference (read with ``open_image``)."""
    with open_image(imgref, blobs=False, tls_verify=tls_verify) as image:
        return plan_from_image(image.manifest, image.config, image.ref)


def image_layer_digests(imgref: str, tls_verify: bool | None = None) -> list[str]:
    """The layer digests of an image's manifest, in order (``--compare-with-build``)."""
    with open_image(imgref, blobs=False, tls_verify=tls_verify) as image:
        return [str(d.get("digest")) for d in image.layers if isinstance(d, dict)]


def prior_from_manifest_file(path: str) -> Plan:
    """The previous build's plan from a raw OCI manifest JSON file
    (``--previous-build-manifest``): its layers' annotations."""
    manifest = read_json_object(path, "OCI manifest", "pass the raw manifest JSON of the previous build")
    return plan_from_image(manifest, None, path)
