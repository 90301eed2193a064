"""mapping.origin: each kind of origin read into the same tree, and origins
that name nothing refused with a MappingError."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from mapping import CommitOrigin, LayerArchive, LayersOrigin, MappingError, RootfsOrigin, Tree, read_tree


def _fields(tree: Tree) -> list[tuple[str, str, int, str | None]]:
    return [(e.path, e.type.name, e.size, e.target) for e in tree]


def _layer(tmp_path: Path, root: Path) -> LayerArchive:
    path = tmp_path / "layer.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(root.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return LayerArchive(str(path), "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), "none")


def test_every_origin_reads_the_same_tree(
    sample_tree: Path, sample_repos: dict[str, Path], tmp_path: Path
) -> None:
    rootfs = read_tree(RootfsOrigin(str(sample_tree)))
    commit = read_tree(CommitOrigin(str(sample_repos["bare-user"]), "sample"))
    layers = read_tree(LayersOrigin((_layer(tmp_path, sample_tree),), str(tmp_path / "work"), "sample:1"))
    assert [e.path for e in commit] == [e.path for e in rootfs]
    assert _fields(layers)[1:] == _fields(rootfs)[1:]
    assert layers.description == "sample:1"
    # Only a commit has commit metadata and a timestamp.
    assert commit.timestamp is not None and commit.timestamp > 0
    assert rootfs.timestamp is None and dict(rootfs.metadata) == {}
    assert layers.timestamp is None and dict(layers.metadata) == {}


def test_below_is_the_lowest_layers(tmp_path: Path) -> None:
    archives = tuple(LayerArchive(f"/l{i}", f"sha256:{i}", "gzip") for i in range(3))
    origin = LayersOrigin(archives, "/w", "img")
    base = origin.below(2, "/w/base", "base:1")
    assert base.layers == archives[:2] and base.workdir == "/w/base" and base.description == "base:1"


@pytest.mark.parametrize(
    ("origin", "words"),
    [
        (RootfsOrigin(""), "needs a path"),
        (CommitOrigin("", "ref"), "a repository and a ref"),
        (CommitOrigin("repo", ""), "a repository and a ref"),
        (LayersOrigin((), "/tmp/w"), "at least one layer"),
    ],
)
def test_an_origin_naming_nothing_is_refused(origin: object, words: str) -> None:
    with pytest.raises(MappingError, match=words):
        read_tree(origin)  # type: ignore[arg-type]


def test_not_an_origin_is_refused() -> None:
    with pytest.raises(MappingError, match="give a CommitOrigin"):
        read_tree("/some/dir")  # type: ignore[arg-type]
