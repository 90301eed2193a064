"""The dirtree decoder agrees with GLib on every dirtree, for every offset width."""

from __future__ import annotations

import subprocess
from pathlib import Path

import gi
import pytest

from mapping import CommitOrigin

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree  # noqa: E402

from mapping._gvariant import VariantFormatError, decode_dirtree  # noqa: E402
from tests.sample import commit  # noqa: E402


def _dirtrees(repo: Path) -> list[str]:
    return [
        p.parent.name + p.name.removesuffix(".dirtree") for p in sorted((repo / "objects").rglob("*.dirtree"))
    ]


def _with_glib(variant: OSTree.Variant) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, bytes]]]:
    files, dirs = variant.unpack()
    return (
        [(name, bytes(c)) for name, c in files],
        [(name, bytes(t), bytes(m)) for name, t, m in dirs],
    )


def test_decoder_matches_glib(tmp_path: Path, sample_repos: dict[str, Path]) -> None:
    # One directory small enough for 1-byte offsets, one needing 2, one needing 4.
    tree = tmp_path / "tree"
    for name, count in (("small", 2), ("medium", 300), ("large", 3000)):
        (tree / name).mkdir(parents=True)
        for i in range(count):
            (tree / name / f"{'é' * 10}-file-{i:05}").write_text(str(i))
        (tree / name / "sub").mkdir()
    repo = tmp_path / "repo"
    commit(tree, repo, "big")
    checked = 0
    for r in (repo, sample_repos["bare-user"]):
        ostree = OSTree.Repo.new(Gio.File.new_for_path(str(r)))
        ostree.open(None)
        for checksum in _dirtrees(r):
            _, variant = ostree.load_variant(OSTree.ObjectType.DIR_TREE, checksum)
            data = variant.get_data_as_bytes().get_data()
            assert decode_dirtree(data) == _with_glib(variant)
            checked += 1
    sizes = [len((repo / "objects" / c[:2] / f"{c[2:]}.dirtree").read_bytes()) for c in _dirtrees(repo)]
    assert max(sizes) > 0xFFFF and any(0xFF < s <= 0xFFFF for s in sizes) and min(sizes) <= 0xFF
    assert checked > 20


@pytest.mark.parametrize("data", [b"\x05", b"abc\x00\x10", b"\xff" * 40])
def test_decoder_rejects_garbage(data: bytes) -> None:
    with pytest.raises((VariantFormatError, UnicodeDecodeError)):
        decode_dirtree(data)


def test_ls_sees_what_the_decoder_sees(sample_repos: dict[str, Path]) -> None:
    from mapping import read_tree

    repo = sample_repos["bare-user"]
    listing = subprocess.run(
        ["ostree", "ls", "-R", f"--repo={repo}", "sample"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    paths = sorted(
        line.split()[-1].lstrip("/") if " -> " not in line else line.split()[-3].lstrip("/")
        for line in listing
    )
    assert sorted(e.path for e in read_tree(CommitOrigin(str(repo), "sample"))) == paths
