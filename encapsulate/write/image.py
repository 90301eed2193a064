"""Write a mapping and its plan as an OCI image (``plain`` layer format).

In: a ``Mapping`` (with its tree) and a ``Plan``.  Out: an image in an OCI
layout: a first layer holding every directory (the tree's skeleton), then one
layer per plan layer holding its components' files, each with the parent
directories it needs.  The plan (its groups of component names) is stored in
the config label ``PLAN_LABEL`` and, per layer, in the ``ostree.components``
annotation and the history, so the next build can use it as its prior.
Everything that could differ between machines or runs is fixed: entry order,
headers, timestamps, compression, JSON encoding.  The image's time (from
``SOURCE_DATE_EPOCH`` or the commit) is on the config and the first layer only;
entries of component layers have mtime 0 (``CONTENT_MTIME``, as OSTree keeps
content), so a layer whose components did not change is the same blob in the
next build, whatever its date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from chunker import Plan, layer_of_entries
from mapping import Entry, EntryType, Mapping

from ..errors import EncapsulateError
from ..oci.labels import COMPONENTS_ANNOTATION, COMPONENTS_LABEL, LAYER_ANNOTATION, PLAN_LABEL
from ..oci.layout import MEDIA_CONFIG, MEDIA_MANIFEST, Descriptor, Layout, canonical_json
from .tar import CONTENT_MTIME, Content, LayerBlob, entry_items, layer_key, write_layer


class _Stopped(Exception):
    """Another layer failed or the run was interrupted."""


@dataclass(frozen=True)
class ImageResult:
    """What was written."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[LayerBlob, ...]
    layer_components: tuple[tuple[str, ...], ...]


def plain_layers(split: Mapping, plan: Plan) -> list[list[int]]:
    """Entry indices of each layer of the mapping ``plan`` was made from: layer 0
    every directory, then one per plan layer with its files and their parent
    directories.  All paths of an inode go with the first one, so hardlinks
    stay within a layer."""
    assert split.tree is not None
    entries = split.tree.entries
    layer = layer_of_entries(plan, [c.name for c in split.components], split.owners).tolist()
    first_layer: dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.hardlink is not None and e.type is EntryType.FILE:
            layer[i] = first_layer.setdefault(e.hardlink, layer[i])
    index = split.tree.index
    out: list[list[int]] = [[] for _ in range(len(plan.layers) + 1)]
    with_parents: list[set[int]] = [set() for _ in plan.layers]
    for i, e in enumerate(entries):
        if e.type is EntryType.DIR or layer[i] < 0:
            if e.path:
                out[0].append(i)
            continue
        k = layer[i]
        have = with_parents[k]
        parent = e.path.rpartition("/")[0]
        while parent and index[parent] not in have:
            have.add(index[parent])
            parent = parent.rpartition("/")[0]
        have.add(i)
    for k, have in enumerate(with_parents):
        out[k + 1] = sorted(have)
    return out


def components_label(split: Mapping) -> str:
    """The ``COMPONENTS_LABEL`` value of an image of the mapping ``split``
    (its components as planned, data parts naming their package in ``part_of``)."""
    assert split.tree is not None
    digests = [hashlib.sha256() for _ in split.components]
    for owner, e in zip(split.owners, split.tree.entries, strict=True):
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
            for c, d in zip(split.components, digests, strict=True)
        }
    ).decode()


def reusable_layers(layout: Layout) -> dict[str, LayerBlob]:
    """The layers of the images already in ``layout`` that debchunk wrote, by
    key (``LAYER_ANNOTATION``), whose blob is there with its size."""
    found: dict[str, LayerBlob] = {}
    for entry in layout.index()["manifests"]:
        try:
            manifest = json.loads(layout.read_blob(str(entry.get("digest"))))
            layers = manifest.get("layers") or []
        except (EncapsulateError, ValueError, AttributeError):
            continue
        for d in layers if isinstance(layers, list) else []:
            try:
                key, diff_id, tar_size, files = d["annotations"][LAYER_ANNOTATION].split(" ")
                descriptor = Descriptor(str(d["mediaType"]), str(d["digest"]), int(d["size"]))
                if os.stat(layout.blob_path(descriptor.digest)).st_size != descriptor.size:
                    continue
            except (KeyError, TypeError, ValueError, OSError, EncapsulateError):
                continue
            found[key] = LayerBlob(descriptor, diff_id, int(tar_size), int(files))
    return found


def _created(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_image(
    mapping: Mapping,
    plan: Plan,
    layout_path: str,
    tag: str,
    *,
    epoch: int,
    labels: dict[str, str] | None = None,
    architecture: str = "amd64",
    compression: str = "gzip",
    layer_format: str = "plain",
    threads: int | None = None,
    image_config: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageResult:
    """Write the image and tag it ``tag`` in the OCI layout at ``layout_path``
    (created if needed; other tags are kept).  ``layer_format`` is ``plain``
    (rootfs layers) or ``ostree`` (ostree-ext chunked layers, commits only).
    ``image_config`` (an OCI image config) is merged under what debchunk sets;
    ``progress(done, total)`` is called as layers complete.  On any failure,
    or Ctrl-C, the layers still being written stop and nothing is tagged."""
    if mapping.tree is None:
        raise EncapsulateError("the mapping has no tree to write; map the tree again")
    components = [(), *(layer.components for layer in plan.layers)]
    # The mapping is written as it is: its components (split by
    # mapping.build_mapping) are the ones the plan was made from.
    split = mapping
    ostree_layers = None
    if layer_format == "ostree":
        # Only the ostree format reads objects through libostree (gi).
        from .ostree import OstreeLayers

        ostree_layers = OstreeLayers(split, plan, epoch)
        makers = [ostree_layers.layer(k) for k in range(len(components))]
        # From object checksums and paths: no object is read to know a layer.
        keys: list[Callable[[], str | None]] = [
            partial(ostree_layers.key, k, compression) for k in range(len(components))
        ]
    else:
        entries: Sequence[Entry] = mapping.tree.entries
        groups = plain_layers(split, plan)

        def plain(k: int) -> Callable[[], Iterator[tuple[tarfile.TarInfo, Content]]]:
            mtime = epoch if k == 0 else CONTENT_MTIME
            return lambda: entry_items(((entries[i].path, entries[i]) for i in groups[k]), mtime)

        makers = [plain(k) for k in range(len(components))]

        def plain_key(k: int) -> Callable[[], str | None]:
            return lambda: layer_key(makers[k](), compression)

        keys = [plain_key(k) for k in range(len(components))]
    layout = Layout(layout_path)
    reusable = reusable_layers(layout)

    stop = threading.Event()
    done = [0]
    lock = threading.Lock()

    def checked(
        items: Iterable[tuple[tarfile.TarInfo, Content]],
    ) -> Iterator[tuple[tarfile.TarInfo, Content]]:
        for item in items:
            if stop.is_set():
                raise _Stopped
            yield item

    def one(k: int) -> LayerBlob:
        annotations = {COMPONENTS_ANNOTATION: ",".join(components[k])} if components[k] else {}
        try:
            key = keys[k]()
            if key is not None and key in reusable:
                found = reusable[key]
                annotations[LAYER_ANNOTATION] = found.record(key)
                descriptor = replace(found.descriptor, annotations=annotations)
                written = replace(found, descriptor=descriptor, reused=True)
            else:
                with layout.blob() as blob:
                    written = write_layer(blob, checked(makers[k]()), compression, annotations, key)
        except OSError as e:
            raise EncapsulateError(f"{layout_path}: writing layer {k + 1}: {e.strerror}") from None
        if progress is not None:
            with lock:
                done[0] += 1
                progress(done[0], len(makers))
        return written

    workers = max(1, min(threads or os.cpu_count() or 1, len(makers)))
    # Largest layers first: the last layer to start should be a small one.
    sizes = [0, *(layer.size for layer in plan.layers)]
    order = sorted(range(len(makers)), key=lambda k: (-sizes[k], k))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {k: pool.submit(one, k) for k in order}
        blobs = tuple(futures[k].result() for k in range(len(makers)))
    except BaseException:
        # Stop the other layers at their next entry; their temporary blobs go,
        # and so do the blobs this run added: the layout is as it was.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        layout.forget_created()
        raise
    pool.shutdown()

    format_labels = ostree_layers.labels(blobs[-1].diff_id) if ostree_layers is not None else {}
    created = _created(epoch)
    plan_label = canonical_json([list(c) for c in components[1:]]).decode()
    base = dict(image_config or {})
    runtime = dict(base.get("config") or {})
    runtime["Labels"] = {
        **(runtime.get("Labels") or {}),
        **(labels or {}),
        **format_labels,
        PLAN_LABEL: plan_label,
        COMPONENTS_LABEL: components_label(split),
    }
    config = {
        **{k: v for k, v in base.items() if k not in ("rootfs", "history", "config")},
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in blobs]},
        "history": [
            {
                "created": created,
                "created_by": "debchunk",
                "comment": ("ostree commit and metadata" if ostree_layers else "directories")
                if not c
                else ("components: " + ", ".join(c))[:4096],
            }
            for c in components
        ],
    }
    config_descriptor = layout.add_bytes(canonical_json(config), MEDIA_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [b.descriptor.to_json() for b in blobs],
    }
    manifest_descriptor = layout.add_bytes(canonical_json(manifest), MEDIA_MANIFEST)
    layout.tag(manifest_descriptor, tag)
    return ImageResult(manifest_descriptor, config_descriptor, blobs, tuple(components))
