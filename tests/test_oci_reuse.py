"""Layers a build can take (``encapsulate.oci.reuse``): the records of the
images a layout holds, only for blobs their manifests list and only from
images whose manifest and config read back right; the places tried in
order; and a local blob checked before it is lent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY, parse_imgref
from encapsulate.oci.labels import LAYERS_LABEL, LayerRecord
from encapsulate.oci.layout import Layout
from encapsulate.oci.model import Digest
from encapsulate.oci.read import open_image
from encapsulate.oci.registry import RegistryBlobs
from encapsulate.oci.reuse import ReachableLayers, check_local_blob, image_records, layout_records
from tests.images import build


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> Path:
    root = tmp_path_factory.mktemp("reuse") / "img"
    build(RootfsOrigin(str(sample_tree)), f"oci:{root}:v1", max_layers=4)
    return root


def test_records_of_an_image(layout: Path) -> None:
    with open_image(f"oci:{layout}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        records = image_records(image.manifest, image.config)
        label = json.loads(image.config.labels[LAYERS_LABEL])
        listed = {d.digest: d.size for d in image.layers}
    # Every layer debchunk wrote has a key; each record names a listed blob of its size.
    assert len(records) == sum(1 for r in label if r is not None) > 0
    assert all(listed[r.digest] == r.size for r in records)
    assert sorted(records, key=lambda r: r.key) == sorted(
        layout_records(Layout(str(layout), create=False)), key=lambda r: r.key
    )


def test_a_damaged_image_gives_no_records(layout: Path, tmp_path: Path) -> None:
    """An image whose config does not read back right is passed over, the others are read."""
    copy = tmp_path / "copy"
    shutil.copytree(layout, copy)
    with open_image(f"oci:{copy}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        config = copy / "blobs" / "sha256" / image.manifest.config.digest.hex
        good = len(image_records(image.manifest, image.config))
    data = config.read_bytes()
    config.write_bytes(data.replace(b"org.debchunk.layers", b"org.debchunk.layerz"))
    assert layout_records(Layout(str(copy), create=False)) == []
    config.write_bytes(data)
    assert len(layout_records(Layout(str(copy), create=False))) == good


def test_places_in_order(layout: Path) -> None:
    store = Layout(str(layout), create=False)
    a = LayerRecord("k", Digest("sha256:" + "1" * 64), 1, "d", 2, 3)
    b = LayerRecord("k", Digest("sha256:" + "2" * 64), 1, "d", 2, 3)
    reachable = ReachableLayers()
    reachable.add("first", store, [a])
    reachable.add("empty", store, [])
    reachable.add("second", store, [b])
    assert [(p.name, r) for p, r in reachable.find("k")] == [("first", a), ("second", b)]
    assert list(reachable.find("other")) == [] and len(reachable) == 2
    # Lending: the lender decides, and what is lent is remembered.
    with open_image(f"oci:{layout}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        d = image.layers[-1]
    lending = reachable.lending(lambda _store, descriptor: descriptor.size > 0)
    assert [p.name for p in lending.places] == ["first", "second"]
    assert lending.lend(store, d) and lending.lent == {d.digest: store}
    assert not reachable.lend(store, d)


def test_check_local_blob(layout: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(layout, copy)
    store = Layout(str(copy), create=False)
    with open_image(f"oci:{copy}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        d = max(image.layers, key=lambda x: x.size)
    assert check_local_blob(store, d)
    # A registry's blobs are not on this machine.
    assert not check_local_blob(RegistryBlobs(parse_imgref("registry:h.example/r"), DEFAULT_REGISTRY), d)
    path = Path(store.blob_path(d.digest))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(EncapsulateError, match=rf"blob {d.digest} reads back wrong .*the image is damaged"):
        check_local_blob(store, d)
