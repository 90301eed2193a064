"""Images of 128 and 400 layers, end to end: ``podman pull`` (containers-storage
takes up to 500 layers), a round trip through a real registry with the same
digest, ``umoci unpack`` and ``debchunk validate``; a warning above 127 layers
(Docker's overlay2 limit) and a refusal above 500.

The real trixie tree (minbase, systemd, a kernel) has about 70 components, so
its images stop there whatever the budget; a tree of 600 components labelled
with ``user.component`` (chunkah's convention) fills 400 layers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from benches.debtrees import TreeSpec, ostree_commit
from benches.encapsulate_speed import laid_out_tree
from encapsulate import CommitOrigin, ConfigError, Format, RootfsOrigin, build_image
from encapsulate.config import BuildConfig
from encapsulate.tools.validate import validate_image
from tests.images import EPOCH, assert_same_tree, build, manifest, umoci_unpack


@pytest.fixture(scope="module")
def labelled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 components of one to a few files each, named by ``user.component``."""
    root = tmp_path_factory.mktemp("many") / "tree"
    for i in range(600):
        d = root / "usr/lib/parts" / f"p{i:03d}"
        d.mkdir(parents=True)
        os.setxattr(d, "user.component", f"part{i:03d}".encode())
        for j in range(1 + i % 3):
            (d / f"f{j}").write_bytes(f"part {i} file {j}\n".encode() * (50 + i))
    return root


def _pull_with_podman(ref: str, work: Path) -> dict[str, object]:
    """``podman pull`` into a private store; the pulled image's inspect record.
    The overlay driver stores each layer once (vfs copies the whole tree for
    every layer: hours for a real tree in many layers)."""
    run = tempfile.mkdtemp(prefix="podrun-", dir="/tmp")
    store = ["podman", "--root", str(work / "podman"), "--runroot", run, "--storage-driver", "overlay"]
    try:
        pulled = subprocess.run(
            [*store, "pull", "-q", ref], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900
        )
        assert pulled.returncode == 0, pulled.stderr
        inspect = subprocess.run(
            [*store, "image", "inspect", pulled.stdout.split()[-1]],
            capture_output=True,
            text=True,
            check=True,
        )
        record: dict[str, object] = json.loads(inspect.stdout)[0]
        return record
    finally:
        subprocess.run([*store, "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", run], check=True)


def _round_trip(layout: Path, tag: str, registry: str, work: Path) -> None:
    """Push to the registry and copy back: the same manifest digest both ways."""
    digest = (
        "sha256:"
        + hashlib.sha256(
            (layout / "blobs/sha256" / _manifest_digest(layout, tag)[7:]).read_bytes()
        ).hexdigest()
    )
    remote = f"docker://{registry}/many/{tag}:latest"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}", remote],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", remote, f"oci:{work}/back:{tag}"],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert _manifest_digest(work / "back", tag) == digest
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", remote], capture_output=True, check=True
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest


def _manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    return str(entry["digest"])


def test_400_layers_end_to_end(
    labelled_tree: Path, registry: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="debchunk"):
        image = build(RootfsOrigin(str(labelled_tree)), f"oci:{tmp_path}/img:n400", max_layers=400)
    assert "Docker's overlay2 driver cannot pull images of more than 127 layers" in caplog.text
    layers = manifest(tmp_path / "img", "n400")["layers"]
    assert len(layers) == len(image.layers) == 400
    assert len({d["digest"] for d in layers}) == 400
    validation = validate_image(f"oci:{tmp_path}/img:n400")
    assert validation.valid, validation.problems
    assert validation.layers == 400
    assert_same_tree(labelled_tree, umoci_unpack(tmp_path / "img", "n400", tmp_path / "unpacked"))
    _round_trip(tmp_path / "img", "n400", registry, tmp_path)
    pulled = _pull_with_podman(f"oci:{tmp_path}/img:n400", tmp_path)
    assert len(pulled["RootFS"]["Layers"]) == 400  # type: ignore[index]


@pytest.mark.realtree
@pytest.mark.parametrize("fmt", list(Format))
def test_real_tree_at_128_and_400_layers(fmt: Format, registry: str, tmp_path: Path) -> None:
    tree = laid_out_tree(TreeSpec("trixie"))
    origin: RootfsOrigin | CommitOrigin = RootfsOrigin(str(tree))
    if fmt is Format.OSTREE:
        ostree_commit(tree, tmp_path / "repo", "debian/trixie")
        origin = CommitOrigin(str(tmp_path / "repo"), "debian/trixie")
    counts = {}
    for n in (128, 400):
        image = build(origin, f"oci:{tmp_path}/img:n{n}", max_layers=n, format=fmt)
        counts[n] = len(image.layers)
        validation = validate_image(f"oci:{tmp_path}/img:n{n}")
        assert validation.valid, validation.problems
    # Every component in a layer of its own (or with few others) at 128 already.
    assert counts[128] == counts[400] > 64
    _round_trip(tmp_path / "img", "n400", registry, tmp_path)
    pulled = _pull_with_podman(f"oci:{tmp_path}/img:n400", tmp_path)
    assert len(pulled["RootFS"]["Layers"]) == counts[400]  # type: ignore[index]


def test_more_than_500_layers_is_refused(tmp_path: Path) -> None:
    config = BuildConfig(RootfsOrigin(str(tmp_path)), f"oci:{tmp_path}/x", max_layers=501, epoch=EPOCH)
    with pytest.raises(ConfigError, match="--max-layers 501"):
        build_image(config)
    assert not (tmp_path / "x").exists()
