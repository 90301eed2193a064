"""``debchunk validate``: is an image what its manifest says it is?

In: an ``IMGREF`` (its blobs in a local OCI layout: ``oci.read.local_layout``;
nothing parsed there, since the documents are what is checked).
Out: a ``Validation``: every problem found, each naming the blob or field at
fault (none when the image is valid), and what was checked.  Checked: each
blob's size and digest against its descriptor; the manifest, config and index
media types; ``oci-layout``, ``index.json``, the manifest and the config against
the OCI image-spec JSON schemas in ``schemas/`` (through ``oci.model``'s
``schema_problems``, the check the readers make too); the config's ``diff_ids``
against the sha256 of each uncompressed layer; and, for ostree-ext images, the
``ostree.final-diffid`` label and the ``ostree.components`` annotations
(against the ``org.debchunk.plan`` label when debchunk wrote the image).
Blobs are streamed, never read whole.  Each problem is one printable line:
what it quotes from the image is escaped (``mapping.errors.show``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mapping.errors import show
from mapping.layers import DECOMPRESSION_ERRORS, Inflater

from ..errors import EncapsulateError
from ..oci.imgref import DEFAULT_REGISTRY, RegistryOptions
from ..oci.labels import (
    COMPONENTS_ANNOTATION,
    OSTREE_COMMIT_LABEL,
    OSTREE_FINAL_DIFFID_LABEL,
    PLAN_LABEL,
    json_label,
    plan_groups,
)
from ..oci.layout import MAX_MANIFEST_BYTES, Layout
from ..oci.model import (
    INDEX_TYPES,
    LAYER_COMPRESSION,
    MEDIA_CONFIG,
    MEDIA_MANIFEST,
    Descriptor,
    Digest,
    ImageIndex,
    schema_problems,
)
from ..oci.platform import DEFAULT_PLATFORM
from ..oci.read import HashingReader, local_layout

# Known media types (OCI image-spec v1.1 "Media Types"; Docker image manifest v2, schema 2).
MANIFEST_TYPES = (MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
CONFIG_TYPES = (MEDIA_CONFIG, "application/vnd.docker.container.image.v1+json")
CHUNK = 1 << 20
# What a damaged compressed stream raises.
DECODE_ERRORS = (EOFError, ValueError, *DECOMPRESSION_ERRORS)


@dataclass
class Validation:
    """The outcome of validating one image."""

    ref: str
    problems: list[str] = field(default_factory=list)
    blobs: int = 0
    layers: int = 0
    size: int = 0

    @property
    def valid(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _short(digest: object) -> str:
    text = str(digest)
    return text[:19] + "…" if len(text) > 19 else text


def _uncompressed(raw: HashingReader, compression: str) -> Iterator[bytes]:
    """The uncompressed bytes of a layer, in chunks of bounded size, through
    the one layer decompressor (``mapping.layers.Inflater``)."""
    inflate = Inflater(compression)
    while block := raw.read(CHUNK):
        yield from inflate.feed(block)
    rest = inflate.finish()
    if rest is None:
        raise EOFError(f"the {compression} stream ends inside a member or frame")
    yield rest


class _Check:
    """One image being validated: problems and counts go to ``out``."""

    def __init__(self, out: Validation, layout: Layout, layers: bool = True) -> None:
        self.out = out
        self.layout = layout
        # Whether layer blobs are streamed (else only their descriptors are checked).
        self.layers = layers

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def descriptor(self, d: Any, what: str, known: tuple[str, ...], kind: str) -> Descriptor | None:
        """Check a raw descriptor's media type, digest and size; the descriptor,
        or None when its blob cannot be looked up."""
        if not isinstance(d, dict):
            self.problem(f"{what}: the descriptor is not a JSON object")
            return None
        media_type, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
        if media_type not in known:
            self.problem(f"{what}: media type {media_type!r} is not a known {kind} type")
        try:
            checked = Digest.parse(digest, what)
        except EncapsulateError:
            self.problem(f"{what}: digest {digest!r} is not a sha256 or sha512 digest")
            return None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            self.problem(f"{what}: size {size!r} is not a byte count")
            return None
        annotations = d.get("annotations")
        urls = d.get("urls")
        return Descriptor(
            str(media_type),
            checked,
            size,
            {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
            tuple(str(u) for u in urls) if isinstance(urls, list) else (),
        )

    def blob(self, d: Descriptor, what: str, compression: str | None = None) -> str | None:
        """Stream a blob through its digest and, with ``compression``, its
        decompressor; a problem for a missing, resized, altered or undecodable
        blob.  Returns the sha256 of the uncompressed content (of the blob
        itself without ``compression``) when the blob is intact, else None."""
        path = self.layout.blob_path(d.digest)
        diff = hashlib.sha256()
        broken = None
        try:
            with open(path, "rb") as f:
                raw = HashingReader(f, d.digest.algorithm)
                try:
                    for chunk in _uncompressed(raw, compression or "none"):
                        diff.update(chunk)
                except DECODE_ERRORS as e:
                    broken = str(e) or type(e).__name__
                raw.drain()
        except FileNotFoundError:
            if d.urls and any(w in d.media_type for w in ("foreign", "nondistributable")):
                return None  # a foreign layer: clients fetch it from its URLs
            self.problem(f"{what}: blob missing from the layout ({path})")
            return None
        except OSError as e:
            self.problem(f"{what}: blob unreadable: {e.strerror or e}")
            return None
        self.out.blobs += 1
        self.out.size += raw.size
        actual = Digest.of_hash(raw.hash)
        if raw.size != d.size and actual == d.digest:
            self.problem(
                f"{what}: the descriptor says {d.size} bytes, the blob (digest matching) is {raw.size}"
            )
        elif raw.size != d.size:
            cut = " (truncated)" if raw.size < d.size else ""
            self.problem(f"{what}: blob is {raw.size} bytes{cut}, the descriptor says {d.size}")
        elif actual != d.digest:
            self.problem(f"{what}: digest mismatch: the blob hashes to {actual}")
        elif broken is not None:
            self.problem(f"{what}: not valid {compression} data: {broken}")
        else:
            return Digest.of_hash(diff)
        return None

    def json_blob(self, d: Descriptor, what: str) -> Any:
        """A small JSON blob (index, manifest or config) checked against its
        descriptor; None when it is damaged."""
        if self.blob(d, what) is None:
            return None
        try:
            return json.loads(self.layout.read_blob(d.digest, MAX_MANIFEST_BYTES))
        except ValueError:
            self.problem(f"{what}: not JSON")
        except EncapsulateError as e:
            self.problem(f"{what}: {e}")
        return None


def _layout_file(check: _Check, name: str) -> Any:
    try:
        with open(os.path.join(check.layout.path, name), "rb") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check.problem(f"{name}: unreadable: {e}")
        return None


def validate_image(ref: str, registry: RegistryOptions = DEFAULT_REGISTRY) -> Validation:
    """Validate the image at ``ref`` (``registry``: how a registry is reached).
    Raises ``EncapsulateError`` only when it cannot be read at all (no such
    image, not an OCI layout)."""
    out = Validation(ref)
    with local_layout(ref, registry) as (layout, tag):
        check = _Check(out, layout)
        _check_layout_files(check)
        _check_image(check, layout.manifest_for(tag))
    # Every problem printable and one line, whatever the image holds.
    out.problems = [show(p) for p in out.problems]
    return out


def validate_documents(path: str) -> Validation:
    """Every image of the OCI layout at ``path`` as ``validate_image`` checks
    it, but its documents only: ``oci-layout``, ``index.json``, each image
    index, manifest and config (digest, size, media type, schema), the count
    of ``diff_ids`` and the ostree labels; layer blobs are not read.  Cheap
    enough for the tests to run on every image they write."""
    out = Validation(f"oci:{path}")
    check = _Check(out, Layout(path, create=False), layers=False)
    index = _check_layout_files(check)
    entries = index.get("manifests") if isinstance(index, dict) else None
    for k, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            _check_image(check, Descriptor.from_json(entry, f"index.json: manifests[{k}]"))
        except EncapsulateError as e:
            check.problem(str(e))
    out.problems = [show(p) for p in out.problems]
    return out


def _check_layout_files(check: _Check) -> Any:
    """``oci-layout`` and ``index.json`` against their schemas; the index as read."""
    index = None
    for name, kind in (("oci-layout", "layout"), ("index.json", "index")):
        document = _layout_file(check, name)
        if document is not None:
            check.out.problems += schema_problems(kind, document, name)
        index = document
    return index


def _chosen_manifests(check: _Check, top: Descriptor) -> list[Descriptor]:
    """The manifests ``top`` names: itself, or of an image index, its
    linux/amd64 entry (each entry, when only the documents are checked)."""
    if top.media_type not in INDEX_TYPES:
        return [top]
    what = f"image index {_short(top.digest)}"
    nested = check.json_blob(top, what)
    if nested is None:
        return []
    check.out.problems += schema_problems("index", nested, what)
    if not isinstance(nested, dict):
        return []
    try:
        index = ImageIndex.from_json(nested, what)
        chosen = (
            [index.choose(DEFAULT_PLATFORM, what)]
            if check.layers
            else [e.descriptor for e in index.manifests]
        )
    except EncapsulateError as e:
        check.problem(str(e))
        return []
    for descriptor in chosen:
        if descriptor.media_type not in MANIFEST_TYPES:
            what = f"manifest {_short(descriptor.digest)}"
            check.problem(f"{what}: media type {descriptor.media_type!r} is not a known manifest type")
    return chosen


def _check_image(check: _Check, entry: Descriptor) -> None:
    """The descriptor chain: index.json's entry -> [image index ->] manifest ->
    config and layers."""
    top = check.descriptor(
        entry.to_json(), f"manifest {_short(entry.digest)}", MANIFEST_TYPES + INDEX_TYPES, "manifest"
    )
    for descriptor in [] if top is None else _chosen_manifests(check, top):
        _check_manifest(check, descriptor)


def _check_manifest(check: _Check, descriptor: Descriptor) -> None:
    """A manifest, its config and its layers."""
    what = f"manifest {_short(descriptor.digest)}"
    manifest = check.json_blob(descriptor, what)
    if manifest is None:
        return
    check.out.problems += schema_problems("manifest", manifest, what)
    if not isinstance(manifest, dict):
        return
    if manifest.get("mediaType", descriptor.media_type) != descriptor.media_type:
        check.problem(
            f"{what}: mediaType {manifest.get('mediaType')!r} differs from its descriptor's "
            f"{descriptor.media_type!r}"
        )
    raw_config = manifest.get("config")
    what = f"config {_short(raw_config.get('digest') if isinstance(raw_config, dict) else None)}"
    config_descriptor = check.descriptor(raw_config, what, CONFIG_TYPES, "config")
    config = None if config_descriptor is None else check.json_blob(config_descriptor, what)
    if config is not None:
        check.out.problems += schema_problems("config", config, what)
    raw_layers = manifest.get("layers")
    raw_layers = raw_layers if isinstance(raw_layers, list) else []
    check.out.layers = len(raw_layers)
    layers: list[Descriptor | None] = []
    diffs: list[str | None] = []
    for i, d in enumerate(raw_layers):
        what = _layer_name(i, raw_layers)
        layer = check.descriptor(d, what, tuple(LAYER_COMPRESSION), "layer")
        diff = None
        if layer is not None and check.layers:
            compression = LAYER_COMPRESSION.get(layer.media_type)
            diff = check.blob(layer, what, compression)
            if compression is None:
                diff = None  # unknown compression: the diff_id cannot be checked
        layers.append(layer)
        diffs.append(diff)
    if isinstance(config, dict):
        _check_diff_ids(check, config, diffs)
        _check_ostree(check, config, layers, raw_layers)


def _layer_name(i: int, layers: list[Any]) -> str:
    d = layers[i]
    return f"layer {i + 1} of {len(layers)} ({_short(d.get('digest') if isinstance(d, dict) else d)})"


def _raw_labels(config: dict[str, Any]) -> dict[str, Any]:
    """The labels of a raw config (empty when they are not an object: the schema reports that)."""
    runtime = config.get("config")
    labels = runtime.get("Labels") if isinstance(runtime, dict) else None
    return labels if isinstance(labels, dict) else {}


def _raw_diff_ids(config: dict[str, Any]) -> list[Any] | None:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return diff_ids if isinstance(diff_ids, list) else None


def _check_diff_ids(check: _Check, config: dict[str, Any], diffs: list[str | None]) -> None:
    diff_ids = _raw_diff_ids(config)
    if diff_ids is None:
        return  # reported by the schema
    if len(diff_ids) != len(diffs):
        check.problem(f"config rootfs.diff_ids: {len(diff_ids)} entries for {len(diffs)} layers")
    for i, (expected, actual) in enumerate(zip(diff_ids, diffs, strict=False)):
        if actual is not None and expected != actual:
            check.problem(
                f"config rootfs.diff_ids[{i}]: {expected}, but layer {i + 1} uncompresses to {actual}"
            )


def _check_ostree(
    check: _Check, config: dict[str, Any], layers: list[Descriptor | None], raw_layers: list[Any]
) -> None:
    """ostree-ext's invariants, and debchunk's plan label against the annotations."""
    labels = _raw_labels(config)
    ostree = OSTREE_COMMIT_LABEL in labels
    diff_ids = _raw_diff_ids(config)
    if ostree:
        commit = str(labels[OSTREE_COMMIT_LABEL])
        if len(commit) != 64 or commit.strip("0123456789abcdef"):
            check.problem(f"config label {OSTREE_COMMIT_LABEL}: {commit!r} is not an ostree commit checksum")
        final = labels.get(OSTREE_FINAL_DIFFID_LABEL)
        last = diff_ids[-1] if diff_ids else None
        if final is None:
            check.problem(
                f"config: no {OSTREE_FINAL_DIFFID_LABEL} label in an ostree image "
                f"({OSTREE_COMMIT_LABEL} is set)"
            )
        elif final != last:
            check.problem(
                f"config label {OSTREE_FINAL_DIFFID_LABEL}: {final}, but the last diff_id is {last}"
            )
    plan: list[list[str]] | None = None
    if PLAN_LABEL in labels:
        try:
            plan = plan_groups(json_label(labels, PLAN_LABEL))
        except ValueError:
            plan = None
        if plan is None:
            check.problem(f"config label {PLAN_LABEL}: not a JSON list of component lists")
        elif len(plan) != len(layers) - 1:
            check.problem(
                f"config label {PLAN_LABEL}: {len(plan)} component layers, the manifest has "
                f"{max(0, len(layers) - 1)} after the first"
            )
            plan = None
    for i, d in enumerate(layers[1:], 1):
        if d is None:
            continue
        value = d.annotations.get(COMPONENTS_ANNOTATION)
        what = _layer_name(i, raw_layers)
        if value is None:
            if ostree:
                check.problem(f"{what}: no {COMPONENTS_ANNOTATION} annotation in an ostree image")
            continue
        if plan is not None and sorted(value.split(",")) != sorted(plan[i - 1]):
            check.problem(
                f"{what}: annotation {COMPONENTS_ANNOTATION}={value!r:.80} disagrees with the "
                f"{PLAN_LABEL} label ({','.join(plan[i - 1])!r:.80})"
            )
