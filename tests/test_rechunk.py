"""Re-chunking real images built from Containerfiles (``tests/containerfiles.py``).

The re-chunked image unpacks (with umoci) to the same tree as the image it was
made from, keeps that image's runtime config and labels, is the same bytes
from every transport and on every run, and after an update built with
``--prior`` a client pulls only the layers of what changed.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from encapsulate import BuildConfig, build_image
from encapsulate.config import ImageOrigin
from encapsulate.oci.imgref import RegistryOptions
from encapsulate.oci.labels import COMPONENTS_LABEL, PLAN_LABEL
from encapsulate.tools.diff import diff_images
from encapsulate.write.image import ImageResult
from tests.conftest import RunCli
from tests.containerfiles import ADDED_SOURCES, RECIPE_LABEL, BuiltImage, BuiltImages, build_test_images
from tests.gotar.harness import GoTar, gotar  # noqa: F401 (a fixture)
from tests.images import (
    EPOCH,
    assert_same_tree,
    held_again,
    image_config,
    layer_entries,
    manifest,
    umoci_unpack,
)
from tests.test_gotar import compare

MAX_LAYERS = 16


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    """The images of ``tests/containerfiles.py``, built once (and kept between runs)."""
    return build_test_images(tmp_path_factory.mktemp("containerfiles"))


def rechunk(imgref: str, destination: str, **fields: Any) -> ImageResult:
    """``build_image`` of an image origin, at most ``MAX_LAYERS`` layers, at ``EPOCH``."""
    settings = {"max_layers": MAX_LAYERS, "epoch": EPOCH, **fields}
    result = build_image(BuildConfig(origin=ImageOrigin(imgref), destination=destination, **settings))
    assert result.image is not None
    return result.image


def tagged_digest(layout: Path, tag: str) -> str:
    """The manifest digest ``tag`` names in an OCI layout's index."""
    index = json.loads((layout / "index.json").read_text())
    (digest,) = [
        m["digest"]
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    ]
    return str(digest)


@pytest.fixture(scope="session")
def rechunked_a(images: BuiltImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image A re-chunked from its OCI layout, as tag ``r`` of the layout returned."""
    out = tmp_path_factory.mktemp("rechunked-a")
    image = rechunk(images.a.oci, f"oci:{out}:r")
    assert tagged_digest(out, "r") == image.manifest.digest
    return out


def test_the_source_images_have_the_layers_they_test(images: BuiltImages) -> None:
    # One layer per RUN step: the base, six steps for A, one more for A2.
    assert (images.base.layers, images.two.layers, images.many.layers) == (1, 2, 30)
    assert (images.a.layers, images.a2.layers) == (7, 8)


def test_rechunked_image_unpacks_to_the_same_tree(
    images: BuiltImages, rechunked_a: Path, tmp_path: Path
) -> None:
    before = umoci_unpack(images.a.layout, images.a.tag, tmp_path / "before")
    after = umoci_unpack(rechunked_a, "r", tmp_path / "after")
    assert_same_tree(before, after)
    # What the layers did, applied in order, is there (and nothing they removed).
    assert (after / "opt/x").read_text() == "hi\n"
    assert sorted(os.listdir(after / "opt/y")) == ["c"]
    for gone in ("usr/share/zoneinfo", "usr/share/doc/tzdata", "usr/share/doc/hostname", "etc/localtime"):
        assert not os.path.lexists(after / gone), gone
    assert (after / "usr/bin/nano").is_file() and (after / "usr/bin/less").is_file()
    assert os.stat(after / "usr/bin/base64").st_ino == os.stat(after / "usr/local/bin/b64").st_ino
    f = os.lstat(after / "srv/data/f")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1234, 5678, 0o4711)
    assert stat.S_ISFIFO(os.lstat(after / "srv/fifo").st_mode)
    assert os.readlink(after / "srv/link") == "../srv/data/f"
    layers = manifest(rechunked_a, "r")["layers"]
    assert 2 < len(layers) <= MAX_LAYERS


def test_config_and_labels_are_kept(images: BuiltImages, rechunked_a: Path) -> None:
    before = image_config(images.a.layout, images.a.tag)
    after = image_config(rechunked_a, "r")
    for key in ("Env", "Cmd", "WorkingDir", "User", "ExposedPorts", "StopSignal"):
        assert after["config"][key] == before["config"][key], key
    assert after["config"]["Env"][-1] == "A=1" and after["config"]["Cmd"] == ["/bin/bash"]
    assert (after["config"]["WorkingDir"], after["config"]["StopSignal"]) == ("/root", "SIGTERM")
    assert after["config"]["ExposedPorts"] == {"8080/tcp": {}}
    labels = after["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "test" and labels["containers.bootc"] == "1"
    assert labels[RECIPE_LABEL] == before["config"]["Labels"][RECIPE_LABEL]
    # The new image describes its own layers.
    assert PLAN_LABEL in labels and COMPONENTS_LABEL in labels
    assert (after["architecture"], after["os"]) == ("amd64", "linux")
    assert after["rootfs"]["diff_ids"] != before["rootfs"]["diff_ids"]


def test_two_runs_give_the_same_image(images: BuiltImages, rechunked_a: Path, tmp_path: Path) -> None:
    again = rechunk(images.a.oci, f"oci:{tmp_path}:r")
    assert again.manifest.digest == tagged_digest(rechunked_a, "r")


def test_an_update_built_with_prior_pulls_only_what_changed(images: BuiltImages, tmp_path: Path) -> None:
    rechunk(images.a.oci, f"oci:{tmp_path}:old")
    rechunk(images.a2.oci, f"oci:{tmp_path}:new", prior=f"oci:{tmp_path}:old")
    d = diff_images(f"oci:{tmp_path}:old", f"oci:{tmp_path}:new")
    assert d.changes is not None
    changed = {c.name for c in d.changes if c.status != "removed"}
    # The added packages and the state apt and dpkg rewrite, and nothing else of A.
    assert {c for c in changed if not c.startswith("volatile")} == ADDED_SOURCES
    # Only layers holding what changed are pulled (besides the small first layer
    # of directories, which the new package's directories change): A's plan used
    # every layer, so the new packages join the layer where they cost least.
    for layer, reused in zip(d.new.layers[1:], d.reused[1:], strict=True):
        assert reused or set(layer.components) & changed, layer.components
    assert sum(not r for r in d.reused) <= 4
    assert 0 < d.download_bytes < d.total_bytes / 5


def _archive(image: BuiltImage, transport: str, where: Path) -> str:
    """``image`` copied to a ``transport`` archive under ``where``; its IMGREF."""
    imgref = f"{transport}:{where / f'{transport}.tar'}"
    subprocess.run(["skopeo", "copy", "--quiet", image.oci, imgref], check=True, capture_output=True)
    return imgref


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive", "containers-storage", "registry"])
def test_every_transport_gives_the_same_image(
    transport: str, images: BuiltImages, rechunked_a: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tls_verify = None
    if transport == "containers-storage":
        source = images.a.storage
    elif transport == "registry":
        host = request.getfixturevalue("registry")
        source = f"docker://{host}/debchunk/a:latest"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", images.a.oci, source],
            check=True,
            capture_output=True,
        )
        tls_verify = False
    else:
        source = _archive(images.a, transport, tmp_path)
    image = rechunk(source, f"oci:{tmp_path / 'out'}:r", registry=RegistryOptions(tls_verify=tls_verify))
    assert image.manifest.digest == tagged_digest(rechunked_a, "r")


@pytest.mark.parametrize("which", ["base", "two", "many"])
def test_images_of_one_to_thirty_layers_unpack_to_the_same_tree(
    which: str, images: BuiltImages, tmp_path: Path
) -> None:
    source: BuiltImage = getattr(images, which)
    out = tmp_path / "out"
    image = rechunk(source.oci, f"oci:{out}:r")
    assert 2 <= len(image.layers) <= MAX_LAYERS
    before = umoci_unpack(source.layout, source.tag, tmp_path / "before")
    after = umoci_unpack(out, "r", tmp_path / "after")
    assert_same_tree(before, after)
    if which == "many":
        # Step 5 removed step 2's file, step 9 made step 8's private, step 7
        # appended to a base file.
        assert not (after / "srv/many/f02").exists() and (after / "srv/many/f28").read_text() == "28\n"
        assert stat.S_IMODE(os.lstat(after / "srv/many/f08").st_mode) == 0o600
        assert (after / "etc/issue").read_text().endswith("7\n14\n21\n28\n")


def test_cli_rechunks_as_the_library_does(
    images: BuiltImages, rechunked_a: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    layers = ("--max-layers", str(MAX_LAYERS))
    done = run_cli(
        "--from", images.a.oci, f"oci:{tmp_path}:x", *layers, env=env, program="container-encapsulate"
    )
    assert done.returncode == 0, done.stderr
    done = run_cli("rechunk", images.a.oci, f"oci:{tmp_path}:y", *layers, env=env)
    assert done.returncode == 0, done.stderr
    expected = tagged_digest(rechunked_a, "r")
    assert tagged_digest(tmp_path, "x") == tagged_digest(tmp_path, "y") == expected


def test_keep_base_keeps_the_base_layer_and_unpacks_the_same(images: BuiltImages, tmp_path: Path) -> None:
    """A built FROM the base: with --keep-base, the base's layer stays the same
    blob (clients holding the base pull nothing for it), what the RUN steps
    added is chunked above it, and the image unpacks as A does: the purged
    package, the removed directory and the replaced one included."""
    out = tmp_path / "out"
    result = build_image(
        BuildConfig(
            ImageOrigin(images.a.oci),
            f"oci:{out}:k",
            keep_base=images.base.oci,
            max_layers=MAX_LAYERS,
            epoch=EPOCH,
        )
    )
    assert result.image is not None
    base_layers = [d["digest"] for d in manifest(images.base.layout, images.base.tag)["layers"]]
    new_layers = [d["digest"] for d in manifest(out, "k")["layers"]]
    assert new_layers[: len(base_layers)] == base_layers
    assert len(base_layers) < len(new_layers) <= MAX_LAYERS
    # Only what A added or changed is planned: far less than the whole tree.
    planned = sum(c.size for c in result.mapping.components)
    everything = build_image(
        BuildConfig(ImageOrigin(images.a.oci), f"oci:{tmp_path}/unused", dry_run=True, epoch=EPOCH)
    )
    whole = sum(c.size for c in everything.mapping.components)
    assert 0 < planned < whole / 2
    assert_same_tree(
        umoci_unpack(images.a.layout, images.a.tag, tmp_path / "a"), umoci_unpack(out, "k", tmp_path / "k")
    )
    # No layer above the base holds an entry the base holds as it is (every
    # tar entry checked); the source image's RUN layer holds usr/bin/base64
    # again for its new hardlink, and so does this one.
    above = new_layers[len(base_layers) :]
    assert held_again(images.base.layout, base_layers, out, above) == []
    entries = [layer_entries(out, digest) for digest in above]
    assert "usr/bin/base64" in {e[4] for layer in entries for e in layer.values()}
    in_base = sum(len(layer_entries(images.base.layout, digest)) for digest in base_layers)
    assert sum(len(layer) for layer in entries) < in_base / 2


def test_keep_base_from_containers_storage(images: BuiltImages, tmp_path: Path) -> None:
    """A built FROM the base, both read from containers-storage, where the
    source's layers come as gzip blobs and the base's (without its blobs) by
    their uncompressed digests: matched by diff_id, the base's layers kept,
    and the image unpacks as A does."""
    out = tmp_path / "out"
    build_image(
        BuildConfig(
            ImageOrigin(images.a.storage),
            f"oci:{out}:k",
            keep_base=images.base.storage,
            max_layers=MAX_LAYERS,
            epoch=EPOCH,
        )
    )
    base_ids = image_config(images.base.layout, images.base.tag)["rootfs"]["diff_ids"]
    assert image_config(out, "k")["rootfs"]["diff_ids"][: len(base_ids)] == base_ids
    assert_same_tree(
        umoci_unpack(images.a.layout, images.a.tag, tmp_path / "a"), umoci_unpack(out, "k", tmp_path / "k")
    )


def test_buildah_layers_read_as_go_reads_them(images: BuiltImages, gotar: GoTar) -> None:  # noqa: F811
    """Every layer buildah wrote for image A (its base and one per RUN step)
    and the 30-layer image: debchunk's reader gives Go's entries."""
    read = 0
    for image in (images.a, images.many):
        for layer in manifest(image.layout, image.tag)["layers"]:
            blob = (image.layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
            data = gzip.decompress(blob) if layer["mediaType"].endswith("gzip") else blob
            assert compare(gotar, data, 1 << 20)["error"] == ""
            read += 1
    assert read == images.a.layers + images.many.layers
