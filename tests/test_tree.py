"""mapping.tree: entries, lookups, resolution confined to the tree, content,
and the commit facts every tree has (empty metadata, no timestamp, unless a
commit gives them)."""

from __future__ import annotations

import io
import logging
import stat
from typing import BinaryIO

import pytest

from mapping import Entry, EntryType, MappingError, Tree


class _Memory:
    """Content held in memory, by path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def open(self, entry: Entry) -> BinaryIO:
        return io.BytesIO(self.files[entry.path])


def _tree(**kw: object) -> Tree:
    """usr/{bin/sh, lib/os-release}; bin -> usr/bin; etc/os-release ->
    ../usr/lib/os-release; up -> ../../.. (climbs above the root)."""
    files = {"usr/bin/sh": b"#!sh", "usr/lib/os-release": b"ID=debian\n"}
    memory = _Memory(files)

    def directory(path: str) -> Entry:
        return Entry(path, EntryType.DIR, 0o755, 0, 0)

    def link(path: str, target: str) -> Entry:
        return Entry(path, EntryType.SYMLINK, 0o777, 0, 0, target=target)

    def file(path: str) -> Entry:
        return Entry(path, EntryType.FILE, 0o644, 0, 0, len(files[path]), content_id=path, source=memory)

    entries = [
        directory(""),
        link("bin", "usr/bin"),
        directory("etc"),
        link("etc/os-release", "../usr/lib/os-release"),
        link("up", "../../.."),
        directory("usr"),
        directory("usr/bin"),
        file("usr/bin/sh"),
        directory("usr/lib"),
        file("usr/lib/os-release"),
    ]
    return Tree("memory", entries, **kw)  # type: ignore[arg-type]


def test_commit_facts_default_to_none() -> None:
    tree = _tree()
    assert tree.metadata == {} and tree.timestamp is None
    given = _tree(metadata={"version": "1"}, timestamp=1_767_225_600)
    assert given.metadata == {"version": "1"} and given.timestamp == 1_767_225_600


def test_lookups_and_children() -> None:
    tree = _tree()
    assert len(tree) == 10 and [e.path for e in tree][:2] == ["", "bin"]
    assert tree.get("usr/bin/sh") is not None and tree.get("bin/sh") is None
    assert [e.path for e in tree.children("usr")] == ["usr/bin", "usr/lib"]
    assert [e.path for e in tree.children("")] == ["bin", "etc", "up", "usr"]
    assert list(tree.children("nonesuch")) == []


def test_resolution_stays_in_the_tree(caplog: pytest.LogCaptureFixture) -> None:
    tree = _tree()
    assert tree.resolve("bin/sh") == "usr/bin/sh"
    assert tree.resolve("/bin/sh") == "usr/bin/sh"
    assert tree.resolve("bin", follow=False) == "bin"
    assert tree.resolve("bin") == "usr/bin"
    assert tree.resolve("etc/os-release") == "usr/lib/os-release"
    assert tree.resolve("no/such") is None
    assert tree.resolve("usr/bin/sh/x") is None  # a file is not a directory
    caplog.set_level(logging.WARNING)
    # ".." stops at the root, as in a chroot, with a warning naming the link.
    assert tree.resolve("up/usr/bin/sh") == "usr/bin/sh"
    assert any("symlink up -> ../../.." in r.getMessage() for r in caplog.records)


def test_content() -> None:
    tree = _tree()
    assert tree.read_bytes("etc/os-release") == b"ID=debian\n"
    assert tree.read_bytes("/bin/sh", limit=2) == b"#!"
    assert tree.read_bytes("usr/bin") is None and tree.read_bytes("nonesuch") is None
    sh = tree.get("usr/bin/sh")
    assert sh is not None and sh.xattr(b"user.component") is None
    with sh.open() as f:
        assert f.read() == b"#!sh"
    link = tree.get("bin")
    assert link is not None
    with pytest.raises(MappingError, match="bin: not a regular file"):
        link.open()


def test_entry_types_from_modes() -> None:
    assert EntryType.from_mode(stat.S_IFREG | 0o644) is EntryType.FILE
    assert EntryType.from_mode(stat.S_IFLNK) is EntryType.SYMLINK
    assert EntryType.from_mode(stat.S_IFBLK) is EntryType.BLOCK
    assert EntryType.from_mode(stat.S_IFSOCK) is None
