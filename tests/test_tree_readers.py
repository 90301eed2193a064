"""Both tree readers see the same entries; every kind of filesystem object survives."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from mapping import CommitOrigin, EntryType, RootfsOrigin, read_tree
from mapping.tree import Entry, Tree
from tests.sample import CAP_NET_RAW_EP


def _meta(e: Entry) -> tuple[object, ...]:
    return (e.type, e.mode, e.uid, e.gid, e.size, e.target, e.xattrs, e.rdev)


@pytest.mark.parametrize("mode", ["bare-user", "bare", "archive"])
def test_commit_and_rootfs_read_the_same_tree(
    sample_tree: Path, sample_repos: dict[str, Path], mode: str
) -> None:
    commit = read_tree(CommitOrigin(str(sample_repos[mode]), "sample"))
    rootfs = read_tree(RootfsOrigin(str(sample_tree)))
    assert [e.path for e in commit] == [e.path for e in rootfs]
    for a, b in zip(commit, rootfs, strict=True):
        assert _meta(a) == _meta(b), a.path
    # Content read through libostree is the tree's content.
    for e in commit:
        if e.type is EntryType.FILE:
            with e.open() as f:
                assert hashlib.sha256(f.read()).hexdigest() == rootfs.get(e.path).content_id  # type: ignore[union-attr]


def test_commit_checksum_accepted_as_ref(sample_repos: dict[str, Path]) -> None:
    repo = sample_repos["bare-user"]
    checksum = subprocess.run(
        ["ostree", "rev-parse", f"--repo={repo}", "sample"], capture_output=True, text=True, check=True
    ).stdout.strip()
    by_ref = read_tree(CommitOrigin(str(repo), "sample"))
    by_checksum = read_tree(CommitOrigin(str(repo), checksum))
    assert [(_meta(e), e.content_id) for e in by_ref] == [(_meta(e), e.content_id) for e in by_checksum]


@pytest.mark.parametrize("mode", ["bare-user", "bare", "archive"])
def test_xattrs_setuid_and_hardlinks_survive_the_commit(sample_repos: dict[str, Path], mode: str) -> None:
    tree = read_tree(CommitOrigin(str(sample_repos[mode]), "sample"))
    app = tree.get("opt/app")
    assert app is not None and app.xattr(b"user.component") == b"app"
    ping, su = tree.get("usr/bin/ping"), tree.get("usr/bin/su")
    assert ping is not None and ping.xattr(b"security.capability") == CAP_NET_RAW_EP
    assert su is not None and su.mode == 0o4755
    gzip, gunzip = tree.get("usr/bin/gzip"), tree.get("usr/bin/gunzip")
    assert gzip is not None and gunzip is not None
    assert gzip.hardlink is not None and gzip.hardlink == gunzip.hardlink


@pytest.fixture
def odd_tree(tmp_path: Path) -> Path:
    """Hardlinks, symlinks, device nodes, a fifo, a socket, setuid/setgid/sticky
    bits, binary xattrs and a non-UTF-8 name."""
    root = tmp_path / "odd"
    (root / "d").mkdir(parents=True)
    (root / "d/file").write_bytes(b"hello\n")
    os.link(root / "d/file", root / "d/hardlink")
    (root / "d/same-content").write_bytes(b"hello\n")
    os.symlink("../outside/of/nothing", root / "d/dangling")
    os.symlink("/etc/passwd", root / "d/absolute")
    os.mknod(root / "d/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "d/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(root / "d/fifo", 0o640)
    suid = root / "d/suid"
    suid.write_bytes(b"#!/bin/sh\n")
    os.chmod(suid, 0o4755)
    os.chmod(root / "d", 0o3775)
    os.setxattr(root / "d/file", "user.binary", b"\x00\xff\x80value")
    os.chown(root / "d/same-content", 1234, 5678)
    weird = os.fsencode(str(root / "d")) + b"/caf\xe9-latin1"
    with open(weird, "wb") as f:
        f.write(b"bytes name\n")
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "d/socket"))
    sock.close()
    return root


def test_rootfs_preserves_every_kind_of_object(odd_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree: Tree = read_tree(RootfsOrigin(str(odd_tree)))
    by = {e.path: e for e in tree}
    f, h, same = by["d/file"], by["d/hardlink"], by["d/same-content"]
    assert f.hardlink is not None and f.hardlink == h.hardlink and same.hardlink is None
    assert f.content_id == h.content_id == same.content_id == hashlib.sha256(b"hello\n").hexdigest()
    assert (same.uid, same.gid) == (1234, 5678)
    assert by["d/dangling"].type is EntryType.SYMLINK and by["d/dangling"].target == "../outside/of/nothing"
    assert by["d/absolute"].target == "/etc/passwd" and by["d/absolute"].content_id is None
    assert by["d/null"].type is EntryType.CHAR and by["d/null"].rdev == os.makedev(1, 3)
    assert by["d/loop0"].type is EntryType.BLOCK and by["d/loop0"].rdev == os.makedev(7, 0)
    assert by["d/fifo"].type is EntryType.FIFO and by["d/fifo"].mode == 0o640
    assert by["d/suid"].mode == 0o4755 and by["d"].mode == 0o3775
    assert f.xattr(b"user.binary") == b"\x00\xff\x80value"
    weird = os.fsdecode(b"d/caf\xe9-latin1")
    assert weird in by and by[weird].content_id == hashlib.sha256(b"bytes name\n").hexdigest()
    with by[weird].open() as fh:
        assert fh.read() == b"bytes name\n"
    # Sockets cannot be stored: skipped with a warning naming them.
    assert "d/socket" not in by
    assert any("d/socket" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_rootfs_xattrs_of_the_entry_itself(tmp_path: Path) -> None:
    """Extended attributes as stored: binary values, non-UTF-8 names as bytes,
    sorted; a symlink's are never its target's."""
    root = tmp_path / "x"
    root.mkdir()
    target = root / "target"
    target.write_bytes(b"t")
    os.setxattr(target, "user.component", b"from-the-target")
    os.setxattr(target, os.fsencode("user.") + b"caf\xe9", b"\x00latin1")
    os.setxattr(target, "user.a", b"")
    os.symlink("target", root / "link")
    os.symlink("/", root / "to-host-root")
    (root / "plain").write_bytes(b"p")
    tree = read_tree(RootfsOrigin(str(root)))
    by = {e.path: e for e in tree}
    assert by["target"].xattrs == (
        (b"user.a", b""),
        (b"user.caf\xe9", b"\x00latin1"),
        (b"user.component", b"from-the-target"),
    )
    assert by["link"].xattrs == () and by["to-host-root"].xattrs == ()
    assert by["plain"].xattrs == ()
    # The link's file is mapped to its directory's component, not the target's xattr.
    from mapping import map_tree

    m = map_tree(tree)
    assert m.owner("target").name == "from-the-target"  # type: ignore[union-attr]
    assert m.owner("link").name != "from-the-target"  # type: ignore[union-attr]


def test_symlinks_resolve_inside_the_tree_only(odd_tree: Path) -> None:
    tree = read_tree(RootfsOrigin(str(odd_tree)))
    # /etc/passwd exists on the host but not in the tree: never read from the host.
    assert tree.resolve("d/absolute") is None
    assert tree.read_bytes("d/absolute") is None
    (odd_tree / "etc").mkdir()
    (odd_tree / "etc/passwd").write_bytes(b"tree's own\n")
    tree = read_tree(RootfsOrigin(str(odd_tree)))
    assert tree.resolve("d/absolute") == "etc/passwd"
    assert tree.read_bytes("d/absolute") == b"tree's own\n"
    # Parents are followed: a link to a directory works, climbing stops at the root.
    os.symlink("../../../../../d", odd_tree / "up")
    tree = read_tree(RootfsOrigin(str(odd_tree)))
    assert tree.resolve("up/file") == "d/file"
    assert tree.read_bytes("up/file") == b"hello\n"
