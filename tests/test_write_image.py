"""encapsulate.write.image: the image's layers, labels and history, byte for
byte reproducible, reusing layers already in the layout, within max layers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chunker import Layer, Plan, pack
from encapsulate import CommitOrigin, Platform, RootfsOrigin
from encapsulate.config import reference_date
from encapsulate.describe import ImageDescription
from encapsulate.errors import EncapsulateError
from encapsulate.oci.labels import COMPONENTS_ANNOTATION, PLAN_LABEL
from encapsulate.oci.layout import Layout, LayoutTarget
from encapsulate.tools.validate import validate_image
from encapsulate.write.image import ImageResult, LayerSettings, fit_layers, write_image
from mapping import Mapping, Origin, build_mapping
from tests.images import EPOCH, build, components_of, digests, image_config, manifest, packages_tree, tags
from tests.sample import blob


def map_origin(origin: Origin) -> Mapping:
    """The origin mapped as a build at ``EPOCH`` maps it."""
    return build_mapping(origin, reference_date=reference_date(EPOCH))


def write(
    mapping: Mapping,
    plan: Plan,
    path: str,
    tag: str,
    *,
    labels: dict[str, str] | None = None,
    image_config: dict[str, Any] | None = None,
    layer_format: str = "plain",
) -> ImageResult:
    """``write_image`` of ``plan`` at ``EPOCH``, its layers fitted to ``layer_format``."""
    settings = LayerSettings(layer_format=layer_format)
    description = ImageDescription(EPOCH, Platform("amd64"), labels or {}, image_config or {})
    layers = fit_layers(mapping, plan, settings, EPOCH)
    return write_image(layers, LayoutTarget(path, tag), description, settings)


def test_layer_count_never_exceeds_max_layers(sample_tree: Path, tmp_path: Path) -> None:
    mapping = map_origin(RootfsOrigin(str(sample_tree)))
    for n in (2, 3, 5, 64):
        image = write(mapping, pack(mapping.components, n), str(tmp_path / "img"), f"n{n}")
        layers = manifest(tmp_path / "img", f"n{n}")["layers"]
        assert 2 <= len(layers) <= n and [d["digest"] for d in layers] == digests(image)


def test_labels_history_and_annotations(sample_tree: Path, tmp_path: Path) -> None:
    mapping = map_origin(RootfsOrigin(str(sample_tree)))
    plan = pack(mapping.components, 5)
    image = write(
        mapping,
        plan,
        str(tmp_path / "img"),
        "v1",
        labels={"org.example": "1"},
        image_config={"author": "me", "config": {"Env": ["A=1"], "Labels": {"x": "y"}}},
    )
    config = json.loads(Layout(str(tmp_path / "img"), create=False).read_blob(image.config.digest))
    assert config == image_config(tmp_path / "img", "v1")
    labels = config["config"]["Labels"]
    assert labels["org.example"] == "1" and labels["x"] == "y" and config["config"]["Env"] == ["A=1"]
    assert config["author"] == "me" and config["created"] == "2026-01-01T00:00:00Z"
    # The plan is in the label, the history and each layer's annotation.
    groups = [list(layer.components) for layer in plan.layers]
    assert json.loads(labels[PLAN_LABEL]) == groups
    assert image.layer_components == ((), *(tuple(g) for g in groups))
    history = config["history"]
    assert len(history) == len(image.layers) == len(config["rootfs"]["diff_ids"])
    assert history[0]["comment"] == "directories"
    assert [h["comment"] for h in history[1:]] == ["components: " + ", ".join(g) for g in groups]
    assert {h["created"] for h in history} == {"2026-01-01T00:00:00Z"}
    layers = manifest(tmp_path / "img", "v1")["layers"]
    assert COMPONENTS_ANNOTATION not in layers[0].get("annotations", {})
    assert [d["annotations"][COMPONENTS_ANNOTATION] for d in layers[1:]] == [",".join(g) for g in groups]
    assert config["rootfs"]["diff_ids"] == [b.diff_id for b in image.layers]


def _reordered_copy(src: Path, dst: Path, after: int | None = None) -> None:
    """The same tree created in another order (other inodes, other directory
    listing order), with the same mtimes; with ``after``, every mtime is set to
    a random time after ``after`` instead, as files made at install time have."""
    rng = random.Random(5)
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)
    paths = sorted(dst.rglob("*"), key=lambda p: rng.random())
    # Recreate files in shuffled order so directories list them differently.
    for p in [p for p in paths if p.is_file() and not p.is_symlink() and os.stat(p).st_nlink == 1]:
        data, st = p.read_bytes(), p.stat()
        xattrs = {n: os.getxattr(p, n) for n in os.listxattr(p)}
        p.unlink()
        p.write_bytes(data)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        for n, v in xattrs.items():
            os.setxattr(p, n, v)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    for p in sorted(paths, key=lambda p: -len(p.parts)):
        if after is not None and not p.is_symlink():
            t = rng.randint(after + 1, after + 10**8)
            os.utime(p, (t, t))
        elif p.is_dir() and not p.is_symlink():
            st = (src / p.relative_to(dst)).stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


# After the image's time and every changelog date of the sample (2027-01-15).
LATER = 1_800_000_000


def test_reproducible(sample_tree: Path, tmp_path: Path) -> None:
    a = build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/a")
    b = build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/b")
    copy = tmp_path / "copy"
    _reordered_copy(sample_tree, copy)
    c = build(RootfsOrigin(str(copy)), f"oci:{tmp_path}/c")
    assert a.manifest == b.manifest == c.manifest
    # Byte-identical blobs, not just equal digests.
    for digest in digests(a):
        assert (tmp_path / "a/blobs/sha256" / digest[7:]).read_bytes() == (
            tmp_path / "c/blobs/sha256" / digest[7:]
        ).read_bytes()
    # Two trees whose every mtime is later than the image's time and than every
    # changelog date (made at install time, in two builds): every mtime is
    # clamped, and the images are the same.
    late = [tmp_path / "late1", tmp_path / "late2"]
    for i, where in enumerate(late):
        _reordered_copy(sample_tree, where, after=LATER + i * 10**6)
    d, e = (build(RootfsOrigin(str(where)), f"oci:{tmp_path}/img-{where.name}") for where in late)
    assert d.manifest == e.manifest


def test_layers_already_in_the_layout_are_reused(tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 12, 50_000, 10)
    origin = RootfsOrigin(str(root))
    first = build(origin, f"oci:{tmp_path}/img:1", max_layers=8)
    assert not any(b.reused for b in first.layers)
    again = build(origin, f"oci:{tmp_path}/img:again", max_layers=8)
    assert again.manifest == first.manifest
    assert all(b.reused for b in again.layers)
    # One package changes: its layer is written, the others are taken from the
    # layout, and the image is the one a build into an empty layout makes.
    (root / "usr/lib/pkg05/data").write_bytes(blob("changed", 123_456))
    # A damaged blob is not taken: its layer is written again, and repaired.
    old = components_of(first)
    sizes: dict[str, int] = {b.descriptor.digest: b.descriptor.size for b in first.layers}
    damaged = next(d for d, c in old.items() if "pkg05" not in c and c)
    damaged_path = tmp_path / "img/blobs/sha256" / damaged[7:]
    damaged_path.write_bytes(damaged_path.read_bytes()[:100])
    prior = f"oci:{tmp_path}/img:1"
    second = build(origin, f"oci:{tmp_path}/img:2", max_layers=8, prior=prior)
    fresh = build(origin, f"oci:{tmp_path}/fresh:2", max_layers=8, prior=prior)
    assert second.manifest == fresh.manifest
    written = [b.descriptor.digest for b in second.layers if not b.reused]
    new = {d for d in digests(second) if d not in old}
    assert set(written) == {damaged} | new
    assert any("pkg05" in components_of(second)[d] for d in written)
    assert damaged_path.stat().st_size == sizes[damaged]
    assert validate_image(f"oci:{tmp_path}/img:2").problems == []


def test_existing_layout_keeps_other_tags(sample_tree: Path, tmp_path: Path) -> None:
    origin = RootfsOrigin(str(sample_tree))
    build(origin, f"oci:{tmp_path}/img:keep", max_layers=4)
    build(origin, f"oci:{tmp_path}/img:other", max_layers=6)
    last = build(origin, f"oci:{tmp_path}/img:other", max_layers=5)
    assert sorted(tags(tmp_path / "img")) == ["keep", "other"]
    assert len(manifest(tmp_path / "img", "other")["layers"]) == len(last.layers) <= 5
    subprocess.run(["skopeo", "inspect", f"oci:{tmp_path}/img:keep"], check=True, capture_output=True)


def test_no_temporary_files_left(sample_tree: Path, tmp_path: Path) -> None:
    build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/img")
    leftovers = [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []
    # Every blob is named by its content.
    for p in (tmp_path / "img/blobs/sha256").iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name


def test_no_layer_is_empty(sample_tree: Path, sample_repos: dict[str, Path], tmp_path: Path) -> None:
    """Plan layers holding nothing of the tree (here components it does not
    have, as a previous build's plan can name), in the middle and last, are
    not written: two empty layers share a diff_id, and a last one would hide
    the real last layer from ostree-ext's importer."""
    origins = (
        ("plain", RootfsOrigin(str(sample_tree))),
        ("ostree", CommitOrigin(str(sample_repos["bare-user"]), "sample")),
    )
    for fmt, origin in origins:
        mapping = map_origin(origin)
        packed = pack(mapping.components, 6)
        ghost = [Layer(("ghost-a",), 0, 0.1), Layer(("ghost-b",), 0, 0.1)]
        layers = (packed.layers[0], ghost[0], *packed.layers[1:], ghost[1])
        plan = replace(packed, layers=layers)
        image = write(mapping, plan, str(tmp_path / "img"), fmt, layer_format=fmt)
        diff_ids = [b.diff_id for b in image.layers]
        assert len(set(diff_ids)) == len(diff_ids) == len(packed.layers) + 1
        assert image.plan is not None
        groups = image.plan.groups()
        # The ghosts joined the layer before them, and the plan label says so.
        assert groups[0] == tuple(sorted((*packed.layers[0].components, "ghost-a")))
        assert groups[-1] == tuple(sorted((*packed.layers[-1].components, "ghost-b")))
        labels = image_config(tmp_path / "img", fmt)["config"]["Labels"]
        assert [tuple(c) for c in json.loads(labels[PLAN_LABEL])] == groups
        if fmt == "ostree":
            assert labels["ostree.final-diffid"] == diff_ids[-1]
        # Every component layer holds files of its own.
        layout = Layout(str(tmp_path / "img"))
        for b in image.layers[1:]:
            listing = subprocess.run(
                ["tar", "-tzf", "-"],
                input=layout.read_blob(b.descriptor.digest),
                capture_output=True,
                check=True,
            ).stdout.decode()
            assert [n for n in listing.splitlines() if not n.endswith("/")], f"{fmt}: an empty layer"


def test_nothing_validate_rejects_is_written(sample_tree: Path, tmp_path: Path) -> None:
    """A config field of the wrong type given to the writer (here straight
    into its description, past the readers' checks): refused before the
    config is written, naming the field; nothing is tagged."""
    mapping = map_origin(RootfsOrigin(str(sample_tree)))
    plan = pack(mapping.components, 4)
    with pytest.raises(EncapsulateError) as refused:
        write(mapping, plan, str(tmp_path / "out"), "t", image_config={"config": {"Cmd": 42}})
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}/out: the new image's config: config.Cmd does not follow"), message
    assert "debchunk writes no image that 'debchunk validate' would reject" in message
    assert tags(tmp_path / "out") == []
