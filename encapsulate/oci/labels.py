"""The names of labels and annotations, and debchunk's metadata in an image
read back: the one reading of its labels and annotations that ``inspect``,
``diff``, ``report``, ``validate`` and ``--prior`` share.

In: an image's config (its labels) and its manifest's layer descriptors.
Out: the ``org.debchunk.components`` label as ``ComponentInfo`` by name, the
``org.debchunk.plan`` label as groups of component names, each layer's
components (from the plan, else from the layers' ``ostree.components``
annotations), a layer's weekly change probability ``p_L = 1 - prod(1 - p_c)``,
and the components that differ between two images (by digest).

What to do with a damaged label differs between the commands (``inspect``
fails, ``report`` warns and leaves it out, ``validate`` lists a problem,
``--prior`` fails with advice), so these functions say what is wrong (a
``ValueError``, None, or the names of bad entries) and leave the words to them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunker.cost import Events

from .model import Descriptor, Digest

# ostree-ext's config labels (ostree-ext container/encapsulate.rs): the commit,
# the diff_id of the last layer, a bootable commit, its kernel version.
OSTREE_COMMIT_LABEL = "ostree.commit"
OSTREE_FINAL_DIFFID_LABEL = "ostree.final-diffid"
OSTREE_BOOTABLE_LABEL = "ostree.bootable"
OSTREE_LINUX_LABEL = "ostree.linux"
# bootc's label for an image it can boot (bootc's docs, "bootc images").
BOOTC_LABEL = "containers.bootc"
# The image's version: OCI's pre-defined annotation key (image-spec
# annotations.md) and the commit metadata key ``bootc status`` shows.
OCI_VERSION_LABEL = "org.opencontainers.image.version"
VERSION_LABEL = "version"
# The commit metadata key ostree-ext takes an image's Cmd from.
CONTAINER_CMD_KEY = "ostree.container-cmd"
# The tag of a manifest in a layout's index.json (image-spec annotations.md,
# "Pre-Defined Annotation Keys").
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# Config labels debchunk writes: the plan (groups of component names, one per
# layer after the first) and name -> {size, change_probability, version,
# digest} of every planned component; the digest covers the component's paths,
# metadata and contents, so two images tell which components changed without
# reading their layers.
PLAN_LABEL = "org.debchunk.plan"
COMPONENTS_LABEL = "org.debchunk.components"
# The layer annotation ostree-ext writes and reads: the layer's component names.
COMPONENTS_ANNOTATION = "ostree.components"
# On each layer debchunk writes: "KEY DIFF_ID TAR_SIZE FILES" (the key from
# encapsulate.write.tar.layer_key), so the next build into the same layout can
# take the blob instead of writing the same bytes again.
LAYER_ANNOTATION = "org.debchunk.layer"
# The same records in the config, one per manifest layer (null for a layer
# without a key), each with the blob's digest and size: podman, skopeo and
# docker drop layer annotations, labels survive every transport, and the
# digest tells a blob recompressed on the way (whose key would still match)
# from the one the key made.
LAYERS_LABEL = "org.debchunk.layers"
# The library that compressed the layers this build wrote and its version
# ("zlib-ng 2.3.3", "zlib 1.3.1", "zstd 1.5.7"): installs that compress with
# different libraries write different bytes for the same tree.
COMPRESSOR_LABEL = "org.debchunk.compressor"


@dataclass(frozen=True)
class LayerRecord:
    """What one layer's key made: the blob (digest, size), its diff_id, the
    size of its tar and its number of non-directory entries."""

    key: str
    digest: Digest
    size: int
    diff_id: str
    tar_size: int
    files: int

    def annotation(self) -> str:
        """The ``LAYER_ANNOTATION`` value: ``KEY DIFF_ID TAR_SIZE FILES``."""
        return f"{self.key} {self.diff_id} {self.tar_size} {self.files}"

    def to_json(self) -> list[str | int]:
        """The record's entry in ``LAYERS_LABEL``."""
        return [self.key, self.digest, self.size, self.diff_id, self.tar_size, self.files]


def layer_records(manifest_layers: Sequence[Descriptor], labels: Mapping[str, str]) -> list[LayerRecord]:
    """The layer records of an image: from ``LAYERS_LABEL`` (entries that
    are not records are skipped), and from the ``LAYER_ANNOTATION`` of each
    layer descriptor (its digest and size the descriptor's).  Both may be
    there; a record found twice is given once."""
    found: dict[tuple[str, str], LayerRecord] = {}
    try:
        entries = json_label(labels, LAYERS_LABEL)
    except ValueError:
        entries = None
    for entry in entries if isinstance(entries, list) else []:
        try:
            key, digest, size, diff_id, tar_size, files = entry
            record = LayerRecord(str(key), Digest(digest), int(size), str(diff_id), int(tar_size), int(files))
        except (TypeError, ValueError):
            continue
        found[record.key, record.digest] = record
    for d in manifest_layers:
        try:
            key, diff_id, tar_size, files = d.annotations[LAYER_ANNOTATION].split(" ")
            record = LayerRecord(key, d.digest, d.size, diff_id, int(tar_size), int(files))
        except (KeyError, ValueError):
            continue
        found[record.key, record.digest] = record
    return list(found.values())


@dataclass(frozen=True)
class ComponentInfo:
    """One entry of the ``org.debchunk.components`` label."""

    name: str
    size: int
    change_probability: float
    version: str | None
    digest: str | None
    # The package component this is the data part of (mapping.Component.part_of).
    part_of: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as in the label, with its name."""
        return {
            "name": self.name,
            "size": self.size,
            "change_probability": self.change_probability,
            "version": self.version,
            "digest": self.digest,
            "part_of": self.part_of,
        }


@dataclass(frozen=True)
class ComponentChange:
    """A component added, removed or changed (its digest differs) from OLD to
    NEW.  ``layer``: the 1-based layer of NEW holding it, when asked for and known."""

    name: str
    status: str  # "added", "removed" or "changed"
    old: ComponentInfo | None
    new: ComponentInfo | None
    layer: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Name, status, and each side's version and size."""
        return {
            "name": self.name,
            "status": self.status,
            "old_version": self.old.version if self.old else None,
            "new_version": self.new.version if self.new else None,
            "old_size": self.old.size if self.old else None,
            "new_size": self.new.size if self.new else None,
        }


def json_label(labels: Mapping[str, Any], key: str) -> Any:
    """The label ``key`` parsed as JSON; None when there is no such label.
    Raises ``ValueError`` (``json.JSONDecodeError``) when it is not JSON."""
    value = labels.get(key)
    return None if value is None else json.loads(str(value))


def plan_groups(value: Any, *, names_only: bool = False) -> list[list[str]] | None:
    """A parsed plan label as its groups of component names, one per layer
    after the first; None when it is not a list of lists (with ``names_only``,
    of strings)."""
    if not isinstance(value, list) or not all(
        isinstance(g, list) and (not names_only or all(isinstance(n, str) for n in g)) for g in value
    ):
        return None
    return [[str(n) for n in g] for g in value]


def components_from_label(
    data: Mapping[str, Any], *, lenient: bool = False
) -> tuple[dict[str, ComponentInfo], list[str]]:
    """The entries of a parsed components label by name, and the names of the
    entries left out because they have no valid size and change probability.
    ``lenient``: entries that are not objects are skipped without a word, a
    missing size or probability reads as 0, the probability is clamped to
    [0, 1], and an empty version or digest reads as None."""
    out: dict[str, ComponentInfo] = {}
    bad: list[str] = []
    for name, entry in data.items():
        if lenient and not isinstance(entry, dict):
            continue
        try:
            version, digest, part_of = entry.get("version"), entry.get("digest"), entry.get("part_of")
            if lenient:
                size = int(entry.get("size", 0))
                probability = min(1.0, max(0.0, float(entry.get("change_probability", 0.0))))
                version, digest = version or None, digest or None
            else:
                size, probability = int(entry["size"]), float(entry["change_probability"])
        except (AttributeError, KeyError, TypeError, ValueError):
            bad.append(str(name))
            continue
        out[str(name)] = ComponentInfo(
            str(name),
            size,
            probability,
            None if version is None else str(version),
            None if digest is None else str(digest),
            None if part_of is None else str(part_of),
        )
    return out, bad


def annotation_groups(layers: Sequence[Descriptor]) -> list[tuple[str, ...]]:
    """Component names of each layer, from its ``ostree.components`` annotation."""
    values = (d.annotations.get(COMPONENTS_ANNOTATION, "") for d in layers)
    return [tuple(n for n in v.split(",") if n) for v in values]


def groups_per_layer(
    plan: Sequence[Sequence[str]] | None, layers: Sequence[Descriptor], *, layers_on_top: bool = True
) -> list[tuple[str, ...]]:
    """Component names of each layer: from the plan (``plan_groups``; the first
    layer holds none) when it has one group per layer after the first, or,
    with ``layers_on_top``, fewer (layers added on top of the image, as by a
    derived build, hold none); else from the layers' annotations."""
    count = len(layers)
    if plan is not None and (len(plan) == count - 1 or (layers_on_top and len(plan) < count)):
        return [(), *(tuple(g) for g in plan), *([()] * (count - 1 - len(plan)))]
    return annotation_groups(layers)


def layer_change_probability(names: Sequence[str], components: Mapping[str, ComponentInfo]) -> float | None:
    """A layer's weekly change probability over its components, as the chunker
    counts it (``chunker.cost.Events``: the two parts of a split package share
    their upstream changes); 0 for none, None when one of them is not in
    ``components``."""
    if any(n not in components for n in names):
        return None
    probabilities = np.array([components[n].change_probability for n in names], dtype=np.float64)
    position = {n: k for k, n in enumerate(names)}
    part_of = [position.get(components[n].part_of or "", -1) for n in names]
    return -math.expm1(Events.of(probabilities, part_of).log_keep(range(len(names))))


def component_changes(
    old: Mapping[str, ComponentInfo],
    new: Mapping[str, ComponentInfo],
    layer_of: Mapping[str, int] | None = None,
) -> tuple[ComponentChange, ...]:
    """Components added, removed, or whose digest differs, by name; with
    ``layer_of`` (name -> layer of NEW), each added or changed one's layer."""
    where = layer_of or {}
    out = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            out.append(ComponentChange(name, "added", None, b, where.get(name)))
        elif b is None:
            out.append(ComponentChange(name, "removed", a, None))
        elif a.digest != b.digest:
            out.append(ComponentChange(name, "changed", a, b, where.get(name)))
    return tuple(out)
