"""The plan of a previous build, read back from its image.

In: an image reference (``oci:DIR[:TAG]`` read directly; any other transport
through ``skopeo inspect``) or a raw manifest file.  Out: a ``Plan`` holding
the previous grouping: from the config label ``org.debchunk.plan`` when it is
there, else from the layers' ``ostree.components`` annotations (podman and
skopeo may drop annotations, which is why the label comes first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
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
from ..oci.layout import Layout, read_json_object

SKOPEO_TRANSPORTS = ("oci-archive", "docker-archive", "docker", "containers-storage", "dir")


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


def _skopeo(args: list[str], where: str) -> dict[str, Any]:
    if shutil.which("skopeo") is None:
        raise EncapsulateError(
            f"{where}: reading this transport needs skopeo; install it (apt-get install skopeo)"
        )
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise EncapsulateError(f"{where}: skopeo could not read it: {reason}")
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise EncapsulateError(f"{where}: skopeo returned no JSON") from None
    return data


def _read(imgref: str, config: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    transport, _, rest = imgref.partition(":")
    if transport == "oci":
        path, _, tag = rest.partition(":")
        layout = Layout(path, create=False)
        descriptor = layout.manifest_for(tag or None)
        manifest = json.loads(layout.read_blob(descriptor.digest))
        return manifest, json.loads(layout.read_blob(manifest["config"]["digest"])) if config else None
    if transport != "registry" and transport not in SKOPEO_TRANSPORTS:
        raise EncapsulateError(
            f"{imgref}: unknown transport {transport!r}; use oci:DIR[:TAG] or a skopeo transport"
        )
    source = "docker://" + rest if transport == "registry" else imgref
    manifest = _skopeo(["inspect", "--raw", source], imgref)
    return manifest, _skopeo(["inspect", "--config", source], imgref) if config else None


def image_manifest(imgref: str) -> dict[str, Any]:
    """The manifest of an image (any transport)."""
    return _read(imgref, False)[0]


def prior_plan(imgref: str) -> Plan:
    """The previous build's plan, from an image reference."""
    manifest, config = _read(imgref, True)
    return plan_from_image(manifest, config, imgref)


def prior_from_manifest_file(path: str) -> Plan:
    """The previous build's plan from a raw OCI manifest JSON file
    (``--previous-build-manifest``): its layers' annotations."""
    manifest = read_json_object(path, "OCI manifest", "pass the raw manifest JSON of the previous build")
    return plan_from_image(manifest, None, path)
