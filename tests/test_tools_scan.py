"""Streaming a layer (``encapsulate.tools.scan``) through the mapping stage's
layer reader: the same ``LayerScan`` as a plain ``tarfile`` reading of the
same layer, on real layers (gzip and zstd); a tar without its end blocks
and its last padding (as umoci writes it) read to its end; sparse files
hashed as they read; and damaged blobs named."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from encapsulate import Compression, RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY
from encapsulate.oci.layout import Layout, canonical_json
from encapsulate.oci.model import (
    MEDIA_CONFIG,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_TAR,
    MEDIA_MANIFEST,
    Descriptor,
)
from encapsulate.oci.read import SourceImage, open_image
from encapsulate.tools.scan import LayerScan, scan_layer
from tests.images import build


def _tarfile_scan(data: bytes, everything: bool) -> LayerScan:
    """The layer read by ``tarfile`` (what scan did before it shared the
    mapping's reader): compression told by its first bytes."""
    if data.startswith(b"\x1f\x8b"):
        data = gzip.decompress(data)
    elif data.startswith(b"\x28\xb5\x2f\xfd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    contents: dict[str, int] = {}
    files = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            if member.isdir():
                continue
            files += 1
            content = tar.extractfile(member) if everything and member.isreg() else None
            if content is not None:
                contents.setdefault(hashlib.sha256(content.read()).hexdigest(), member.size)
    return LayerScan(len(data), files, contents)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_same_scan_as_tarfile_on_real_layers(sample_tree: Path, tmp_path: Path, compression: str) -> None:
    build(
        RootfsOrigin(str(sample_tree)),
        f"oci:{tmp_path}/img:v1",
        max_layers=5,
        compression=Compression(compression),
    )
    with open_image(f"oci:{tmp_path}/img:v1", DEFAULT_REGISTRY) as image:
        assert image.layout is not None
        for k, layer in enumerate(image.layers, 1):
            data = Path(image.layout.blob_path(layer.digest)).read_bytes()
            assert scan_layer(image, k, layer, want=lambda _: True) == _tarfile_scan(data, True)
            quick = scan_layer(image, k, layer)
            assert quick == LayerScan(len(_untar(data)), _tarfile_scan(data, False).files, {})


def _untar(data: bytes) -> bytes:
    if data.startswith(b"\x1f\x8b"):
        return gzip.decompress(data)
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()


def _one_layer_image(
    root: Path, blob: bytes, media_type: str, diff_ids: list[str] | None = None
) -> SourceImage:
    """An image of one layer ``blob`` in a new layout at ``root``, opened;
    its config lists ``diff_ids``, by default the blob's true one."""
    layout = Layout(str(root))
    layer = layout.add_bytes(blob, media_type)
    tar = gzip.decompress(blob) if media_type == MEDIA_LAYER_GZIP else blob
    if diff_ids is None:
        diff_ids = [f"sha256:{hashlib.sha256(tar).hexdigest()}"]
    config = layout.add_bytes(
        canonical_json(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        ),
        MEDIA_CONFIG,
    )
    manifest = {"schemaVersion": 2, "config": config.to_json(), "layers": [layer.to_json()]}
    layout.tag(layout.add_bytes(canonical_json(manifest), MEDIA_MANIFEST), "t")
    layout.close()
    with open_image(f"oci:{root}:t", DEFAULT_REGISTRY) as image:
        return image


def _tar(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_tar_without_end_blocks_is_read(tmp_path: Path) -> None:
    """umoci 0.4 ends a layer with the last file's data: no padding, no end blocks."""
    whole = _tar(("etc/hostname", b"umoci\n"), ("tool", os.urandom(70_000)))
    cut = whole[: 512 * 3 + 70_000]  # two headers and hostname's block, then tool's bytes
    image = _one_layer_image(tmp_path / "l", gzip.compress(cut, mtime=0), MEDIA_LAYER_GZIP)
    scan = scan_layer(image, 1, image.layers[0], want=lambda _: True)
    assert scan == LayerScan(len(cut), 2, _tarfile_scan(whole, True).contents)
    # Cut inside a file's data, it is an error naming the file.
    image = _one_layer_image(tmp_path / "m", cut[:-10], MEDIA_LAYER_TAR)
    with pytest.raises(EncapsulateError, match=r"layer 1 \(sha256:.*\): .*its tar ends inside tool"):
        scan_layer(image, 1, image.layers[0])


def test_a_layer_is_checked_against_its_diff_id(tmp_path: Path) -> None:
    """A layer whose blob matches the manifest but whose tar is not the one
    the config names is refused, and so is a config with the wrong count."""
    blob = gzip.compress(_tar(("etc/hostname", b"real\n")), mtime=0)
    other = "sha256:" + hashlib.sha256(_tar(("etc/hostname", b"fake\n"))).hexdigest()
    image = _one_layer_image(tmp_path / "a", blob, MEDIA_LAYER_GZIP, [other])
    with pytest.raises(EncapsulateError, match=r"layer 1 .*the image's config says " + other):
        scan_layer(image, 1, image.layers[0])
    image = _one_layer_image(tmp_path / "b", blob, MEDIA_LAYER_GZIP, [])
    with pytest.raises(EncapsulateError, match=r"its config lists 0 diff_ids for 1 layers"):
        scan_layer(image, 1, image.layers[0])


def test_sparse_files_hash_as_they_read(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"middle")
    tar = tmp_path / "s.tar"
    subprocess.run(["tar", "--sparse", "--format=posix", "-cf", tar, "-C", src, "sparse"], check=True)
    image = _one_layer_image(tmp_path / "l", tar.read_bytes(), MEDIA_LAYER_TAR)
    scan = scan_layer(image, 1, image.layers[0], want=lambda _: True)
    assert scan.contents == {hashlib.sha256((src / "sparse").read_bytes()).hexdigest(): 3 << 20}


def test_damaged_blobs_are_named(tmp_path: Path) -> None:
    data = gzip.compress(_tar(("f", os.urandom(50_000))), mtime=0)
    image = _one_layer_image(tmp_path / "l", data, MEDIA_LAYER_GZIP)
    layer = image.layers[0]
    assert image.layout is not None
    path = Path(image.layout.blob_path(layer.digest))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(
        EncapsulateError, match=r"have digest sha256:.*not the manifest's .*fetch or build it again"
    ):
        scan_layer(image, 1, layer)
    path.write_bytes(data[:100])
    with pytest.raises(EncapsulateError, match=rf"truncated: 100 of {len(data)} bytes"):
        scan_layer(image, 1, layer)
    path.unlink()
    with pytest.raises(EncapsulateError, match="the blob is missing"):
        scan_layer(image, 1, layer)
    odd = Descriptor("application/x-unknown", layer.digest, layer.size)
    with pytest.raises(EncapsulateError, match="media type 'application/x-unknown' is not a tar layer"):
        scan_layer(image, 1, odd)
