"""Layers taken, not compressed again, from everywhere a build can reach:
the ``--prior`` image as an OCI archive and in a registry (a blob taken
from it is mounted by the registry pushed to, not fetched), and a ``--cache`` layout shared by builds to
different destinations.  Each rebuild gives the manifest a build from
scratch gives (same plan, nothing to take), byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from benches.registry import manifest_digest
from encapsulate import RootfsOrigin
from encapsulate.oci.imgref import DEFAULT_REGISTRY, RegistryOptions
from encapsulate.oci.labels import LAYER_ANNOTATION, LAYERS_LABEL
from encapsulate.oci.layout import Layout
from encapsulate.oci.read import open_image
from encapsulate.oci.registry import RegistryBlobs
from encapsulate.write.image import ImageResult
from tests.images import EPOCH, build, packages_tree
from tests.sample import blob

LAYERS = 8


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[tuple[RootfsOrigin, Path]]:
    """A tree of 12 packages (built as v1 by the tests), and how to make its point update."""
    root = packages_tree(tmp_path / "tree", 12, 50_000, 10)
    yield RootfsOrigin(str(root)), root


def _update(root: Path) -> None:
    """A point update: one package's content changes."""
    (root / "usr/lib/pkg05/data").write_bytes(blob("point update", 260_000))


def _from_scratch(origin: RootfsOrigin, prior: ImageResult, where: Path) -> ImageResult:
    """The new tree built with the prior's plan into an empty layout, nothing to take."""
    assert prior.plan is not None
    plan = where.with_suffix(".plan.json")
    plan.write_text(json.dumps(prior.plan.to_json()))
    fresh = build(origin, f"oci:{where}:fresh", max_layers=LAYERS, prior_plan=str(plan))
    assert not any(b.reused for b in fresh.layers)
    return fresh


def rebuild_into_registry(
    origin: RootfsOrigin, v1: ImageResult, prior_ref: str, target_ref: str, scratch: Path
) -> tuple[ImageResult, ImageResult]:
    """Build ``origin`` into ``registry:target_ref`` with ``registry:prior_ref``
    (the build ``v1``) as its prior, plain HTTP; that image and a build from
    scratch into ``scratch`` with the same plan, whose manifests must be equal."""
    rebuilt = build(
        origin,
        f"registry:{target_ref}",
        max_layers=LAYERS,
        prior=f"registry:{prior_ref}",
        registry=RegistryOptions(tls_verify=False),
        dest_registry=RegistryOptions(tls_verify=False),
    )
    fresh = _from_scratch(origin, v1, scratch)
    assert rebuilt.manifest == fresh.manifest
    return rebuilt, fresh


def _count_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The digests of the blobs read from a registry (``RegistryBlobs.open_blob``), in order."""
    fetched: list[str] = []
    fetch = RegistryBlobs.open_blob

    def counted(self: RegistryBlobs, digest: str) -> BinaryIO:
        fetched.append(digest)
        return fetch(self, digest)

    monkeypatch.setattr(RegistryBlobs, "open_blob", counted)
    return fetched


def _check_taken(new: ImageResult, old: ImageResult, place: str) -> None:
    """Every layer whose blob the old image has was taken from ``place``; the
    others (the changed package's and nothing else) were compressed."""
    had = {b.descriptor.digest for b in old.layers}
    written = [b for b, t in zip(new.layers, new.taken, strict=True) if t is None]
    taken = [b for b, t in zip(new.layers, new.taken, strict=True) if t is not None]
    assert {t for t in new.taken if t is not None} == {place}
    assert all(b.descriptor.digest in had for b in taken)
    assert all(b.descriptor.digest not in had for b in written)
    assert 1 <= len(written) <= 2 and len(taken) >= LAYERS - 3


def test_prior_from_an_oci_archive(trees: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    origin, root = trees
    v1 = build(origin, f"oci-archive:{tmp_path}/v1.tar", max_layers=LAYERS)
    _update(root)
    v2 = build(
        origin, f"oci-archive:{tmp_path}/v2.tar", max_layers=LAYERS, prior=f"oci-archive:{tmp_path}/v1.tar"
    )
    fresh = _from_scratch(origin, v1, tmp_path / "fresh")
    assert v2.manifest == fresh.manifest
    _check_taken(v2, v1, "prior")
    with open_image(f"oci-archive:{tmp_path}/v2.tar", DEFAULT_REGISTRY, blobs=False) as image:
        assert image.manifest_digest == fresh.manifest.digest


def test_prior_from_a_registry_fetches_no_blob_it_takes(
    trees: tuple[RootfsOrigin, Path], tmp_path: Path, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, root = trees
    # Pushed as Docker schema 2, which has no layer annotations: the keys
    # come from the config label alone.
    build(origin, f"oci:{tmp_path}/v1:v1", max_layers=LAYERS)
    v1_ref = f"{registry}/cache-test:v1"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--format=v2s2",
            "--dest-tls-verify=false",
            f"oci:{tmp_path}/v1:v1",
            f"docker://{v1_ref}",
        ],
        check=True,
    )
    with open_image(f"registry:{v1_ref}", RegistryOptions(tls_verify=False), blobs=False) as pushed:
        assert not any(LAYER_ANNOTATION in d.annotations for d in pushed.layers)
        assert LAYERS_LABEL in pushed.config.labels
    with open_image(f"oci:{tmp_path}/v1:v1", DEFAULT_REGISTRY, blobs=False) as local:
        v1 = build(origin, f"oci:{tmp_path}/v1:v1", max_layers=LAYERS)
        assert v1.manifest.digest == local.manifest_digest
    fetched = _count_fetches(monkeypatch)
    _update(root)
    v2_ref = f"{registry}/cache-test:v2"
    v2, fresh = rebuild_into_registry(origin, v1, v1_ref, v2_ref, tmp_path / "fresh")
    assert manifest_digest(v2_ref) == fresh.manifest.digest
    _check_taken(v2, v1, "prior")
    # Pushed to the prior's registry, the taken layers are mounted there, never downloaded.
    assert fetched == []


def test_a_blob_that_reads_back_wrong_is_compressed(trees: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """A prior whose blob was damaged: that layer is compressed again, the image is still right."""
    origin, _ = trees
    v1 = build(origin, f"oci:{tmp_path}/v1:v1", max_layers=LAYERS)
    damaged = max(v1.layers, key=lambda b: b.descriptor.size).descriptor
    path = tmp_path / "v1/blobs/sha256" / damaged.digest.removeprefix("sha256:")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    again = build(origin, f"oci:{tmp_path}/v2:v2", max_layers=LAYERS, prior=f"oci:{tmp_path}/v1:v1")
    assert again.manifest == v1.manifest
    assert [t for b, t in zip(again.layers, again.taken, strict=True) if b.descriptor == damaged] == [None]
    assert again.taken.count("prior") == len(v1.layers) - 1


def test_cache_across_destinations(trees: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    origin, root = trees
    cache = tmp_path / "cache"
    v1 = build(origin, f"oci:{tmp_path}/a:v1", max_layers=LAYERS, cache=str(cache))
    assert v1.taken.count(None) == len(v1.layers)
    # The cache is an ordinary OCI layout holding the image.
    with open_image(f"oci:{cache}:sha256-{v1.manifest.digest.hex}", DEFAULT_REGISTRY, blobs=False) as cached:
        assert cached.manifest_digest == v1.manifest.digest
    again = build(origin, f"oci-archive:{tmp_path}/b.tar", max_layers=LAYERS, cache=str(cache))
    assert again.manifest == v1.manifest and set(again.taken) == {"cache"}
    _update(root)
    v2 = build(
        origin, f"oci:{tmp_path}/c:v2", max_layers=LAYERS, cache=str(cache), prior=f"oci:{tmp_path}/a:v1"
    )
    fresh = _from_scratch(origin, v1, tmp_path / "fresh")
    assert v2.manifest == fresh.manifest
    _check_taken(v2, v1, "cache")
    tags = [
        m["annotations"]["org.opencontainers.image.ref.name"] for m in Layout(str(cache)).index()["manifests"]
    ]
    assert sorted(tags) == sorted(f"sha256-{i.manifest.digest.hex}" for i in (v1, v2))


def _start_build(*args: str) -> subprocess.Popen[bytes]:
    code = "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={"SOURCE_DATE_EPOCH": str(EPOCH), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def _blob_digests_ok(layout: Path) -> list[str]:
    bad = []
    for path in (layout / "blobs/sha256").iterdir():
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            bad.append(path.name)
    return bad


def test_concurrent_builds_share_a_cache(trees: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """Four builds at once, two trees, one cache: every blob in it is right,
    every image it lists is whole, and each build is the image a lone build makes."""
    _origin, root = trees
    other = packages_tree(tmp_path / "other", 9, 40_000, 7)
    cache = tmp_path / "cache"
    runs = [
        _start_build(
            "--rootfs", str(tree), f"oci:{tmp_path}/out{k}:x", "--max-layers", "6", "--cache", str(cache)
        )
        for k, tree in enumerate((root, other, root, other))
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert _blob_digests_ok(cache) == []
    index: dict[str, Any] = Layout(str(cache)).index()
    assert len(index["manifests"]) == 2
    made = []
    for k in range(4):
        with open_image(f"oci:{tmp_path}/out{k}:x", DEFAULT_REGISTRY, blobs=False) as built:
            made.append(built.manifest_digest)
            tag = f"sha256-{built.manifest_digest.hex}"
            with open_image(f"oci:{cache}:{tag}", DEFAULT_REGISTRY, blobs=False) as cached:
                for d in cached.layers:
                    assert (cache / "blobs/sha256" / d.digest.hex).stat().st_size == d.size
    assert made[0] == made[2] and made[1] == made[3] and made[0] != made[1]


def test_layer_records_survive_a_docker_archive(trees: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """docker-archive keeps no layer annotations; the config label is there, whole."""
    origin, _ = trees
    v1 = build(origin, f"oci:{tmp_path}/v1:v1", max_layers=LAYERS)
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{tmp_path}/v1:v1", f"docker-archive:{tmp_path}/v1.tar:os:v1"],
        check=True,
    )
    with open_image(f"docker-archive:{tmp_path}/v1.tar", DEFAULT_REGISTRY, blobs=False) as copied:
        assert not any(LAYER_ANNOTATION in d.annotations for d in copied.layers)
        label = json.loads(copied.config.labels[LAYERS_LABEL])
    assert label == [None if r is None else r.to_json() for r in v1.layer_records()]
    assert all(r is not None and r[1] == b.descriptor.digest for r, b in zip(label, v1.layers, strict=True))
