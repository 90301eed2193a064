"""Write a mapping and its plan as an OCI image into an OCI layout.

In: a ``Mapping`` (with its tree; its components are the ones the plan names)
and a ``Plan``.  Out: an image in an OCI layout, tagged: the first layer
(directories, or the ostree commit and metadata), then one layer per plan
layer, in the ``plain`` or ``ostree`` format.  The plan (its groups of
component names) is stored in the config label ``PLAN_LABEL`` and, per layer,
in the ``ostree.components`` annotation and the history, so the next build can
use it as its prior.  Everything that could differ between machines or runs is
fixed: entry order, headers, timestamps, compression, JSON encoding.  The
image's time is on the config and the first layer only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Protocol

from chunker import Plan, refit
from mapping import Mapping

from ..describe import ImageDescription
from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_ANNOTATION,
    COMPONENTS_LABEL,
    COMPRESSOR_LABEL,
    LAYER_ANNOTATION,
    LAYERS_LABEL,
    PLAN_LABEL,
    REF_NAME_ANNOTATION,
    LayerRecord,
)
from ..oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, Layout, LayoutTarget, canonical_json
from ..oci.model import Digest, check_schema
from ..oci.reuse import ReachableLayers, layout_records
from ..progress import Progress, Step
from .gzipstream import CompressPool
from .plain import PlainLayers
from .tar import MEDIA_TYPES, Items, LayerBlob, compression_setting, compressor, write_layer

log = logging.getLogger("debchunk.encapsulate")

# ``ImageResult.taken`` of a layer found in the layout written into.
IN_LAYOUT = "destination"
# What to do when a document debchunk is about to write breaks the schema.
WRITE_HINT = (
    "debchunk writes no image that 'debchunk validate' would reject: "
    "change the option, --image-config field or source image that gives this field"
)


class LayerSource(Protocol):
    """What a layer format gives the image writer (``PlainLayers``, ``OstreeLayers``)."""

    layer_count: int

    def items(self, k: int) -> Items: ...

    def key(self, k: int, compression: str) -> str | None: ...

    def labels(self, final_diff_id: str) -> dict[str, str]: ...

    def first_layer_name(self) -> str: ...

    def empty_layers(self) -> list[int]: ...


@dataclass(frozen=True)
class ImageResult:
    """What was written: the manifest and config descriptors, and each layer
    (the first one holding no component) with its components."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[LayerBlob, ...]
    layer_components: tuple[tuple[str, ...], ...]
    # The plan written: the one given, less layers that would have been empty.
    plan: Plan | None = None
    # Where each layer was taken from (``IN_LAYOUT``, or the name of a place
    # in ``ReachableLayers``), None for a layer compressed by this build.
    taken: tuple[str | None, ...] = ()

    def layer_records(self) -> list[LayerRecord | None]:
        """Each layer's record (``LAYERS_LABEL``), None for a layer without a key."""
        return [_record(b) for b in self.layers]


def _record(blob: LayerBlob) -> LayerRecord | None:
    value = blob.descriptor.annotations.get(LAYER_ANNOTATION)
    if value is None:
        return None
    key, diff_id, tar_size, files = value.split(" ")
    d = blob.descriptor
    return LayerRecord(key, d.digest, d.size, diff_id, int(tar_size), int(files))


@dataclass(frozen=True)
class BaseLayers:
    """Layers kept as they are below the written ones (a base image's): their
    descriptors, diff_ids and history entries, and how to read their blobs."""

    descriptors: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    open_blob: Callable[[str], BinaryIO]


class _Stopped(Exception):
    """Another layer failed or the run was interrupted."""


def components_label(mapping: Mapping) -> str:
    """The ``COMPONENTS_LABEL`` value of an image of ``mapping``: each
    component's size, probability, version, the package a data part belongs to
    (``part_of``) and a digest of its
    entries (paths, metadata, content ids)."""
    assert mapping.tree is not None
    digests = [hashlib.sha256() for _ in mapping.components]
    for owner, e in zip(mapping.owners, mapping.tree.entries, strict=True):
        if owner >= 0:
            record = (e.path, e.type.name, e.mode, e.uid, e.gid, e.target, e.content_id, e.rdev, e.xattrs)
            digests[owner].update(repr(record).encode("utf-8", "surrogateescape") + b"\n")
    return canonical_json(
        {
            c.name: {
                "size": c.size,
                "change_probability": round(c.change_probability, 6),
                "version": c.version,
                "digest": Digest.of_hash(d),
                "part_of": c.part_of,
            }
            for c, d in zip(mapping.components, digests, strict=True)
        }
    ).decode()


class _LayerWriter:
    """Writes the layers of one image in parallel, largest first, taking any
    layer whose key is already in the layout or in a ``reachable`` place;
    stops every layer at its next entry when one fails or the run is
    interrupted."""

    def __init__(
        self,
        layout: Layout,
        source: LayerSource,
        compression: str,
        level: int | None,
        progress: Progress | None,
        reachable: ReachableLayers | None = None,
    ) -> None:
        self.layout = layout
        self.source = source
        self.compression = compression
        self.level = level
        self.pool = CompressPool()
        self.progress = progress
        self.reachable = ReachableLayers()
        self.reachable.add(IN_LAYOUT, layout, layout_records(layout))
        self.reachable.places += reachable.places if reachable is not None else []
        # Decides which taken blobs stay where they are until delivery.
        self.lending = reachable if reachable is not None else self.reachable
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        self.taken = 0
        self.bytes_done = 0
        self.bytes_total = 0
        self.sizes: Sequence[int] = ()

    def _report(self, finished: bool = False) -> None:
        if self.progress is not None:
            # The total is the plan's content; the first layer's few unowned
            # files are not in it: the count stops at the total, and ends there.
            done = self.bytes_total if finished else min(self.bytes_done, self.bytes_total)
            step = Step(
                "writing",
                self.done,
                self.source.layer_count,
                done,
                self.bytes_total,
                self.taken,
                finished,
            )
            self.progress(step)

    def _checked(self, items: Items) -> Items:
        for item in items:
            if self.stop.is_set():
                raise _Stopped
            yield item
            if self.progress is not None and item[0].isreg():
                with self.lock:
                    # Content only, as the plan's layer sizes count it.
                    self.bytes_done += item[0].size

    def _take(self, k: int, key: str, annotations: dict[str, str]) -> tuple[LayerBlob, str] | None:
        """Layer ``k`` taken from the first place holding a blob of ``key``
        that reads back right (a blob damaged in place is not taken)."""
        for place, record in self.reachable.find(key):
            descriptor = Descriptor(MEDIA_TYPES[self.compression], record.digest, record.size)
            if place.store is self.layout:
                if not self.layout.has_blob(descriptor):
                    continue
            else:
                try:
                    if not self.lending.lend(place.store, descriptor):
                        with place.store.open_blob(record.digest) as f:
                            self.layout.import_blob(f, descriptor)
                except (EncapsulateError, OSError) as e:
                    log.warning("layer %d: not taken from %s (%s); compressing it", k + 1, place.name, e)
                    continue
            annotations[LAYER_ANNOTATION] = record.annotation()
            descriptor = replace(descriptor, annotations=annotations)
            return LayerBlob(
                descriptor, record.diff_id, record.tar_size, record.files, reused=True
            ), place.name
        return None

    def _one(self, k: int, components: Sequence[str]) -> tuple[LayerBlob, str | None]:
        annotations = {COMPONENTS_ANNOTATION: ",".join(components)} if components else {}
        try:
            key = self.source.key(k, compression_setting(self.compression, self.level))
            taken = None if key is None else self._take(k, key, annotations)
            if taken is None:
                with self.layout.blob() as blob:
                    written = write_layer(
                        blob,
                        self._checked(self.source.items(k)),
                        self.compression,
                        annotations,
                        key,
                        self.level,
                        self.pool,
                    )
        except OSError as e:
            raise EncapsulateError(f"writing layer {k + 1}: {e.strerror}", where=self.layout.path) from None
        with self.lock:
            self.done += 1
            if taken is not None:
                self.taken += 1
                self.bytes_done += self.sizes[k]
            self._report()
        return taken if taken is not None else (written, None)

    def write(
        self, components: Sequence[Sequence[str]], sizes: Sequence[int], threads: int | None
    ) -> tuple[tuple[LayerBlob, ...], tuple[str | None, ...]]:
        """Every layer, in image order, and where each was taken from (None: written)."""
        count = self.source.layer_count
        cpus = max(1, threads or os.cpu_count() or 1)
        workers = min(cpus, count)
        self.sizes = sizes
        self.bytes_total = sum(sizes)
        self._report()
        # Largest layers first: the last layer to start should be a small one.
        order = sorted(range(count), key=lambda k: (-sizes[k], k))
        # Layers are read and hashed in ``workers`` threads, their pieces
        # compressed in ``cpus`` more: a large layer keeps every core busy.
        self.pool = CompressPool(cpus)
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = {k: pool.submit(self._one, k, components[k]) for k in order}
            done = [futures[k].result() for k in range(count)]
        except BaseException:
            # Stop the other layers at their next entry; their temporary blobs go.
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.pool.close()
            self.layout.forget_created()
            raise
        pool.shutdown()
        self.pool.close()
        self._report(finished=True)
        return tuple(b for b, _ in done), tuple(t for _, t in done)


@dataclass(frozen=True)
class LayerSettings:
    """How layers are written: ``layer_format`` ``plain`` (rootfs layers) or
    ``ostree`` (ostree-ext chunked layers of ``format_version``, commits
    only), compressed with ``compression`` at ``compression_level`` (None: the
    compression's default), in ``threads`` threads (None: one per CPU)."""

    layer_format: str = "plain"
    format_version: int = 1
    compression: str = "gzip"
    compression_level: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class ImageLayers:
    """The layers of an image: ``mapping``'s components grouped as ``plan``
    says, in a layer format (``source``); no layer of ``plan`` is empty."""

    mapping: Mapping
    plan: Plan
    source: LayerSource


def _layer_source(
    mapping: Mapping,
    plan: Plan,
    settings: LayerSettings,
    epoch: int,
    whiteouts: Sequence[str],
    kept: Collection[int],
) -> LayerSource:
    if settings.layer_format == "ostree":
        # Only the ostree format reads objects through libostree (gi).
        from .ostree import OstreeLayers

        return OstreeLayers(mapping, plan, epoch, settings.format_version)
    return PlainLayers(mapping, plan, epoch, whiteouts, kept)


def fit_layers(
    mapping: Mapping,
    plan: Plan,
    settings: LayerSettings,
    epoch: int,
    whiteouts: Sequence[str] = (),
    kept: Collection[int] = frozenset(),
) -> ImageLayers:
    """The layers of ``mapping`` and ``plan`` in ``settings.layer_format``,
    file mtimes clamped to ``epoch``; ``whiteouts`` (plain only) remove paths
    of kept base layers, and the entries ``kept`` (indices; plain only) are
    the base's as they are, written again only as parents.  A layer that would hold nothing (its content all
    placed in other layers) has its components refitted into a neighbour's:
    the plan written is this one's ``plan``."""
    if mapping.tree is None:
        raise EncapsulateError("the mapping has no tree to write", hint="map the tree again")
    source = _layer_source(mapping, plan, settings, epoch, whiteouts, kept)
    empty = source.empty_layers()
    if empty:
        plan = refit(plan, mapping.components, (k - 1 for k in empty))
        source = _layer_source(mapping, plan, settings, epoch, whiteouts, kept)
    return ImageLayers(mapping, plan, source)


def layers_label(records: Sequence[LayerRecord | None]) -> str:
    """The ``LAYERS_LABEL`` value: each layer's record (null without one), in layer order."""
    return canonical_json([None if r is None else r.to_json() for r in records]).decode()


def layer_name(components: Sequence[str]) -> str:
    """A component layer's history name, as ostree-ext names its chunks
    (``chunking.rs``): the component for one, ``A and B`` up to five, else
    ``N components``.  ``ostree container image history`` and pull progress
    show it."""
    if len(components) > 5:
        return f"{len(components)} components"
    return " and ".join(components)


# Labels that describe the layers for debchunk's own readers; large, and kept
# in the config only.
_CONFIG_ONLY_LABELS = frozenset((PLAN_LABEL, COMPONENTS_LABEL, LAYERS_LABEL))


def manifest_annotations(labels: dict[str, str]) -> dict[str, str]:
    """The manifest's annotations: the config's labels, as ostree-ext copies
    them (``container/encapsulate.rs``, ``build_oci``), so that readers of the
    manifest alone (bootc's composefs backend reads the version there) see
    them; debchunk's plan, components and layers labels stay in the config."""
    return {k: v for k, v in sorted(labels.items()) if k not in _CONFIG_ONLY_LABELS}


def _history(
    layers: ImageLayers, description: ImageDescription, settings: LayerSettings, base: BaseLayers | None
) -> list[dict[str, Any]]:
    """The history entries: the base's, then one per layer written, naming its components."""
    first = "ostree commit and metadata" if settings.layer_format == "ostree" else "directories"
    own = [
        {
            "created": description.created,
            "created_by": layer_name(c) if c else layers.source.first_layer_name(),
            "comment": ("components: " + ", ".join(c))[:4096] if c else first,
        }
        for c in _components(layers)
    ]
    return [*(base.history if base else ()), *own]


def _components(layers: ImageLayers) -> list[tuple[str, ...]]:
    """The component names of each layer written, the first (metadata) layer's none."""
    return [(), *(layer.components for layer in layers.plan.layers)]


def write_image(
    layers: ImageLayers,
    target: LayoutTarget,
    description: ImageDescription,
    settings: LayerSettings,
    *,
    base: BaseLayers | None = None,
    reachable: ReachableLayers | None = None,
    progress: Progress | None = None,
) -> ImageResult:
    """Write the image of ``layers`` and tag it in the OCI layout ``target``
    (created if needed; other tags are kept), described as ``description``
    says, its layers written as ``settings`` say.  A layer whose key matches
    one in the layout or in ``reachable`` is taken, not compressed again (its
    blob checked as it is copied).  With ``base``, its layers come first,
    copied as they are.  ``progress`` is given a ``Step`` as layers progress.
    On any failure, or Ctrl-C, the layers still being written stop and
    nothing is tagged."""
    components = _components(layers)
    below = base.descriptors if base is not None else ()
    # Held for writing until the image is tagged (concurrent runs keep each other's blobs).
    with Layout(target.path) as layout:
        writer = _LayerWriter(
            layout, layers.source, settings.compression, settings.compression_level, progress, reachable
        )
        sizes = [0, *(layer.size for layer in layers.plan.layers)]
        written, taken = writer.write(components, sizes, settings.threads)
        for d in below:
            assert base is not None
            with base.open_blob(d.digest) as blob_file:
                layout.import_blob(blob_file, d)
        kept = tuple(
            LayerBlob(d, diff_id, 0, 0, reused=True)
            for d, diff_id in zip(below, base.diff_ids if base else (), strict=True)
        )
        blobs = kept + written
        all_components = [*([()] * len(below)), *components]
        layer_labels = {
            **layers.source.labels(written[-1].diff_id),
            PLAN_LABEL: canonical_json([list(c) for c in all_components[1:]]).decode(),
            COMPONENTS_LABEL: components_label(layers.mapping),
            LAYERS_LABEL: layers_label([None] * len(below) + [_record(b) for b in written]),
        }
        used = compressor(str(settings.compression))
        if used is not None:
            layer_labels[COMPRESSOR_LABEL] = used
        config = description.config_document(
            [b.diff_id for b in blobs], _history(layers, description, settings, base), layer_labels
        )
        config_descriptor = layout.add_bytes(_checked("config", config, target), MEDIA_CONFIG)
        labels = config["config"]["Labels"]
        manifest_descriptor = _add_manifest(layout, config_descriptor, blobs, labels, target)
        entry = {
            **replace(manifest_descriptor, annotations={REF_NAME_ANNOTATION: target.tag}).to_json(),
            "platform": description.index_platform(),
        }
        _checked("index", {"schemaVersion": 2, "manifests": [entry]}, target)
        layout.tag(manifest_descriptor, target.tag, description.index_platform())
        return ImageResult(
            manifest_descriptor,
            config_descriptor,
            blobs,
            tuple(all_components),
            layers.plan,
            ("base",) * len(below) + taken,
        )


def _checked(kind: str, document: dict[str, Any], target: LayoutTarget) -> bytes:
    """``document`` (the image's ``kind``: config, manifest, index entry) as
    the bytes to write, once it follows the schema ``debchunk validate``
    checks it against; an ``EncapsulateError`` naming the field otherwise."""
    check_schema(kind, document, f"{target.path}: the new image's {kind}", WRITE_HINT)
    return canonical_json(document)


def _add_manifest(
    layout: Layout,
    config: Descriptor,
    blobs: Sequence[LayerBlob],
    labels: dict[str, str],
    target: LayoutTarget,
) -> Descriptor:
    """The image manifest, its annotations the config's labels (``manifest_annotations``)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.to_json(),
        "layers": [b.descriptor.to_json() for b in blobs],
    }
    annotations = manifest_annotations(labels)
    if annotations:
        manifest["annotations"] = annotations
    return layout.add_bytes(_checked("manifest", manifest, target), MEDIA_MANIFEST)
