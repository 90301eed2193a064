"""Layers a build can take instead of compressing them again.

In: images the build can reach (the destination layout, the ``--prior``
image in any transport, the ``--cache`` layout).  Out: their layer records
(``labels.LayerRecord``: key, blob digest and size, diff_id) by key, each
with the store its blob is read from.  Records come from the
``org.debchunk.layers`` config label and from the layers' annotations
(``labels.layer_records``); only blobs the image's manifest lists count.
A blob is read only when a build takes it, and checked then (digest and
size, by ``Layout.import_blob``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import EncapsulateError
from .labels import LayerRecord, config_labels, layer_records
from .layout import Layout
from .read import BlobStore


def image_records(manifest: dict[str, Any], config: dict[str, Any]) -> list[LayerRecord]:
    """The layer records of one image whose blobs its manifest lists."""
    layers = manifest.get("layers")
    layers = layers if isinstance(layers, list) else []
    listed = {str(d.get("digest")) for d in layers if isinstance(d, dict)}
    return [r for r in layer_records(layers, config_labels(config)) if r.digest in listed]


def layout_records(layout: Layout) -> list[LayerRecord]:
    """The layer records of every image tagged in ``layout``; images that
    cannot be read are passed over (they hold nothing to take)."""
    found: list[LayerRecord] = []
    for entry in layout.index()["manifests"]:
        try:
            manifest = json.loads(layout.read_blob(str(entry.get("digest"))))
            config_digest = (manifest.get("config") or {}).get("digest")
            config = json.loads(layout.read_blob(str(config_digest))) if config_digest else {}
            found += image_records(manifest, config if isinstance(config, dict) else {})
        except (EncapsulateError, ValueError, AttributeError, TypeError):
            continue
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
