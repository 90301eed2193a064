"""An image's tree as an OSTree commit (encapsulate/write/ostree_commit.py):
``ostree_layout`` of small hand-made trees (etc to usr/etc, the dpkg
database under usr, the kernel beside its modules, var and the API
filesystems emptied, device nodes and fifos dropped), and ``commit_tree``
into a bare-user repository that libostree and ``ostree fsck`` read back,
with the timestamp and metadata given."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import BinaryIO

import gi
import pytest

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree  # noqa: E402

from encapsulate import EncapsulateError  # noqa: E402
from encapsulate.write.ostree_commit import commit_tree, kernels, ostree_layout  # noqa: E402
from mapping import CommitOrigin, Entry, EntryType, RootfsOrigin, Tree, read_tree  # noqa: E402
from tests.images import EPOCH  # noqa: E402
from tests.sample import blob  # noqa: E402

KERNEL = "6.12.0-1-amd64"
DATABASE = "usr/share/dpkg/database"
SETUID_XATTR = (b"user.test", b"\x00\x01binary")
# More than the 1 MiB libostree is given from memory: written through a pipe.
BIG = blob("big", 1_500_000)


class Contents:
    """File content by content id, as a tree reader gives it."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def add(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        self.data[key] = data
        return key

    def open(self, entry: Entry) -> BinaryIO:
        return io.BytesIO(self.data[entry.content_id or ""])


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, EntryType.DIR, mode, 0, 0)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, EntryType.SYMLINK, 0o777, 0, 0, target=target)


def node(path: str, kind: EntryType) -> Entry:
    return Entry(path, kind, 0o600, 0, 0, rdev=os.makedev(1, 3) if kind is not EntryType.FIFO else 0)


Spec = Entry | tuple[str, bytes] | tuple[str, bytes, dict[str, object]]


def make_tree(contents: Contents, specs: list[Spec]) -> Tree:
    """A ``Tree`` of ``specs``: entries as they are, ``(path, data[, fields])`` regular files."""
    entries = []
    for spec in specs:
        if isinstance(spec, Entry):
            entries.append(spec)
            continue
        path, data, *rest = spec
        fields: dict[str, object] = {"mode": 0o644, "uid": 0, "gid": 0, **(rest[0] if rest else {})}
        entries.append(
            Entry(
                path,
                EntryType.FILE,
                size=len(data),
                content_id=contents.add(data),
                source=contents,
                **fields,  # type: ignore[arg-type]
            )
        )
    return Tree("test image", entries)


def debian_tree(contents: Contents) -> Tree:
    """A Debian tree as an image's layers give it: /etc, the kernel in /boot,
    the dpkg database in /var, devices, a fifo, state in /var, no /sys or /tmp."""
    return make_tree(
        contents,
        [
            directory(""),
            directory("boot"),
            (f"boot/config-{KERNEL}", b"CONFIG_X=y\n"),
            (f"boot/initrd.img-{KERNEL}", b"initrd" * 100),
            (f"boot/vmlinuz-{KERNEL}", b"kernel" * 100),
            directory("dev"),
            node("dev/null", EntryType.CHAR),
            directory("etc"),
            ("etc/hostname", b"box\n", {"mode": 0o600}),
            directory("etc/ssl", 0o700),
            ("etc/ssl/key", b"secret", {"uid": 7, "gid": 8}),
            symlink("initrd.img", f"boot/initrd.img-{KERNEL}"),
            directory("proc"),
            ("proc/stale", b"x"),
            directory("srv"),
            node("srv/console", EntryType.CHAR),
            ("srv/data", b"data", {"mode": 0o4711, "uid": 1234, "gid": 5678, "xattrs": (SETUID_XATTR,)}),
            node("srv/disk", EntryType.BLOCK),
            node("srv/fifo", EntryType.FIFO),
            directory("usr"),
            directory("usr/bin"),
            ("usr/bin/dash", b"\x7fELF dash", {"mode": 0o755, "hardlink": "dash"}),
            ("usr/bin/rbash", b"\x7fELF dash", {"mode": 0o755, "hardlink": "dash"}),
            symlink("usr/bin/sh", "dash"),
            directory("usr/lib"),
            directory("usr/lib/modules"),
            directory(f"usr/lib/modules/{KERNEL}"),
            (f"usr/lib/modules/{KERNEL}/modules.dep", b"\n"),
            directory("usr/share"),
            ("usr/share/big", BIG),
            directory("var"),
            directory("var/cache"),
            ("var/cache/junk", b"junk"),
            directory("var/lib"),
            directory("var/lib/dpkg"),
            directory("var/lib/dpkg/info"),
            ("var/lib/dpkg/info/dash.list", b"/usr/bin/dash\n"),
            ("var/lib/dpkg/status", b"Package: dash\n"),
            directory("var/log"),
            symlink("vmlinuz", f"boot/vmlinuz-{KERNEL}"),
        ],
    )


LAID_OUT = [
    "",
    "boot",
    "dev",
    "proc",
    "run",
    "srv",
    "srv/data",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/bin/dash",
    "usr/bin/rbash",
    "usr/bin/sh",
    "usr/etc",
    "usr/etc/hostname",
    "usr/etc/ssl",
    "usr/etc/ssl/key",
    "usr/lib",
    "usr/lib/modules",
    f"usr/lib/modules/{KERNEL}",
    f"usr/lib/modules/{KERNEL}/initramfs.img",
    f"usr/lib/modules/{KERNEL}/modules.dep",
    f"usr/lib/modules/{KERNEL}/vmlinuz",
    "usr/share",
    "usr/share/big",
    "usr/share/dpkg",
    DATABASE,
    f"{DATABASE}/info",
    f"{DATABASE}/info/dash.list",
    f"{DATABASE}/status",
    "var",
    "var/lib",
    "var/lib/dpkg",
    "var/tmp",
]


def by_path(tree: Tree) -> dict[str, Entry]:
    return {e.path: e for e in tree.entries}


def test_a_debian_tree_is_laid_out_as_an_ostree_image_builder_does(caplog: pytest.LogCaptureFixture) -> None:
    source = debian_tree(Contents())
    before = by_path(source)
    with caplog.at_level(logging.WARNING, "debchunk"):
        laid_out = ostree_layout(source)
    # Sorted depth first, children by name, every parent a directory.
    assert [e.path for e in laid_out] == LAID_OUT
    after = by_path(laid_out)
    for path in LAID_OUT[1:]:
        assert after[path.rpartition("/")[0]].type is EntryType.DIR, path
    # etc is usr/etc, entry for entry.
    for name in ("hostname", "ssl", "ssl/key"):
        moved, was = after[f"usr/etc/{name}"], before[f"etc/{name}"]
        assert (moved.type, moved.mode, moved.uid, moved.gid, moved.content_id) == (
            was.type,
            was.mode,
            was.uid,
            was.gid,
            was.content_id,
        )
    # The database is under usr, with a relative symlink left in var.
    assert after[f"{DATABASE}/status"].content_id == before["var/lib/dpkg/status"].content_id
    assert after["var/lib/dpkg"].type is EntryType.SYMLINK
    assert after["var/lib/dpkg"].target == "../../usr/share/dpkg/database"
    # The kernel and initramfs beside the modules; boot emptied, the top-level symlinks gone.
    modules = f"usr/lib/modules/{KERNEL}"
    assert after[f"{modules}/vmlinuz"].content_id == before[f"boot/vmlinuz-{KERNEL}"].content_id
    assert after[f"{modules}/initramfs.img"].content_id == before[f"boot/initrd.img-{KERNEL}"].content_id
    assert kernels(laid_out) == [KERNEL] and kernels(source) == []
    # The API filesystems and tmp are there, empty; the missing ones made.
    assert (after["tmp"].mode, after["var/tmp"].mode, after["sys"].mode) == (0o1777, 0o1777, 0o755)
    # What is kept is kept as it was: setuid, owner, xattrs, hardlinks.
    assert after["srv/data"] == before["srv/data"]
    assert after["usr/bin/rbash"] == before["usr/bin/rbash"]
    # Device nodes and fifos outside dev are dropped, and said so once.
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("test image: 3 device node(s) or fifo(s) dropped")
    assert "srv/console" in warning and "srv/disk" in warning and "srv/fifo" in warning
    # A tree laid out passes unchanged.
    again = ostree_layout(laid_out)
    assert list(again.entries) == list(laid_out.entries)


def test_sockets_and_fifos_of_a_root_directory_are_not_committed(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "srv").mkdir(parents=True)
    (root / "srv/kept").write_bytes(b"k")
    os.mkfifo(root / "srv/fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(root / "srv/socket"))
        laid_out = ostree_layout(read_tree(RootfsOrigin(str(root))))
    paths = [e.path for e in laid_out]
    assert "srv/kept" in paths and "srv/fifo" not in paths and "srv/socket" not in paths


def test_what_is_in_place_already_stays() -> None:
    contents = Contents()
    tree = make_tree(
        contents,
        [
            directory(""),
            directory("boot"),
            (f"boot/vmlinuz-{KERNEL}", b"old kernel"),
            directory("etc"),
            ("etc/x", b"file now"),
            directory("usr"),
            directory("usr/etc"),
            directory("usr/etc/x"),
            ("usr/etc/x/y", b"below a directory that gives way"),
            directory("usr/lib"),
            directory("usr/lib/modules"),
            directory(f"usr/lib/modules/{KERNEL}"),
            (f"usr/lib/modules/{KERNEL}/vmlinuz", b"new kernel"),
            directory("usr/lib/sysimage"),
            directory("usr/lib/sysimage/dpkg"),
            ("usr/lib/sysimage/dpkg/status", b"Package: new\n"),
            directory("var"),
            directory("var/lib"),
            directory("var/lib/dpkg"),
            ("var/lib/dpkg/status", b"Package: old\n"),
            directory("var/tmp", 0o1777),
        ],
    )
    after = by_path(ostree_layout(tree))
    # etc's file wins over usr/etc's directory, and what was below it goes.
    assert after["usr/etc/x"].content_id == contents.add(b"file now") and "usr/etc/x/y" not in after
    # The kernel beside its modules is the one kept.
    assert after[f"usr/lib/modules/{KERNEL}/vmlinuz"].content_id == contents.add(b"new kernel")
    assert [p for p in after if p.startswith("boot/")] == []
    # A database under usr already: var's is dropped with the rest of var.
    assert after["usr/lib/sysimage/dpkg/status"].content_id == contents.add(b"Package: new\n")
    assert DATABASE not in after
    assert [p for p in after if p.startswith("var")] == ["var", "var/tmp"]
    # A var/lib/dpkg symlink (a tree laid out before) is kept as it is.
    linked = make_tree(
        contents,
        [directory(""), directory("var"), directory("var/lib"), symlink("var/lib/dpkg", "../../x")],
    )
    kept = by_path(ostree_layout(linked))
    assert kept["var/lib/dpkg"].target == "../../x" and "var/lib" in kept and "var/tmp" in kept


def test_a_name_or_target_that_is_not_utf8_is_refused() -> None:
    name = b"srv/caf\xe9".decode("utf-8", "surrogateescape")
    for entry, shown in (
        (Entry(name, EntryType.FILE, 0o644, 0, 0), "srv/caf\\xe9"),
        (symlink("srv/link", name), "srv/link"),
    ):
        tree = make_tree(Contents(), [directory(""), directory("srv"), entry])
        with pytest.raises(EncapsulateError) as caught:
            ostree_layout(tree)
        e = caught.value
        assert (
            e.where == "test image" and str(e).startswith(f"test image: {shown}: ") and "not UTF-8" in str(e)
        )
        assert e.hint is not None and "--format plain" in e.hint
        assert "\n" not in str(e)


def load_commit(repo_path: Path, ref: str) -> tuple[str, object]:
    """The checksum of ``ref`` and its commit variant, read with libostree."""
    repo = OSTree.Repo.new(Gio.File.new_for_path(str(repo_path)))
    repo.open(None)
    _, checksum = repo.resolve_rev(ref, False)
    _, commit = repo.load_variant(OSTree.ObjectType.COMMIT, checksum)
    return checksum, commit


def test_commit_tree_writes_a_commit_libostree_reads(tmp_path: Path) -> None:
    contents = Contents()
    laid_out = ostree_layout(debian_tree(contents))
    repo = tmp_path / "repo"
    checksum = commit_tree(laid_out, str(repo), "test/ref", timestamp=EPOCH, metadata={"version": "42.1"})
    assert "mode=bare-user\n" in (repo / "config").read_text()
    fsck = subprocess.run(["ostree", "fsck", f"--repo={repo}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    resolved, commit = load_commit(repo, "test/ref")
    assert resolved == checksum
    assert OSTree.commit_get_timestamp(commit) == EPOCH
    assert OSTree.commit_get_parent(commit) is None
    metadata = commit.get_child_value(0).unpack()  # type: ignore[attr-defined]
    # A kernel makes it bootable, as ``ostree commit --bootable`` does.
    assert metadata["version"] == "42.1"
    assert metadata["ostree.bootable"] is True and metadata["ostree.linux"] == KERNEL
    # Read back, every entry is as the tree said, content included.
    committed = by_path(read_tree(CommitOrigin(str(repo), "test/ref")))
    assert sorted(committed) == sorted(LAID_OUT)
    for e in laid_out.entries:
        c = committed[e.path]
        assert (c.type, c.mode, c.uid, c.gid, c.target, c.size) == (
            e.type,
            e.mode,
            e.uid,
            e.gid,
            e.target,
            e.size,
        )
        assert c.xattrs == e.xattrs, e.path
        if e.type is EntryType.FILE:
            with c.open() as f:
                assert f.read() == contents.data[e.content_id or ""], e.path
    assert committed["srv/data"].mode == 0o4711 and committed["srv/data"].xattrs == (SETUID_XATTR,)
    # One object for the two names of a file.
    assert committed["usr/bin/dash"].content_id == committed["usr/bin/rbash"].content_id


def test_the_same_tree_and_time_give_the_same_commit(tmp_path: Path) -> None:
    laid_out = ostree_layout(debian_tree(Contents()))
    one = commit_tree(laid_out, str(tmp_path / "one"), "r", timestamp=EPOCH, threads=1)
    assert commit_tree(laid_out, str(tmp_path / "two"), "r", timestamp=EPOCH, threads=3) == one
    assert commit_tree(laid_out, str(tmp_path / "three"), "r", timestamp=EPOCH + 1) != one
    assert (
        commit_tree(laid_out, str(tmp_path / "four"), "r", timestamp=EPOCH, metadata={"version": "2"}) != one
    )
    # No kernel: no bootable metadata, nothing but what was given.
    plain = make_tree(Contents(), [directory(""), directory("srv"), ("srv/a", b"a")])
    commit_tree(ostree_layout(plain), str(tmp_path / "plain"), "r", timestamp=EPOCH, metadata={"k": "v"})
    _, commit = load_commit(tmp_path / "plain", "r")
    assert commit.get_child_value(0).unpack() == {"k": "v"}  # type: ignore[attr-defined]


class Failing(Contents):
    """Content that cannot be read, or is shorter than its entry says."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure = failure

    def open(self, entry: Entry) -> BinaryIO:
        if self.failure == "open":
            raise PermissionError(13, "Permission denied")
        return io.BytesIO(self.data[entry.content_id or ""][:-10])


@pytest.mark.parametrize("failure", ["open", "short", "short and streamed"])
def test_content_that_cannot_be_read_is_one_error(tmp_path: Path, failure: str) -> None:
    data = BIG if failure == "short and streamed" else b"0123456789" * 5
    tree = make_tree(Failing(failure), [directory(""), directory("srv"), ("srv/f", data)])
    with pytest.raises(EncapsulateError) as caught:
        commit_tree(ostree_layout(tree), str(tmp_path / "repo"), "r", timestamp=EPOCH)
    message = str(caught.value)
    assert "\n" not in message
    if failure == "open":
        assert caught.value.where == "test image"
        assert message == "test image: srv/f: cannot read: Permission denied"
    elif failure == "short":
        assert caught.value.where == "test image"
        assert message.startswith("test image: srv/f: 40 bytes read of the 50 its entry says")


def test_a_repository_that_cannot_be_made_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    tree = make_tree(Contents(), [directory(""), ("a", b"a")])
    with pytest.raises(EncapsulateError) as caught:
        commit_tree(ostree_layout(tree), str(blocker / "repo"), "r", timestamp=EPOCH)
    assert caught.value.where == str(blocker / "repo")
    assert "cannot commit the image's tree to OSTree" in str(caught.value)
    assert blocker.read_text() == "x"
