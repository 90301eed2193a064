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

import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Protocol

from chunker import Plan, refit
from mapping import Mapping

from ..errors import EncapsulateError
from ..oci.labels import (
    COMPONENTS_ANNOTATION,
    COMPONENTS_LABEL,
    LAYER_ANNOTATION,
    LAYERS_LABEL,
    PLAN_LABEL,
    LayerRecord,
)
from ..oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, Layout, canonical_json
from ..oci.reuse import ReachableLayers, layout_records
from ..progress import Progress, Step
from .gzipstream import CompressPool
from .plain import PlainLayers
from .tar import MEDIA_TYPES, Items, LayerBlob, compression_setting, write_layer

log = logging.getLogger("debchunk.encapsulate")

# ``ImageResult.taken`` of a layer found in the layout written into.
IN_LAYOUT = "destination"


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
                "digest": "sha256:" + d.hexdigest(),
                "part_of": c.part_of,
            }
            for c, d in zip(mapping.components, digests, strict=True)
        }
    ).decode()


def _created(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def _report(self, finished: bool = False) -> None:
        if self.progress is not None:
            step = Step(
                "writing",
                self.done,
                self.source.layer_count,
                self.bytes_done,
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
            if self.progress is not None:
                with self.lock:
                    self.bytes_done += item[0].size + 512

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
                self.bytes_done += taken[0].tar_size
            self._report()
        return taken if taken is not None else (written, None)

    def write(
        self, components: Sequence[Sequence[str]], sizes: Sequence[int], threads: int | None
    ) -> tuple[tuple[LayerBlob, ...], tuple[str | None, ...]]:
        """Every layer, in image order, and where each was taken from (None: written)."""
        count = self.source.layer_count
        cpus = max(1, threads or os.cpu_count() or 1)
        workers = min(cpus, count)
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


def layer_source(
    mapping: Mapping,
    plan: Plan,
    layer_format: str,
    epoch: int,
    whiteouts: Sequence[str] = (),
    format_version: int = 1,
) -> LayerSource:
    """The layers of ``mapping`` and ``plan`` in ``layer_format`` (``plain`` or
    ``ostree``, of ``format_version``); ``whiteouts`` (plain only) remove
    paths of kept base layers."""
    if layer_format == "ostree":
        # Only the ostree format reads objects through libostree (gi).
        from .ostree import OstreeLayers

        return OstreeLayers(mapping, plan, epoch, format_version)
    return PlainLayers(mapping, plan, epoch, whiteouts)


def image_config_document(
    base: dict[str, Any],
    *,
    labels: dict[str, str],
    architecture: str,
    created: str,
    diff_ids: Sequence[str],
    history: Sequence[dict[str, str]],
    variant: str | None = None,
) -> dict[str, Any]:
    """The image config: ``base`` (a full OCI image config) under what
    debchunk sets (labels merged, its own last)."""
    runtime = dict(base.get("config") or {})
    runtime["Labels"] = {**(runtime.get("Labels") or {}), **labels}
    return {
        **{k: v for k, v in base.items() if k not in ("rootfs", "history", "config", "variant")},
        **({"variant": variant} if variant else {}),
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": list(history),
    }


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


def write_image(
    mapping: Mapping,
    plan: Plan,
    layout_path: str,
    tag: str,
    *,
    epoch: int,
    labels: dict[str, str] | None = None,
    architecture: str = "amd64",
    variant: str | None = None,
    compression: str = "gzip",
    compression_level: int | None = None,
    layer_format: str = "plain",
    format_version: int = 1,
    threads: int | None = None,
    image_config: dict[str, Any] | None = None,
    progress: Progress | None = None,
    base: BaseLayers | None = None,
    whiteouts: Sequence[str] = (),
    reachable: ReachableLayers | None = None,
) -> ImageResult:
    """Write the image and tag it ``tag`` in the OCI layout at ``layout_path``
    (created if needed; other tags are kept).  ``mapping``'s components are
    those ``plan`` groups (``mapping.build_mapping`` splits packages as the
    planner sees them; nothing is split again here).  ``layer_format`` is
    ``plain`` (rootfs layers) or ``ostree`` (ostree-ext chunked layers, commits
    only).  ``compression_level`` defaults to the compression's own
    (``config.COMPRESSION_DEFAULT``).  ``image_config`` (a full OCI image config) is merged under what
    debchunk sets; ``progress`` is given a ``Step`` as layers progress.  A
    layer whose key matches one in the layout or in ``reachable`` is taken,
    not compressed again (its blob checked as it is copied).  On
    any failure, or Ctrl-C, the layers still being written stop and nothing is
    tagged.  With ``base``, its layers come first, copied as they are, and the
    written ones above them remove ``whiteouts``."""
    if mapping.tree is None:
        raise EncapsulateError("the mapping has no tree to write", hint="map the tree again")
    source = layer_source(mapping, plan, layer_format, epoch, whiteouts, format_version)
    empty = source.empty_layers()
    if empty:
        # Never an empty layer: its components join a neighbour's.
        plan = refit(plan, mapping.components, (k - 1 for k in empty))
        source = layer_source(mapping, plan, layer_format, epoch, whiteouts, format_version)
    components: list[tuple[str, ...]] = [(), *(layer.components for layer in plan.layers)]
    below = base.descriptors if base is not None else ()
    # Held for writing until the image is tagged (concurrent runs keep each other's blobs).
    with Layout(layout_path) as layout:
        writer = _LayerWriter(layout, source, compression, compression_level, progress, reachable)
        written, taken = writer.write(components, [0, *(layer.size for layer in plan.layers)], threads)
        for d in below:
            assert base is not None
            with base.open_blob(d.digest) as blob_file:
                layout.import_blob(blob_file, d)
        kept = tuple(
            LayerBlob(d, diff_id, 0, 0, reused=True)
            for d, diff_id in zip(below, base.diff_ids if base else (), strict=True)
        )
        blobs = kept + written
        created = _created(epoch)
        history = [
            {
                "created": created,
                "created_by": layer_name(c) if c else source.first_layer_name(),
                "comment": ("ostree commit and metadata" if layer_format == "ostree" else "directories")
                if not c
                else ("components: " + ", ".join(c))[:4096],
            }
            for c in components
        ]
        history = [*(base.history if base else ()), *history]
        components = [*([()] * len(below)), *components]
        config = image_config_document(
            image_config or {},
            labels={
                **(labels or {}),
                **source.labels(written[-1].diff_id),
                PLAN_LABEL: canonical_json([list(c) for c in components[1:]]).decode(),
                COMPONENTS_LABEL: components_label(mapping),
                LAYERS_LABEL: layers_label([None] * len(below) + [_record(b) for b in written]),
            },
            architecture=architecture,
            variant=variant,
            created=created,
            diff_ids=[b.diff_id for b in blobs],
            history=history,
        )
        config_descriptor = layout.add_bytes(canonical_json(config), MEDIA_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [b.descriptor.to_json() for b in blobs],
        }
        annotations = manifest_annotations(config["config"]["Labels"])
        if annotations:
            manifest["annotations"] = annotations
        manifest_descriptor = layout.add_bytes(canonical_json(manifest), MEDIA_MANIFEST)
        platform = {"architecture": architecture, "os": "linux", **({"variant": variant} if variant else {})}
        layout.tag(manifest_descriptor, tag, platform)
        return ImageResult(
            manifest_descriptor,
            config_descriptor,
            blobs,
            tuple(components),
            plan,
            ("base",) * len(below) + taken,
        )
