"""Layers a build can take instead of compressing them again.

In: images the build can reach (the destination layout, the ``--prior``
image in any transport, the ``--cache`` layout).  Out: their layer records
(``labels.LayerRecord``: key, blob digest and size, diff_id) by key, each
with the store its blob is read from.  Records come from the
``org.debchunk.layers`` config label and from the layers' annotations
(``labels.layer_records``); only blobs the image's manifest lists count.
A blob is read only when a build takes it, and checked then (digest and
size, by ``Layout.import_blob``), or lent: a build delivered elsewhere
than an ``oci:`` layout may leave a taken blob where it was found
(``ReachableLayers.lending``), and the delivery reads it from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from ..errors import EncapsulateError
from .labels import LayerRecord, layer_records
from .layout import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Layout
from .model import Descriptor, Digest, ImageConfig, Manifest
from .read import BlobStore, blob_extent

# Whether the blob a descriptor names may stay in a store until delivery
# (``ReachableLayers.lending``); raises ``EncapsulateError`` for a blob that
# reads back wrong.
Lender = Callable[[BlobStore, Descriptor], bool]


def image_records(manifest: Manifest, config: ImageConfig) -> list[LayerRecord]:
    """The layer records of one image whose blobs its manifest lists."""
    listed = {d.digest for d in manifest.layers}
    return [r for r in layer_records(manifest.layers, config.labels) if r.digest in listed]


def layout_records(layout: Layout) -> list[LayerRecord]:
    """The layer records of every image tagged in ``layout``; images that
    cannot be read (damaged, or an image index) are passed over: they hold
    nothing to take."""
    found: list[LayerRecord] = []
    for entry in layout.index()["manifests"]:
        try:
            descriptor = Descriptor.from_json(entry)
            raw = layout.read_blob(descriptor.digest, MAX_MANIFEST_BYTES)
            manifest = Manifest.parse(raw, descriptor, layout.path)
            raw = layout.read_blob(manifest.config.digest, MAX_CONFIG_BYTES)
            config = ImageConfig.parse(raw, manifest.config, layout.path)
        except EncapsulateError:
            continue
        found += image_records(manifest, config)
    return found


@dataclass(frozen=True)
class Reachable:
    """One place layers can be taken from: its name (for messages and
    ``ImageResult.taken``), where its blobs are read, and its records by key."""

    name: str
    store: BlobStore
    records: dict[str, LayerRecord]


@dataclass
class ReachableLayers:
    """Every place a build can take layers from, in the order tried."""

    places: list[Reachable] = field(default_factory=list)
    # Which taken blobs stay where they were found, and those that did (digest -> store).
    lender: Lender | None = None
    lent: dict[str, BlobStore] = field(default_factory=dict)

    def lending(self, lender: Lender | None) -> ReachableLayers:
        """The same places, blobs taken from them left there when ``lender`` says so."""
        return ReachableLayers(list(self.places), lender)

    def lend(self, store: BlobStore, descriptor: Descriptor) -> bool:
        """Whether the taken blob ``descriptor`` names stays in ``store`` (then
        remembered in ``lent``) instead of being copied into the layout written."""
        if self.lender is None or not self.lender(store, descriptor):
            return False
        self.lent[descriptor.digest] = store
        return True

    def add(self, name: str, store: BlobStore, records: list[LayerRecord]) -> None:
        """Add a place (tried after those added before)."""
        if records:
            self.places.append(Reachable(name, store, {r.key: r for r in records}))

    def find(self, key: str) -> Iterator[tuple[Reachable, LayerRecord]]:
        """The places holding a layer of ``key``, in order, with its record."""
        for place in self.places:
            record = place.records.get(key)
            if record is not None:
                yield place, record

    def __len__(self) -> int:
        return sum(len(p.records) for p in self.places)


def check_local_blob(store: BlobStore, descriptor: Descriptor) -> bool:
    """Whether ``store`` holds the blob ``descriptor`` names on this machine
    (``blob_extent``); its bytes are hashed, and a blob that reads back wrong
    (digest or size) raises ``EncapsulateError``, as ``Layout.import_blob`` does."""
    extent = blob_extent(store, descriptor.digest)
    if extent is None:
        return False
    digest = None
    if extent.size == descriptor.size:
        with store.open_blob(descriptor.digest) as f:
            digest = Digest.of_hash(hashlib.file_digest(cast(Any, f), descriptor.digest.algorithm))
    if digest != descriptor.digest:
        raise EncapsulateError(
            f"blob {descriptor.digest} reads back wrong ({extent.size} bytes, digest {digest}); "
            "the image is damaged"
        )
    return True
