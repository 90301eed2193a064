"""The previous build, read back: what a build (``--prior``,
``--previous-build-manifest``, ``--compare-with-build``) and the read-back
tools both need of an image, below both of them.

In: an image reference (any transport, read by ``oci.read``; of an image
index, the linux/amd64 image), a raw manifest file or a plan file
(``read_prior`` takes any of them).  Out: a ``Plan``
holding the previous grouping: from the config label ``org.debchunk.plan``
when it is there, else from the layers' ``ostree.components`` annotations
(podman and skopeo may drop annotations, which is why the label comes
first); or the image's layer digests.
"""

from __future__ import annotations

from chunker import ChunkerError, Plan

from ..errors import EncapsulateError
from .imgref import ImageRef, RegistryOptions
from .labels import COMPONENTS_ANNOTATION, PLAN_LABEL, annotation_groups, json_label, plan_groups
from .layout import MAX_MANIFEST_BYTES, read_at_most, read_json_object
from .model import Digest, ImageConfig, Manifest
from .platform import DEFAULT_PLATFORM, Platform
from .read import open_image


def plan_from_image(manifest: Manifest, config: ImageConfig | None, where: str) -> Plan:
    """The grouping recorded in an image's config label or layer annotations."""
    labels = {} if config is None else config.labels
    if labels.get(PLAN_LABEL):
        try:
            recorded = plan_groups(json_label(labels, PLAN_LABEL))
        except ValueError:
            recorded = None
        if recorded is None:
            raise EncapsulateError(f"{where}: label {PLAN_LABEL} is not a plan; build without --prior once")
        return Plan.from_groups(recorded)
    groups = [list(g) for g in annotation_groups(manifest.layers) if g]
    if not groups:
        raise EncapsulateError(
            f"{where}: the image records no plan (no {PLAN_LABEL} label, no {COMPONENTS_ANNOTATION} "
            "annotations); build without --prior once"
        )
    return Plan.from_groups(groups)


def prior_plan(
    imgref: ImageRef | str, registry: RegistryOptions, platform: Platform = DEFAULT_PLATFORM
) -> Plan:
    """The previous build's plan, from an image reference (read with
    ``open_image``; of an image index, the ``platform`` image)."""
    with open_image(imgref, registry, blobs=False, platform=platform) as image:
        return plan_from_image(image.manifest, image.config, image.ref)


def image_layer_digests(
    imgref: ImageRef | str, registry: RegistryOptions, platform: Platform = DEFAULT_PLATFORM
) -> list[Digest]:
    """The layer digests of an image's manifest, in order (``--compare-with-build``;
    of an image index, the ``platform`` image)."""
    with open_image(imgref, registry, blobs=False, platform=platform) as image:
        return [d.digest for d in image.layers]


def prior_from_manifest_file(path: str) -> Plan:
    """The previous build's plan from a raw OCI manifest JSON file
    (``--previous-build-manifest``): its layers' annotations."""
    try:
        with open(path, "rb") as f:
            data = read_at_most(f, MAX_MANIFEST_BYTES, path)
    except OSError as e:
        raise EncapsulateError(f"{path}: cannot read the OCI manifest: {e.strerror}") from None
    return plan_from_image(Manifest.parse(data, None, path), None, path)


def read_prior(
    registry: RegistryOptions,
    *,
    prior: ImageRef | str | None = None,
    plan_file: str | None = None,
    previous_build_manifest: str | None = None,
    platform: Platform = DEFAULT_PLATFORM,
) -> Plan | None:
    """The previous build's plan: from a plan file (``plan_file``, what
    ``debchunk plan --json`` prints), an image (``prior``, reached as
    ``registry`` says) or a raw OCI manifest file; None without one."""
    if plan_file is not None:
        data = read_json_object(plan_file, "plan", "pass the output of 'debchunk plan --json'")
        try:
            return Plan.from_json(data)
        except ChunkerError as e:
            raise ChunkerError(f"{plan_file}: {e}") from None
    if prior is not None:
        return prior_plan(prior, registry, platform)
    if previous_build_manifest is not None:
        return prior_from_manifest_file(previous_build_manifest)
    return None
