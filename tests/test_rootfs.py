"""mapping.rootfs: a root directory read by an lstat walk, content ids hashed
once per inode in threads, content opened without following symlinks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mapping import EntryType, MappingError
from mapping.rootfs import RootfsTree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "b").mkdir(parents=True)
    (root / "a").write_bytes(b"alpha")
    (root / "b/big").write_bytes(os.urandom(3 << 20))
    os.link(root / "b/big", root / "b/big-again")
    (root / "b/copy").write_bytes(b"alpha")
    for i in range(200):  # enough files for several hashing threads
        (root / "b" / f"f{i:03}").write_bytes(f"{i}".encode())
    os.symlink("b/big", root / "z")
    os.utime(root / "a", (0, 1_700_000_000.75))
    return root


def test_walk_order_ids_and_hardlinks(root: Path) -> None:
    tree = RootfsTree(str(root), threads=4)
    paths = [e.path for e in tree]
    assert paths[:5] == ["", "a", "b", "b/big", "b/big-again"] and paths[-1] == "z"
    by = {e.path: e for e in tree}
    for e in tree:
        if e.type is EntryType.FILE:
            assert e.content_id == hashlib.sha256((root / e.path).read_bytes()).hexdigest()
    assert by["a"].content_id == by["b/copy"].content_id and by["a"].hardlink is None
    assert by["b/big"].hardlink is not None and by["b/big"].hardlink == by["b/big-again"].hardlink
    assert by["a"].mtime == 1_700_000_000 and by["b/big"].size == 3 << 20
    assert by["z"].type is EntryType.SYMLINK and by["z"].target == "b/big" and by["z"].content_id is None
    # One thread or several: the same tree.
    assert list(RootfsTree(str(root), threads=1)) == list(tree)
    # A root directory has no commit metadata.
    assert tree.metadata == {} and tree.timestamp is None and tree.description == str(root)


def test_content_is_opened_without_following_a_symlink(root: Path) -> None:
    tree = RootfsTree(str(root))
    a = tree.get("a")
    assert a is not None
    with a.open() as f:
        assert f.read() == b"alpha"
    # Replaced by a symlink after the walk: refused, never followed out.
    os.unlink(root / "a")
    os.symlink("/etc/passwd", root / "a")
    with pytest.raises(MappingError, match=f"{root}/a: cannot read"):
        a.open()


def test_bad_roots_are_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=f"{tmp_path}/missing: .*pass --rootfs an existing directory"):
        RootfsTree(str(tmp_path / "missing"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MappingError, match=f"{tmp_path}/file: not a directory"):
        RootfsTree(str(tmp_path / "file"))
