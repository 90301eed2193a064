"""``debchunk validate``: is an image what its manifest says it is?

In: an ``IMGREF`` (read with ``open_image``, blobs in a local OCI layout).
Out: a ``Validation``: every problem found, each naming the blob or field at
fault (none when the image is valid), and what was checked.  Checked: each
blob's size and digest against its descriptor; the manifest, config and index
media types; ``oci-layout``, ``index.json``, the manifest and the config against
the OCI image-spec JSON schemas in ``schemas/``; the config's ``diff_ids``
against the sha256 of each uncompressed layer; and, for ostree-ext images, the
``ostree.final-diffid`` label and the ``ostree.components`` annotations
(against the ``org.debchunk.plan`` label when debchunk wrote the image).
Blobs are streamed, never read whole.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeGuard, cast

import zstandard
from zlib_ng import gzip_ng, zlib_ng

from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_ANNOTATION,
    PLAN_LABEL,
    component_annotation,
    config_labels,
    json_label,
    plan_groups,
)
from ..oci.layout import LAYER_COMPRESSION, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, Layout
from ..oci.read import DEFAULT_ARCH, HashingReader, choose_manifest, open_image

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

# Known media types (OCI image-spec v1.1 "Media Types"; Docker image manifest v2, schema 2).
MANIFEST_TYPES = (MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
INDEX_TYPES = (MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
CONFIG_TYPES = (MEDIA_CONFIG, "application/vnd.docker.container.image.v1+json")
# Layer media type -> compression.
# Blob digest algorithms -> length of their hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
SCHEMAS = ("defs", "layout", "index", "manifest", "config")
CHUNK = 1 << 20
# What a damaged compressed stream raises (zlib_ng's stub declares its error as an instance).
DECODE_ERRORS = (
    EOFError,
    ValueError,
    gzip_ng.BadGzipFile,
    cast("type[Exception]", zlib_ng.error),
    zstandard.ZstdError,
)
# zstd input fed per call: a frame can expand ~32,000x, so this bounds the
# memory one call's output takes (to ~128 MiB).
ZSTD_STEP = 1 << 12


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


@functools.cache
def _validators() -> dict[str, Validator]:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {
        name: json.loads(
            resources.files("encapsulate").joinpath("schemas", f"{name}.json").read_text("utf-8")
        )
        for name in SCHEMAS
    }
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    return {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


def schema_problems(kind: str, document: Any, what: str) -> list[str]:
    """``document`` checked against the schema ``kind`` (``layout``, ``index``,
    ``manifest``, ``config``): one problem per violation, naming the field."""
    from jsonschema.exceptions import best_match

    out = []
    for error in sorted(_validators()[kind].iter_errors(document), key=lambda e: list(map(str, e.path))):
        # anyOf/oneOf: report the alternative that came closest.
        deepest = best_match(error.context) if error.context else error
        if deepest is None:
            deepest = error
        where = "/".join(str(p) for p in deepest.absolute_path) or "top level"
        message = deepest.message if len(deepest.message) <= 160 else deepest.message[:159] + "…"
        out.append(f"{what}: does not follow the OCI {kind} schema at {where}: {message}")
    return out


def _short(digest: object) -> str:
    text = str(digest)
    return text[:19] + "…" if len(text) > 19 else text


def _uncompressed(raw: HashingReader, compression: str) -> Iterator[bytes]:
    """The uncompressed bytes of a layer, in chunks of bounded size."""
    if compression == "gzip":
        with gzip_ng.GzipFile(fileobj=raw, mode="rb") as gz:  # type: ignore[no-untyped-call]
            while chunk := gz.read(CHUNK):
                yield chunk
    elif compression == "zstd":
        dctx = zstandard.ZstdDecompressor()
        d = dctx.decompressobj()
        while data := raw.read(CHUNK):
            view = memoryview(data)
            while view:
                if d.eof:  # another frame follows
                    d = dctx.decompressobj()
                piece, view = view[:ZSTD_STEP], view[ZSTD_STEP:]
                yield d.decompress(piece)
                if d.eof and d.unused_data:
                    view = memoryview(d.unused_data + bytes(view))
        if not d.eof:
            raise EOFError("the zstd stream ends inside a frame")
    else:
        while chunk := raw.read(CHUNK):
            yield chunk


class _Check:
    """One image being validated: problems and counts go to ``out``."""

    def __init__(self, out: Validation, layout: Layout) -> None:
        self.out = out
        self.layout = layout

    def problem(self, text: str) -> None:
        self.out.problems.append(text)

    def descriptor(self, d: Any, what: str, known: tuple[str, ...], kind: str) -> TypeGuard[dict[str, Any]]:
        """Check a descriptor's media type, digest and size; False when its blob
        cannot be looked up."""
        if not isinstance(d, dict):
            self.problem(f"{what}: the descriptor is not a JSON object")
            return False
        media_type = d.get("mediaType")
        if media_type not in known:
            self.problem(f"{what}: media type {media_type!r} is not a known {kind} type")
        digest, size = d.get("digest"), d.get("size")
        algorithm, _, hexdigest = str(digest).partition(":")
        if (
            not isinstance(digest, str)
            or ALGORITHMS.get(algorithm) != len(hexdigest)
            or hexdigest.strip("0123456789abcdef")
        ):
            self.problem(f"{what}: digest {digest!r} is not a sha256 or sha512 digest")
            return False
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            self.problem(f"{what}: size {size!r} is not a byte count")
            return False
        return True

    def blob(self, d: dict[str, Any], what: str, compression: str | None = None) -> str | None:
        """Stream a blob through its digest and, with ``compression``, its
        decompressor; a problem for a missing, resized, altered or undecodable
        blob.  Returns the sha256 of the uncompressed content (of the blob
        itself without ``compression``) when the blob is intact, else None."""
        digest, size = str(d["digest"]), int(d["size"])
        algorithm, _, hexdigest = digest.partition(":")
        path = os.path.join(self.layout.path, "blobs", algorithm, hexdigest)
        diff = hashlib.sha256()
        broken = None
        try:
            with open(path, "rb") as f:
                raw = HashingReader(f, algorithm)
                try:
                    for chunk in _uncompressed(raw, compression or "none"):
                        diff.update(chunk)
                except DECODE_ERRORS as e:
                    broken = str(e) or type(e).__name__
                raw.drain()
        except FileNotFoundError:
            if d.get("urls") and any(w in str(d.get("mediaType")) for w in ("foreign", "nondistributable")):
                return None  # a foreign layer: clients fetch it from its URLs
            self.problem(f"{what}: blob missing from the layout ({path})")
            return None
        except OSError as e:
            self.problem(f"{what}: blob unreadable: {e.strerror or e}")
            return None
        self.out.blobs += 1
        self.out.size += raw.size
        actual = f"{algorithm}:{raw.hash.hexdigest()}"
        if raw.size != size and actual == digest:
            self.problem(
                f"{what}: the descriptor says {size} bytes, the blob (digest matching) is {raw.size}"
            )
        elif raw.size != size:
            cut = " (truncated)" if raw.size < size else ""
            self.problem(f"{what}: blob is {raw.size} bytes{cut}, the descriptor says {size}")
        elif actual != digest:
            self.problem(f"{what}: digest mismatch: the blob hashes to {actual}")
        elif broken is not None:
            self.problem(f"{what}: not valid {compression} data: {broken}")
        else:
            return "sha256:" + diff.hexdigest()
        return None

    def json_blob(self, d: dict[str, Any], what: str) -> Any:
        """A small JSON blob (index, manifest or config) checked against its
        descriptor; None when it is damaged."""
        if self.blob(d, what) is None:
            return None
        try:
            return json.loads(self.layout.read_blob(str(d["digest"])))
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


def validate_image(ref: str, tls_verify: bool | None = None) -> Validation:
    """Validate the image at ``ref`` (``tls_verify=False``: read a registry over
    plain HTTP).  Raises ``EncapsulateError`` only when it cannot be read at
    all (no such image, not an OCI layout)."""
    out = Validation(ref)
    with open_image(ref, blobs=True, tls_verify=tls_verify) as image:
        if image.layout is None:  # blobs=True always gives a layout
            raise EncapsulateError(f"{ref}: the image's blobs could not be fetched")
        check = _Check(out, image.layout)
        for name, kind in (("oci-layout", "layout"), ("index.json", "index")):
            document = _layout_file(check, name)
            if document is not None:
                out.problems += schema_problems(kind, document, name)
        _check_image(check, image.layout.manifest_for(image.tag).to_json(), image.config)
    return out


def _check_image(check: _Check, top: dict[str, Any], config: dict[str, Any]) -> None:
    """The descriptor chain: index.json's entry -> [image index ->] manifest ->
    config and layers."""
    what = f"manifest {_short(top['digest'])}"
    if not check.descriptor(top, what, MANIFEST_TYPES + INDEX_TYPES, "manifest"):
        return
    descriptor: Any = top
    if top["mediaType"] in INDEX_TYPES:
        what = f"image index {_short(top['digest'])}"
        nested = check.json_blob(top, what)
        if nested is None:
            return
        check.out.problems += schema_problems("index", nested, what)
        try:
            descriptor = choose_manifest(nested, DEFAULT_ARCH, what) if isinstance(nested, dict) else None
        except EncapsulateError as e:
            check.problem(str(e))
            return
        what = f"manifest {_short((descriptor or {}).get('digest'))}"
        if not check.descriptor(descriptor, what, MANIFEST_TYPES, "manifest"):
            return
    manifest = check.json_blob(descriptor, what)
    if manifest is None:
        return
    check.out.problems += schema_problems("manifest", manifest, what)
    if not isinstance(manifest, dict):
        return
    if manifest.get("mediaType", descriptor["mediaType"]) != descriptor["mediaType"]:
        check.problem(
            f"{what}: mediaType {manifest.get('mediaType')!r} differs from its descriptor's "
            f"{descriptor['mediaType']!r}"
        )
    config_descriptor = manifest.get("config")
    what = (
        f"config {_short(config_descriptor.get('digest') if isinstance(config_descriptor, dict) else None)}"
    )
    if check.descriptor(config_descriptor, what, CONFIG_TYPES, "config"):
        document = check.json_blob(config_descriptor, what)
        if document is not None:
            check.out.problems += schema_problems("config", document, what)
    layers = manifest.get("layers")
    layers = layers if isinstance(layers, list) else []
    check.out.layers = len(layers)
    diffs: list[str | None] = []
    for i, d in enumerate(layers):
        what = _layer_name(i, layers)
        diff = None
        if check.descriptor(d, what, tuple(LAYER_COMPRESSION), "layer"):
            compression = LAYER_COMPRESSION.get(d["mediaType"])
            diff = check.blob(d, what, compression)
            if compression is None:
                diff = None  # unknown compression: the diff_id cannot be checked
        diffs.append(diff)
    _check_diff_ids(check, config, diffs)
    _check_ostree(check, config, layers)


def _layer_name(i: int, layers: list[Any]) -> str:
    d = layers[i]
    return f"layer {i + 1} of {len(layers)} ({_short(d.get('digest') if isinstance(d, dict) else d)})"


def _check_diff_ids(check: _Check, config: dict[str, Any], diffs: list[str | None]) -> None:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        return  # reported by the schema
    if len(diff_ids) != len(diffs):
        check.problem(f"config rootfs.diff_ids: {len(diff_ids)} entries for {len(diffs)} layers")
    for i, (expected, actual) in enumerate(zip(diff_ids, diffs, strict=False)):
        if actual is not None and expected != actual:
            check.problem(
                f"config rootfs.diff_ids[{i}]: {expected}, but layer {i + 1} uncompresses to {actual}"
            )


def _check_ostree(check: _Check, config: dict[str, Any], layers: list[Any]) -> None:
    """ostree-ext's invariants, and debchunk's plan label against the annotations."""
    labels = config_labels(config)  # labels that are not an object: reported by the schema
    ostree = "ostree.commit" in labels
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if ostree:
        commit = str(labels["ostree.commit"])
        if len(commit) != 64 or commit.strip("0123456789abcdef"):
            check.problem(f"config label ostree.commit: {commit!r} is not an ostree commit checksum")
        final = labels.get("ostree.final-diffid")
        last = diff_ids[-1] if isinstance(diff_ids, list) and diff_ids else None
        if final is None:
            check.problem("config: no ostree.final-diffid label in an ostree image (ostree.commit is set)")
        elif final != last:
            check.problem(f"config label ostree.final-diffid: {final}, but the last diff_id is {last}")
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
        if not isinstance(d, dict):
            continue
        value = component_annotation(d)
        what = _layer_name(i, layers)
        if value is None:
            if ostree:
                check.problem(f"{what}: no {COMPONENTS_ANNOTATION} annotation in an ostree image")
            continue
        if plan is not None and sorted(str(value).split(",")) != sorted(plan[i - 1]):
            check.problem(
                f"{what}: annotation {COMPONENTS_ANNOTATION}={value!r:.80} disagrees with the "
                f"{PLAN_LABEL} label ({','.join(plan[i - 1])!r:.80})"
            )
