"""What an image holds, and what a client holding one image downloads to get another.

In: image references (any ``IMGREF``, read through ``encapsulate.source``).
Out: ``ImageInfo`` (per layer: digest, compressed and uncompressed size, file
count, components, weekly change probability; the image's expected update
bytes) and ``ImageDiff`` (layers reused and new, bytes to download, components
changed), their JSON and tables: the ``debchunk inspect`` and ``debchunk diff``
commands.

Components come from the labels debchunk writes (``org.debchunk.plan``: the
components of each layer after the first; ``org.debchunk.components``: each
component's size, change probability, version and digest), else from the
layers' ``ostree.components`` annotations, all read by ``encapsulate.labels``.
Any other image is described by its manifest and, when its blobs are at hand
(``oci:``, ``oci-archive:``, or fetched), by its layers: each is streamed once
through gzip or zstd and tar, never unpacked to disk, and its compressed bytes
are checked against the manifest's digest and size.  Sizes of components are bytes of distinct content
(``mapping.Component.size``), the unit of the planner and of
``benches.update_cost``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import zstandard
from zlib_ng import gzip_ng, zlib_ng

from ..cli.options import common_options, print_json, tls_verify_option
from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_LABEL,
    PLAN_LABEL,
    ComponentChange,
    ComponentInfo,
    component_changes,
    components_from_label,
    config_labels,
    groups_per_layer,
    json_label,
    layer_change_probability,
    plan_groups,
)
from ..oci.read import HashingReader, SourceImage, open_image

# Transports whose blobs are on this machine; the others are read through skopeo.
LOCAL_TRANSPORTS = ("oci", "oci-archive")
# Components named per layer: in JSON, and in the text table.
TOP_COMPONENTS = 5
TOP_COMPONENTS_TEXT = 3
_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DECOMPRESSION_ERRORS = (OSError, zlib.error, zstandard.ZstdError, cast(type[Exception], zlib_ng.error))


@dataclass(frozen=True)
class LayerScan:
    """What streaming a layer found: the size of its tar, its non-directory
    entries and, when asked for, the sha256 -> size of its regular files."""

    uncompressed_size: int
    files: int
    contents: dict[str, int]


@dataclass(frozen=True)
class LayerInfo:
    """One layer.  ``components`` are largest first.  ``content_size`` (the sum
    of its components' sizes) and ``change_probability`` are None when the
    image does not record them; ``scan`` is None when the layer was not read."""

    index: int
    digest: str
    media_type: str
    size: int
    diff_id: str | None
    components: tuple[str, ...]
    content_size: int | None
    change_probability: float | None
    scan: LayerScan | None

    @property
    def expected_update_bytes(self) -> float | None:
        """``content_size * change_probability``: this layer's share of an average update."""
        if self.content_size is None or self.change_probability is None:
            return None
        return self.content_size * self.change_probability


@dataclass(frozen=True)
class ImageInfo:
    """An image read back: its layers and what its labels say about them."""

    ref: str
    manifest_digest: str
    config_digest: str
    debchunk: bool
    layers: tuple[LayerInfo, ...]
    components: dict[str, ComponentInfo]
    layers_read: bool

    @property
    def size(self) -> int:
        """Compressed size of the layers, each distinct blob once."""
        return sum({layer.digest: layer.size for layer in self.layers}.values())

    @property
    def expected_update_bytes(self) -> float | None:
        """``sum content_size(L) * p_L`` over the layers holding components (the
        directories or commit layer holds none), as ``debchunk plan`` counts it;
        None when a component's size or probability is not recorded."""
        held = [layer for layer in self.layers if layer.components]
        if not held or any(layer.expected_update_bytes is None for layer in held):
            return None
        return sum(layer.expected_update_bytes or 0.0 for layer in held)

    def to_json(self) -> dict[str, Any]:
        """The shape of ``debchunk inspect --json``."""
        scans = [layer.scan for layer in self.layers]
        read = all(s is not None for s in scans)
        return {
            "image": self.ref,
            "manifest": self.manifest_digest,
            "config": self.config_digest,
            "debchunk": self.debchunk,
            "layers": [_layer_json(layer, self.components) for layer in self.layers],
            "layers_read": self.layers_read,
            "size": self.size,
            "uncompressed_size": sum(s.uncompressed_size for s in scans if s) if read else None,
            "files": sum(s.files for s in scans if s) if read else None,
            "components": len(self.components) if self.components else None,
            "expected_update_bytes": self.expected_update_bytes,
        }


def _layer_json(layer: LayerInfo, components: dict[str, ComponentInfo]) -> dict[str, Any]:
    top = layer.components[:TOP_COMPONENTS]
    rest = layer.components[TOP_COMPONENTS:]
    return {
        "digest": layer.digest,
        "media_type": layer.media_type,
        "size": layer.size,
        "diff_id": layer.diff_id,
        "uncompressed_size": layer.scan.uncompressed_size if layer.scan else None,
        "files": layer.scan.files if layer.scan else None,
        "content_size": layer.content_size,
        "components": [
            components[n].to_json() if n in components else {"name": n, "size": None} for n in top
        ],
        "other_components": len(rest),
        "other_components_size": sum(components[n].size for n in rest if n in components),
        "change_probability": layer.change_probability,
        "expected_update_bytes": layer.expected_update_bytes,
    }


# Reading labels and manifests


def _json_label(image: SourceImage, key: str) -> Any:
    try:
        return json_label(config_labels(image.config), key)
    except ValueError:
        raise EncapsulateError(
            f"{image.ref}: label {key} is not JSON; the image is damaged: build it again"
        ) from None


def read_components(image: SourceImage) -> dict[str, ComponentInfo]:
    """The image's ``org.debchunk.components`` label (empty when absent)."""
    data = _json_label(image, COMPONENTS_LABEL)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EncapsulateError(
            f"{image.ref}: label {COMPONENTS_LABEL} is not a JSON object; "
            "the image is damaged: build it again"
        )
    components, bad = components_from_label(data)
    if bad:
        raise EncapsulateError(
            f"{image.ref}: label {COMPONENTS_LABEL}: component {bad[0]!r} has no valid size and "
            "change_probability; the image is damaged: build it again"
        )
    return components


def layer_groups(image: SourceImage) -> list[tuple[str, ...]]:
    """Component names of each layer: from the plan label (the first layer holds
    none; layers added on top of the image, as by a derived build, hold none),
    else from the layers' ``ostree.components`` annotations."""
    value = _json_label(image, PLAN_LABEL)
    plan = None if value is None else plan_groups(value, names_only=True)
    if value is not None and plan is None:
        raise EncapsulateError(
            f"{image.ref}: label {PLAN_LABEL} is not a list of lists of names; "
            "the image is damaged: build it again"
        )
    return groups_per_layer(plan, image.layers)


def _descriptors(image: SourceImage) -> list[tuple[str, str, int]]:
    """(digest, media type, size) of each layer, checked."""
    out = []
    for k, d in enumerate(image.layers, 1):
        try:
            digest, size = d["digest"], int(d["size"])
        except (KeyError, TypeError, ValueError):
            raise EncapsulateError(
                f"{image.ref}: layer {k} of the manifest has no valid digest and size; the image is damaged"
            ) from None
        if not isinstance(digest, str) or size < 0:
            raise EncapsulateError(f"{image.ref}: layer {k} of the manifest has a malformed descriptor")
        out.append((digest, str(d.get("mediaType", "")), size))
    return out


def _diff_ids(image: SourceImage) -> list[str | None]:
    rootfs = image.config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    ids = ids if isinstance(ids, list) else []
    return [str(ids[k]) if k < len(ids) else None for k in range(len(image.layers))]


# Streaming layers


class _Tar:
    """A layer's tar stream, counted.  Past its end it reads as up to
    ``TAIL`` zero bytes more, so that a tar without its end-of-archive blocks
    or its last padding (umoci 0.4 writes them so) reads to its end, as
    container runtimes read it; those bytes are not counted."""

    TAIL = 1536

    def __init__(self, source: Any) -> None:
        self._source = source
        self._tail = self.TAIL
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._source.read(n if n >= 0 else _BLOCK)
        if data:
            self.size += len(data)
            return data
        k = min(n if n >= 0 else self._tail, self._tail)
        self._tail -= k
        return bytes(k)

    def drain(self) -> None:
        """Read what is left."""
        while data := self._source.read(_BLOCK):
            self.size += len(data)


def _decompressor(head: bytes, raw: HashingReader) -> Any:
    """A reader of the layer's tar: compression told by its first bytes, as
    container runtimes do (media types of Docker images do not say)."""
    if head.startswith(_GZIP_MAGIC):
        return gzip_ng.GzipNGFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    if head.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, raw), read_across_frames=True)
    return raw


def _mismatch(found_size: int, found: str, digest: str, size: int) -> str | None:
    """What is wrong with a blob of ``found_size`` bytes and digest ``found``, if anything."""
    if found_size < size:
        return f"truncated: {found_size} of {size} bytes"
    if found_size != size or found != digest:
        return f"its {found_size} bytes have digest {found}, not the manifest's {size} bytes"
    return None


def _blob_fault(image: SourceImage, digest: str, size: int) -> str | None:
    h = hashlib.sha256()
    n = 0
    with image.open_blob(digest) as f:
        while block := f.read(_BLOCK):
            h.update(block)
            n += len(block)
    return _mismatch(n, "sha256:" + h.hexdigest(), digest, size)


def scan_layer(
    image: SourceImage, index: int, digest: str, size: int, want: Callable[[int], bool] | None = None
) -> LayerScan:
    """Stream layer ``index`` (1-based) of ``image``: the size of its tar and its
    non-directory entries; with ``want``, the sha256 of each regular file whose
    size it accepts.  The blob must match ``digest`` and ``size``."""
    where = f"{image.ref}: layer {index} ({digest})"
    if image.layout is not None and not os.path.exists(image.layout.blob_path(digest)):
        raise EncapsulateError(f"{where}: the blob is missing; fetch or build the image again")
    contents: dict[str, int] = {}
    files = 0
    try:
        with image.open_blob(digest) as blob:
            head = blob.read(4)
            blob.seek(0)
            raw = HashingReader(blob)
            tar_stream = _Tar(_decompressor(head, raw))
            with tarfile.open(
                fileobj=cast(BinaryIO, tar_stream), mode="r|", encoding="utf-8", errors="surrogateescape"
            ) as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    files += 1
                    if want is not None and member.isreg() and want(member.size):
                        content = tar.extractfile(member)
                        if content is None:
                            continue
                        h = hashlib.sha256()
                        while block := content.read(_BLOCK):
                            h.update(block)
                        contents.setdefault(h.hexdigest(), member.size)
            tar_stream.drain()
            raw.drain()
    except (*_DECOMPRESSION_ERRORS, EOFError, tarfile.TarError) as e:
        # Bytes that are not the manifest's explain the failure best.
        what = "not a readable tar" if isinstance(e, tarfile.TarError) else "cannot decompress it"
        fault = _blob_fault(image, digest, size) or f"{what} ({e})"
        raise EncapsulateError(f"{where}: {fault}; the image is damaged: fetch or build it again") from None
    mismatch = _mismatch(raw.size, "sha256:" + raw.hash.hexdigest(), digest, size)
    if mismatch is not None:
        raise EncapsulateError(f"{where}: {mismatch}; the image is damaged: fetch or build it again")
    return LayerScan(tar_stream.size, files, contents)


# inspect


def _reads_blobs(ref: str, fetch: bool, read_layers: bool) -> bool:
    return read_layers and (ref.partition(":")[0] in LOCAL_TRANSPORTS or fetch)


def _check_layout(ref: str) -> None:
    """For ``oci:DIR``, an error that says what to give when DIR is not a layout."""
    transport, _, rest = ref.partition(":")
    if transport != "oci":
        return
    path = rest.partition(":")[0]
    if not os.path.exists(path):
        raise EncapsulateError(f"{ref}: no such directory; give an OCI image layout as oci:DIR[:TAG]")
    if not os.path.isfile(os.path.join(path, "oci-layout")):
        raise EncapsulateError(
            f"{ref}: {path} is not an OCI image layout (no oci-layout file); give a directory written by "
            "container-encapsulate, skopeo or umoci"
        )


def describe(image: SourceImage, read_layers: bool = True) -> ImageInfo:
    """The layers of an opened image; with ``read_layers`` (and its blobs at
    hand) each layer is streamed to count its files and uncompressed size."""
    descriptors = _descriptors(image)
    labels = config_labels(image.config)
    components = read_components(image)
    groups = layer_groups(image)
    diff_ids = _diff_ids(image)
    read = read_layers and image.layout is not None
    scans: dict[str, LayerScan] = {}
    layers = []
    for k, (digest, media_type, size) in enumerate(descriptors):
        if read and digest not in scans:
            scans[digest] = scan_layer(image, k + 1, digest, size)
        names = sorted(groups[k], key=lambda n: (-(components[n].size if n in components else -1), n))
        known = bool(names) and all(n in components for n in names)
        layers.append(
            LayerInfo(
                k + 1,
                digest,
                media_type,
                size,
                diff_ids[k],
                tuple(names),
                sum(components[n].size for n in names) if known else None,
                layer_change_probability(names, components) if names else None,
                scans.get(digest),
            )
        )
    return ImageInfo(
        image.ref,
        image.manifest_digest,
        str((image.manifest.get("config") or {}).get("digest", "")),
        PLAN_LABEL in labels or COMPONENTS_LABEL in labels,
        tuple(layers),
        components,
        read,
    )


def inspect_image(
    ref: str, *, fetch: bool = False, read_layers: bool = True, tls_verify: bool | None = None
) -> ImageInfo:
    """Read and describe the image at ``ref``.  Layers are streamed when they are
    local (``oci:``, ``oci-archive:``) or, with ``fetch``, after skopeo copied
    them to a temporary directory; ``read_layers=False`` reads the manifest and
    config only."""
    _check_layout(ref)
    with open_image(ref, blobs=_reads_blobs(ref, fetch, read_layers), tls_verify=tls_verify) as image:
        return describe(image, read_layers)


# diff


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

    old: ImageInfo
    new: ImageInfo
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


def ideal_bytes(old: SourceImage, old_info: ImageInfo, new: SourceImage, new_info: ImageInfo) -> int:
    """File content of NEW found nowhere in OLD: NEW's new layers are streamed
    and each regular file hashed, then every layer of OLD, hashing only files
    of a size found among NEW's (each distinct blob streamed once)."""
    have = {layer.digest for layer in old_info.layers}
    fresh: dict[str, int] = {}
    done: set[str] = set()
    for layer in new_info.layers:
        if layer.digest in have or layer.digest in done:
            continue
        done.add(layer.digest)
        scan = scan_layer(new, layer.index, layer.digest, layer.size, want=lambda _: True)
        for digest, size in scan.contents.items():
            fresh.setdefault(digest, size)
    if not fresh:
        return 0
    sizes = set(fresh.values())
    done.clear()
    for layer in old_info.layers:
        if layer.digest in done:
            continue
        done.add(layer.digest)
        scan = scan_layer(old, layer.index, layer.digest, layer.size, want=sizes.__contains__)
        for digest in scan.contents:
            fresh.pop(digest, None)
    return sum(fresh.values())


def compare(old: SourceImage, new: SourceImage, read_layers: bool = True) -> ImageDiff:
    """What a client holding ``old`` downloads to get ``new``."""
    old_info, new_info = describe(old, False), describe(new, False)
    have = {layer.digest for layer in old_info.layers}
    reused = tuple(layer.digest in have for layer in new_info.layers)
    blobs = {layer.digest: layer for layer in new_info.layers}
    fresh = [layer for digest, layer in blobs.items() if digest not in have]
    content: int | None = None
    if new_info.components:
        content = sum(
            new_info.components[n].size
            for layer in fresh
            for n in layer.components
            if n in new_info.components
        )
    ideal: int | None = 0 if not fresh else None
    if fresh and read_layers and old.layout is not None and new.layout is not None:
        ideal = ideal_bytes(old, old_info, new, new_info)
    changes = None
    if old_info.components and new_info.components:
        changes = component_changes(old_info.components, new_info.components)
    return ImageDiff(
        old_info,
        new_info,
        reused,
        sum(layer.size for layer in fresh),
        sum(layer.size for layer in blobs.values()),
        content,
        ideal,
        changes,
    )


def diff_images(
    old_ref: str,
    new_ref: str,
    *,
    fetch: bool = False,
    read_layers: bool = True,
    tls_verify: bool | None = None,
) -> ImageDiff:
    """Read both images and compare them.  ``ideal_bytes`` needs both images'
    layers (local, or fetched with ``fetch``) and costs a pass over NEW's new
    layers and all of OLD's: time in proportion to their uncompressed size;
    ``read_layers=False`` skips it."""
    _check_layout(old_ref)
    _check_layout(new_ref)
    with (
        open_image(old_ref, blobs=_reads_blobs(old_ref, fetch, read_layers), tls_verify=tls_verify) as old,
        open_image(new_ref, blobs=_reads_blobs(new_ref, fetch, read_layers), tls_verify=tls_verify) as new,
    ):
        return compare(old, new, read_layers)


# Text


def _table(rows: Sequence[Sequence[str]], left: Iterable[int]) -> list[str]:
    """Rows as aligned columns; columns in ``left`` are left-aligned, the others right."""
    left = set(left)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def _short_digest(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:TOP_COMPONENTS_TEXT])
    more = len(names) - TOP_COMPONENTS_TEXT
    return (shown + (f" +{more}" if more > 0 else "")) or "-"


def _how_to_read(ref: str) -> str:
    return "drop --no-layers" if ref.partition(":")[0] in LOCAL_TRANSPORTS else "pass --fetch"


def format_inspect(info: ImageInfo) -> str:
    """The image as a table, one row per layer."""
    from ..cli.render import human_size

    def size(n: float | None) -> str:
        return "-" if n is None else human_size(n)

    rows = [("LAYER", "DIGEST", "SIZE", "UNPACKED", "FILES", "CONTENT", "P(WEEK)", "E(BYTES)", "COMPONENTS")]
    for layer in info.layers:
        scan = layer.scan
        p = layer.change_probability
        rows.append(
            (
                str(layer.index),
                _short_digest(layer.digest),
                human_size(layer.size),
                size(scan.uncompressed_size if scan else None),
                "-" if scan is None else str(scan.files),
                size(layer.content_size),
                "-" if p is None else f"{p:.3f}",
                size(layer.expected_update_bytes),
                _names(layer.components),
            )
        )
    lines = [f"{info.ref}: {info.manifest_digest}", *_table(rows, (1, 8)), ""]
    summary = f"{len(info.layers)} layers, {human_size(info.size)}"
    if info.layers_read:
        scans = [layer.scan for layer in info.layers if layer.scan]
        summary += f" ({human_size(sum(s.uncompressed_size for s in scans))} unpacked, "
        summary += f"{sum(s.files for s in scans)} files)"
    if info.components:
        summary += f"; {len(info.components)} components"
    expected = info.expected_update_bytes
    if expected is not None:
        summary += f"; expected update {human_size(expected)} per week"
    elif not info.debchunk:
        summary += "; not written by debchunk: no components or change probabilities"
    lines.append(summary)
    if not info.layers_read:
        lines.append(f"layers not read: {_how_to_read(info.ref)} to count files and uncompressed sizes")
    return "\n".join(lines)


def format_diff(d: ImageDiff) -> str:
    """NEW's layers, reused or new, and what the update costs."""
    from ..cli.render import human_size

    rows = [("LAYER", "DIGEST", "SIZE", "STATUS", "COMPONENTS")]
    for layer, reused in zip(d.new.layers, d.reused, strict=True):
        rows.append(
            (
                str(layer.index),
                _short_digest(layer.digest),
                human_size(layer.size),
                "reused" if reused else "new",
                _names(layer.components),
            )
        )
    new_count = len(d.reused) - sum(d.reused)
    lines = [f"{d.old.ref} -> {d.new.ref}", *_table(rows, (1, 3, 4)), ""]
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
        remote = d.new.ref if d.new.ref.partition(":")[0] not in LOCAL_TRANSPORTS else d.old.ref
        extra.append(f"ideal unknown: layers not read ({_how_to_read(remote)})")
    if extra:
        lines.append("; ".join(extra))
    if d.changes is not None:
        by = {s: [c for c in d.changes if c.status == s] for s in ("changed", "added", "removed")}
        parts = []
        for status, items in by.items():
            if items:
                shown = ", ".join(
                    f"{c.name} {c.old.version} -> {c.new.version}"
                    if status == "changed" and c.old and c.new and c.old.version != c.new.version
                    else c.name
                    for c in items[:10]
                )
                parts.append(f"{status} {len(items)}: {shown}" + (" ..." if len(items) > 10 else ""))
        lines.append("components: " + ("; ".join(parts) if parts else "none changed"))
    return "\n".join(lines)


# Command line


def _cmd_inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    info = inspect_image(
        args.imgref, fetch=args.fetch, read_layers=not args.no_layers, tls_verify=args.tls_verify
    )
    if args.json:
        print_json(info.to_json())
    else:
        print(format_inspect(info))
    return 0


def _cmd_diff(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    result = diff_images(
        args.old, args.new, fetch=args.fetch, read_layers=not args.no_layers, tls_verify=args.tls_verify
    )
    if args.json:
        print_json(result.to_json())
    else:
        print(format_diff(result))
    return 0


def _layer_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--fetch",
        action="store_true",
        help="copy the layers of images read through skopeo (registry:, docker://, docker-archive:, "
        f"containers-storage:) to a temporary directory, to {what}",
    )
    p.add_argument("--no-layers", action="store_true", help=f"read manifests and configs only: do not {what}")
    tls_verify_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    """Add ``inspect`` and ``diff`` to the ``debchunk`` subcommands."""
    p = sub.add_parser(
        "inspect",
        help="show an image's layers, sizes, components and expected update bytes",
        description="Show the layers of an image: digest, compressed and uncompressed size, files, "
        "components and weekly change probability, and the bytes an average update downloads. "
        "Local layers are streamed once (time in proportion to their size).",
    )
    p.add_argument(
        "imgref", metavar="IMGREF", help="the image: oci:DIR[:TAG], oci-archive:FILE, registry:..."
    )
    _layer_options(p, "count files and uncompressed sizes")
    common_options(p)
    p.set_defaults(handler=_cmd_inspect, parser=p)
    p = sub.add_parser(
        "diff",
        help="show what a client holding OLD downloads to get NEW",
        description="Compare two images: layers reused and new, bytes to download, components changed. "
        "ideal_bytes (file content of NEW found nowhere in OLD) streams NEW's new layers and all of "
        "OLD's layers: time in proportion to their uncompressed size.",
    )
    p.add_argument("old", metavar="OLD", help="the image the client holds")
    p.add_argument("new", metavar="NEW", help="the image it updates to")
    _layer_options(p, "compute ideal_bytes")
    common_options(p)
    p.set_defaults(handler=_cmd_diff, parser=p)
