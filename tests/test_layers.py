"""An image's layers, applied in order (OCI layer.md), read as the tree they
make: whiteouts, opaque directories, replacements, hardlinks across layers,
PAX xattrs, sparse files, and the same entries as the tree unpacked on disk."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import stat
import subprocess
import tarfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
import zstandard

from mapping import (
    EntryType,
    LayerArchive,
    LayersOrigin,
    MappingError,
    RootfsOrigin,
    build_mapping,
    read_tree,
)
from mapping.layers import LayersTree
from mapping.tree import Entry, Tree
from tests.gotar import craft

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def file(name: str, data: bytes, mode: int = 0o644, xattrs: dict[str, bytes] | None = None) -> Member:
    """A regular file member; ``xattrs`` as ``SCHILY.xattr.*`` PAX records."""
    info = _info(name, mode=mode, size=len(data))
    if xattrs:
        # tarfile writes a str value that is not UTF-8 as its surrogateescape bytes.
        info.pax_headers = {
            f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
        }
    return info, data


def directory(name: str, mode: int = 0o755, uid: int = 0) -> Member:
    """A directory member."""
    return _info(name, tarfile.DIRTYPE, mode, uid=uid), None


def symlink(name: str, target: str) -> Member:
    """A symlink member."""
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target), None


def hardlink(name: str, target: str) -> Member:
    """A hardlink member."""
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def whiteout(name: str) -> Member:
    """An empty file: a whiteout when its name starts with ``.wh.``."""
    return file(name, b"")


def tar_bytes(members: Iterable[Member]) -> bytes:
    """A PAX tar of ``members``, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    """``data`` compressed as a layer blob would be."""
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def blob(where: Path, data: bytes, compression: str = "gzip") -> LayerArchive:
    """Store a tar as a layer blob named by its digest."""
    packed = compress(data, compression)
    digest = "sha256:" + hashlib.sha256(packed).hexdigest()
    path = where / digest.replace(":", "-")
    path.write_bytes(packed)
    return LayerArchive(str(path), digest, compression)


def layers(tmp_path: Path, *stack: Iterable[Member], compression: str = "gzip") -> list[LayerArchive]:
    """One layer blob per member list, lowest first."""
    return [blob(tmp_path, tar_bytes(members), compression) for members in stack]


def read(tmp_path: Path, archives: list[LayerArchive]) -> LayersTree:
    """The tree ``archives`` make, spooled under tmp_path/work."""
    return LayersTree("test-image", archives, str(tmp_path / "work"))


def content(tree: Tree, path: str) -> bytes:
    """A file's content, checked against its content id."""
    entry = tree.get(path)
    assert entry is not None and entry.type is EntryType.FILE, path
    with entry.open() as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == entry.content_id
    assert entry.size == len(data)
    return data


def paths(tree: Tree) -> list[str]:
    """Every path, in tree order."""
    return [e.path for e in tree]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_layers_apply_in_order(tmp_path: Path, compression: str) -> None:
    lower = [
        directory("etc"),
        file("etc/a", b"lower a"),
        file("etc/b", b"lower b"),
        file("./usr/bin/x", b"x"),
    ]
    upper = [file("etc/a", b"upper a", 0o600), directory("etc/", 0o700, uid=7)]
    tree = read(tmp_path, layers(tmp_path, lower, upper, compression=compression))
    assert paths(tree) == ["", "etc", "etc/a", "etc/b", "usr", "usr/bin", "usr/bin/x"]
    assert content(tree, "etc/a") == b"upper a" and content(tree, "etc/b") == b"lower b"
    etc, a, usr = tree.get("etc"), tree.get("etc/a"), tree.get("usr")
    assert a is not None and a.mode == 0o600
    # A directory declared again keeps its children and takes the new metadata.
    assert etc is not None and (etc.mode, etc.uid) == (0o700, 7)
    # Parents a layer does not declare are made as runtimes make them.
    assert usr is not None and (usr.type, usr.mode, usr.uid) == (EntryType.DIR, 0o755, 0)
    assert tree.description == "test-image"


def test_whiteouts_hide_lower_files_and_directories(tmp_path: Path) -> None:
    lower = [file("a/file", b"1"), file("a/keep", b"2"), file("d/sub/deep", b"3"), file("d2", b"4")]
    upper = [whiteout("a/.wh.file"), whiteout(".wh.d"), file("new", b"5")]
    tree = read(tmp_path, layers(tmp_path, lower, upper))
    assert paths(tree) == ["", "a", "a/keep", "d2", "new"]
    assert content(tree, "a/keep") == b"2"
    # A later layer can put the path back.
    again = layers(tmp_path, lower, upper, [file("d/sub/deep", b"back")])
    assert content(read(tmp_path / "2", again), "d/sub/deep") == b"back"


@pytest.mark.parametrize("opaque_first", [True, False])
def test_opaque_directory_keeps_only_its_own_layers_children(tmp_path: Path, opaque_first: bool) -> None:
    lower = [file("d/old", b"old"), file("d/sub/old", b"old"), file("d/same", b"lower"), file("other", b"o")]
    own = [file("d/new", b"new"), file("d/same", b"upper"), file("d/sub2/new", b"n")]
    opaque = [directory("d"), whiteout("d/.wh..wh..opq")]
    upper = opaque + own if opaque_first else [directory("d"), *own, whiteout("d/.wh..wh..opq")]
    tree = read(tmp_path, layers(tmp_path, lower, upper))
    assert paths(tree) == ["", "d", "d/new", "d/same", "d/sub2", "d/sub2/new", "other"]
    assert content(tree, "d/same") == b"upper" and content(tree, "d/new") == b"new"


def test_file_and_directory_replace_each_other(tmp_path: Path) -> None:
    lower = [file("f", b"file"), file("d/x", b"x"), file("d/y/z", b"z")]
    upper = [
        directory("f", 0o711),
        file("f/inside", b"now a dir"),
        file("d", b"now a file"),
        file("g/x", b""),
    ]
    tree = read(tmp_path, layers(tmp_path, [*lower, file("g", b"file g")], upper))
    assert paths(tree) == ["", "d", "f", "f/inside", "g", "g/x"]
    assert content(tree, "d") == b"now a file" and content(tree, "f/inside") == b"now a dir"
    f, g = tree.get("f"), tree.get("g")
    assert f is not None and (f.type, f.mode) == (EntryType.DIR, 0o711)
    # A path below a lower layer's file, its directory not declared, makes it one.
    assert g is not None and (g.type, g.mode) == (EntryType.DIR, 0o755)
    # Within one layer, a path below a file is malformed.
    bad = tmp_path / "bad"
    bad.mkdir()
    archives = layers(bad, [file("h", b"h"), file("h/x", b"x")])
    with pytest.raises(MappingError, match="h/x: a parent of it is not a directory"):
        read(bad, archives)


def test_hardlinks_within_and_across_layers(tmp_path: Path) -> None:
    lower = [file("bin/gzip", b"gzip!", 0o755), hardlink("bin/gunzip", "bin/gzip")]
    upper = [hardlink("bin/zcat", "./bin/gzip"), hardlink("bin/uncompress", "bin/gunzip")]
    tree = read(tmp_path, layers(tmp_path, lower, upper))
    group = [tree.get(p) for p in ("bin/gzip", "bin/gunzip", "bin/zcat", "bin/uncompress")]
    keys = {e.hardlink for e in group if e is not None}
    assert len(keys) == 1 and None not in keys
    for e in group:
        assert e is not None and (e.mode, e.size) == (0o755, 5)
        assert content(tree, e.path) == b"gzip!"


def test_replacing_one_path_of_a_hardlink_group_takes_it_out(tmp_path: Path) -> None:
    lower = [file("a", b"shared"), hardlink("b", "a"), hardlink("c", "a")]
    upper = [file("b", b"new b")]
    tree = read(tmp_path, layers(tmp_path, lower, upper))
    a, b, c = tree.get("a"), tree.get("b"), tree.get("c")
    assert a is not None and b is not None and c is not None
    assert a.hardlink is not None and a.hardlink == c.hardlink and b.hardlink is None
    assert content(tree, "b") == b"new b" and content(tree, "c") == b"shared"
    # With one path left, the inode is no longer hardlinked.
    lone = read(tmp_path / "2", layers(tmp_path, [file("a", b"s"), hardlink("b", "a")], [file("b", b"n")]))
    assert all(e.hardlink is None for e in lone)


def test_hardlink_to_a_missing_path_is_an_error(tmp_path: Path) -> None:
    archives = layers(tmp_path, [file("a", b"a")], [hardlink("x/link", "x/nothing")])
    with pytest.raises(MappingError) as e:
        read(tmp_path, archives)
    assert archives[1].digest in str(e.value)
    assert "x/link" in str(e.value) and "x/nothing" in str(e.value)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "/etc/passwd", "/../x"])
def test_paths_leaving_the_root_are_errors(tmp_path: Path, name: str) -> None:
    archives = layers(tmp_path, [file("ok", b"ok")], [file(name, b"evil")])
    with pytest.raises(MappingError) as e:
        read(tmp_path, archives)
    assert archives[1].digest in str(e.value) and name in str(e.value)
    assert not (tmp_path / "etc").exists() and not Path("/x").exists()


def test_climbing_hardlink_target_is_an_error(tmp_path: Path) -> None:
    archives = layers(tmp_path, [hardlink("link", "../../etc/passwd")])
    with pytest.raises(MappingError, match=archives[0].digest):
        read(tmp_path, archives)


def test_whiteout_of_a_missing_path_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archives = layers(tmp_path, [file("a", b"a")], [whiteout(".wh.nothing"), whiteout("no/dir/.wh.x")])
    with caplog.at_level(logging.WARNING):
        tree = read(tmp_path, archives)
    assert paths(tree) == ["", "a"]
    assert "hides nothing" in caplog.text and ".wh.nothing" in caplog.text and "no/dir/.wh.x" in caplog.text


def test_xattrs_with_binary_values(tmp_path: Path) -> None:
    xattrs = {
        "user.component": b"app",
        "security.capability": b"\x01\x00\x00\x02\xff\x80\x00",
        "user.z": b"\xc3",
    }
    tree = read(tmp_path, layers(tmp_path, [file("f", b"data", xattrs=xattrs), file("g", b"plain")]))
    f = tree.get("f")
    assert f is not None and f.xattrs == tuple(sorted((k.encode(), v) for k, v in xattrs.items()))
    assert tree.get("g").xattrs == ()  # type: ignore[union-attr]


def test_corrupt_gzip_truncated_zstd_and_wrong_digest_are_errors(tmp_path: Path) -> None:
    data = tar_bytes([file("f", os.urandom(200_000))])
    good = blob(tmp_path, data, "gzip")
    packed = bytearray(Path(good.path).read_bytes())
    packed[len(packed) // 2] ^= 0xFF
    bad = tmp_path / "bad.gz"
    bad.write_bytes(packed)
    corrupt = LayerArchive(str(bad), "sha256:" + hashlib.sha256(packed).hexdigest(), "gzip")
    with pytest.raises(MappingError, match=f"{corrupt.digest}: its gzip stream is corrupt"):
        read(tmp_path / "1", [corrupt])

    whole = zstandard.ZstdCompressor().compress(data)
    cut = tmp_path / "cut.zst"
    cut.write_bytes(whole[: len(whole) - 100])
    truncated = LayerArchive(str(cut), "sha256:" + hashlib.sha256(whole[:-100]).hexdigest(), "zstd")
    with pytest.raises(MappingError, match=f"{truncated.digest}: its zstd stream is truncated"):
        read(tmp_path / "2", [truncated])

    wrong = LayerArchive(good.path, "sha256:" + "0" * 64, "gzip")
    with pytest.raises(MappingError, match="sha256:0{64}: the blob's digest is " + good.digest):
        read(tmp_path / "3", [wrong])


def test_tar_cut_inside_a_file_is_an_error(tmp_path: Path) -> None:
    data = tar_bytes([file("a", b"a"), file("big", bytes(100_000))])
    archive = blob(tmp_path, data[:20_000], "none")
    with pytest.raises(MappingError, match="its tar ends inside big"):
        read(tmp_path, [archive])


def test_sparse_file_stays_small(tmp_path: Path) -> None:
    size = (1 << 30) - (1 << 20)
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(size)
        f.seek(1_000_000)
        f.write(b"HELLO")
        f.seek(size - 3)
        f.write(b"END")
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=posix", "-cf", tar, "-C", src, "big"], check=True)
    archive = blob(tmp_path, tar.read_bytes(), "zstd")
    tree = read(tmp_path, [archive])
    big = tree.get("big")
    assert big is not None and big.size == size
    assert sum(p.stat().st_blocks * 512 for p in (tmp_path / "work").iterdir()) < 1 << 20
    with big.open() as f:
        assert f.read(1_000_000) == bytes(1_000_000)
        assert f.read(6) == b"HELLO\x00"
        f.seek(size - 8)
        assert f.read() == b"\x00" * 5 + b"END"
    # The expected id, hashed without reading the holes from disk.
    h, zeros, pos = hashlib.sha256(), bytes(1 << 20), 0
    for offset, data in ((1_000_000, b"HELLO"), (size - 3, b"END")):
        while pos < offset:
            n = min(len(zeros), offset - pos)
            h.update(zeros[:n])
            pos += n
        h.update(data)
        pos += len(data)
    assert big.content_id == h.hexdigest()


def _partition(entries: Iterable[Entry]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        if e.hardlink is not None:
            groups[e.hardlink].add(e.path)
    return {frozenset(g) for g in groups.values()}


def _fields(e: Entry) -> tuple[object, ...]:
    return (e.path, e.type, e.mode, e.uid, e.gid, e.size, e.xattrs, e.target, e.content_id, e.rdev)


def _tar_of(root: Path) -> bytes:
    """A PAX layer of a tree on disk (the root as "."), xattrs as
    SCHILY.xattr.* records; tarfile writes a second path of an inode as a
    hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            names = [None] if dirpath == str(root) else []
            for name in [*names, *sorted(filenames), *dirnames]:
                path = dirpath if name is None else os.path.join(dirpath, name)
                info = tar.gettarinfo(path, os.path.relpath(path, root))
                if info is None:
                    continue  # a socket
                info.pax_headers = {
                    f"SCHILY.xattr.{n}": os.getxattr(path, n, follow_symlinks=False).decode(
                        "utf-8", "surrogateescape"
                    )
                    for n in os.listxattr(path, follow_symlinks=False)
                }
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def odd_tree(tmp_path: Path) -> Path:
    """Every kind of object RootfsTree reads, with the awkward cases."""
    root = tmp_path / "odd"
    (root / "d/sub").mkdir(parents=True)
    (root / "d/file").write_bytes(b"hello\n")
    os.link(root / "d/file", root / "d/hardlink")
    os.link(root / "d/file", root / "d/sub/third-link")
    (root / "d/same-content").write_bytes(b"hello\n")
    os.symlink("../outside/of/nothing", root / "d/dangling")
    os.symlink("/etc/passwd", root / "d/absolute")
    os.mkfifo(root / "d/fifo", 0o640)
    if os.geteuid() == 0:
        os.mknod(root / "d/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "d/loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
        os.chown(root / "d/same-content", 1234, 5678)
    suid = root / "d/suid"
    suid.write_bytes(b"#!/bin/sh\n")
    os.chmod(suid, 0o4755)
    os.chmod(root / "d/sub", 0o3775)
    os.setxattr(root / "d/file", "user.binary", b"\x00\xff\x80value")
    os.setxattr(root / "d", "user.component", b"thing")
    long = root / ("l" * 80) / ("n" * 90)
    long.mkdir(parents=True)
    (long / ("f" * 120)).write_bytes(b"long")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name")
    (root / os.fsdecode(b"caf\xc3\xa9")).write_bytes(b"utf-8 name")
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(3 << 20))
    os.chmod(root, 0o755)
    return root


def test_layers_read_as_the_rootfs_does(tmp_path: Path, odd_tree: Path) -> None:
    rootfs = read_tree(RootfsOrigin(str(odd_tree)))
    archive = blob(tmp_path, _tar_of(odd_tree), "gzip")
    tree = read_tree(LayersOrigin((archive,), str(tmp_path / "work"), "odd:latest"))
    assert [_fields(e) for e in tree] == [_fields(e) for e in rootfs]
    assert _partition(tree) == _partition(rootfs) == {frozenset({"d/file", "d/hardlink", "d/sub/third-link"})}
    for e in tree:
        if e.type is EntryType.FILE:
            with e.open() as f, open(odd_tree / e.path, "rb") as g:
                assert f.read() == g.read(), e.path


def test_build_mapping_from_layers_matches_the_rootfs(tmp_path: Path, sample_tree: Path) -> None:
    archive = blob(tmp_path, _tar_of(sample_tree), "zstd")
    from_layers = build_mapping(LayersOrigin((archive,), str(tmp_path / "work"), "sample"))
    from_rootfs = build_mapping(RootfsOrigin(str(sample_tree)))
    assert from_layers.to_json()["components"] == from_rootfs.to_json()["components"]
    assert from_layers.content_owners() == from_rootfs.content_owners()
    assert len(from_layers.components) > 5


def test_an_image_origin_has_layers(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="at least one layer"):
        read_tree(LayersOrigin((), str(tmp_path / "work"), "empty:latest"))


def test_a_layer_ending_in_its_last_padding_reads_as_go_reads_it(tmp_path: Path) -> None:
    """umoci 0.4.7 (Debian 12) writes `umoci insert` layers of one file or a
    whiteout without the final padding and end-of-archive blocks; Go's
    archive/tar (podman, containers/storage, containerd, umoci) reads them,
    and so does --from."""
    base = tar_bytes([directory("etc"), file("etc/hostname", b"base\n"), file("etc/motd", b"hi\n")])
    inserted = tar_bytes([file("etc/hostname", b"inserted\n")])
    removed = tar_bytes([whiteout("etc/.wh.motd")])
    # One header block, then the data, cut where the data ends (no padding,
    # no end blocks); a whiteout is its header alone.
    assert inserted[512 : 512 + 9] == b"inserted\n" and removed[:512].rstrip(b"\0")
    cut_insert, cut_whiteout = inserted[: 512 + 9], removed[:512]
    tree = read(tmp_path, [blob(tmp_path, base), blob(tmp_path, cut_insert), blob(tmp_path, cut_whiteout)])
    assert content(tree, "etc/hostname") == b"inserted\n"
    assert tree.get("etc/motd") is None
    # A stream cut inside a member's data is still damaged.
    with pytest.raises(MappingError):
        read(tmp_path / "cut", [blob(tmp_path, inserted[: 512 + 4])])


def _raw_layer(tmp_path: Path, data: bytes) -> LayerArchive:
    return blob(tmp_path, data, "none")


def test_a_nul_in_a_pax_path_is_refused_not_cut(tmp_path: Path) -> None:
    """tarfile's reading cut ``etc/passwd\\0.d/evil`` at the NUL, so the
    entry replaced etc/passwd; Go's archive/tar refuses it, and so does --from."""
    base = _raw_layer(
        tmp_path, tar_bytes([directory("etc"), file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")])
    )
    evil = craft.archive(
        craft.pax({b"path": b"etc/passwd\0.d/evil"}), craft.entry(b"x", b"evil::0:0::/:/bin/sh\n")
    )
    layer = _raw_layer(tmp_path, evil)
    with pytest.raises(MappingError) as raised:
        read(tmp_path, [base, layer])
    assert raised.value.what == (
        f"layer {layer.digest}: its tar is corrupt after the start of the archive "
        "(PAX record path holds a NUL byte)"
    )
    assert raised.value.where == layer.path and raised.value.hint


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (b"uid", b"4294967296", "has uid 4294967296, outside what Linux holds (0 to 4294967294)"),
        (b"uid", b"-1", "has uid -1, outside what Linux holds (0 to 4294967294)"),
        (b"gid", b"4294967295", "has gid 4294967295, outside what Linux holds (0 to 4294967294)"),
    ],
)
def test_owners_linux_cannot_hold_are_refused(
    tmp_path: Path, field: bytes, value: bytes, message: str
) -> None:
    """Go reads any int64 uid; debchunk refuses what a Linux client cannot
    create (it was written into the plain output as it came)."""
    layer = _raw_layer(tmp_path, craft.archive(craft.pax({field: value}), craft.entry(b"etc/f", b"x")))
    with pytest.raises(MappingError) as raised:
        read(tmp_path, [layer])
    assert raised.value.what == f"layer {layer.digest}: entry etc/f {message}"
    top = _raw_layer(tmp_path, craft.archive(craft.pax({b"uid": b"4294967294"}), craft.entry(b"f", b"x")))
    entry = read(tmp_path / "ok", [top]).get("f")
    assert entry is not None and entry.uid == 4294967294


def test_device_numbers_mknod_cannot_make_are_refused(tmp_path: Path) -> None:
    good = _raw_layer(
        tmp_path, craft.archive(craft.entry(b"dev/loop", kind=b"4", devmajor=4095, devminor=(1 << 20) - 1))
    )
    entry = read(tmp_path / "ok", [good]).get("dev/loop")
    assert entry is not None and entry.rdev == os.makedev(4095, (1 << 20) - 1)
    bad = _raw_layer(tmp_path, craft.archive(craft.entry(b"dev/big", kind=b"3", devminor=1 << 20)))
    with pytest.raises(MappingError, match=r"device dev/big is 0:1048576, outside what Linux makes"):
        read(tmp_path, [bad])


def test_sparse_holes_are_bounded_per_layer(tmp_path: Path) -> None:
    """A 215-byte entry claiming 1 TiB of holes ran for hours; now the layer
    is refused at once, and so is one whose files' holes add up past 1 GiB."""

    def sparse(name: bytes, size: int) -> bytes:
        records = {b"GNU.sparse.major": b"0", b"GNU.sparse.minor": b"1", b"GNU.sparse.numblocks": b"1"}
        records |= {b"GNU.sparse.map": b"%d,1" % (size - 1), b"GNU.sparse.size": b"%d" % size}
        return craft.pax(records) + craft.entry(name, b"!")

    for data, name in (
        (craft.archive(sparse(b"big", 1 << 40)), "big"),
        (craft.archive(sparse(b"a", 600 << 20), sparse(b"b", 600 << 20)), "b"),
    ):
        layer = _raw_layer(tmp_path, data)
        started = time.monotonic()
        with pytest.raises(MappingError, match=f"sparse file {name} brings the layer's holes to"):
            read(tmp_path, [layer])
        assert time.monotonic() - started < 5
    tree = read(tmp_path / "ok", [_raw_layer(tmp_path, craft.archive(sparse(b"s", 1000)))])
    assert content(tree, "s") == bytes(999) + b"!"


def test_global_headers_and_trailing_bytes_are_ignored_as_go_does(tmp_path: Path) -> None:
    data = craft.archive(
        craft.pax({b"SCHILY.xattr.user.all": b"v", b"path": b"renamed"}, b"g"), craft.entry(b"f", b"x")
    )
    tree = read(tmp_path, [_raw_layer(tmp_path, data + b"bytes after the end")])
    entry = tree.get("f")
    assert entry is not None and entry.xattrs == () and [e.path for e in tree] == ["", "f"]


def test_spooled_content_reads_the_same_however_it_is_read(tmp_path: Path) -> None:
    """A file's bytes in a spool, with a hole between two runs: whole, in
    small reads through a BufferedReader, and through the raw reader's own
    ``read`` (which hands ``readinto`` a bytearray, not a view)."""
    from mapping.layers import _Content

    spool = tmp_path / "spool"
    data = bytes(range(256)) * 64
    spool.write_bytes(b"x" * 100 + data)
    segments = ((0, 5000, 100), (5000, 9000, None), (9000, 9000 + len(data) - 5000, 5100))
    size = 9000 + len(data) - 5000
    expected = data[:5000] + bytes(4000) + data[5000:]
    assert io.BufferedReader(_Content(str(spool), size, segments)).read() == expected
    small = io.BufferedReader(_Content(str(spool), size, segments), 512)
    assert b"".join(iter(lambda: small.read(777), b"")) == expected
    raw = _Content(str(spool), size, segments)
    assert b"".join(iter(lambda: raw.read(3000), b"")) == expected


def _extent_flags(path: Path) -> list[int] | None:
    """The FIEMAP flags of a file's extents, without syncing it first; None
    where the filesystem has no FIEMAP (tmpfs)."""
    import fcntl
    import struct

    count, fs_ioc_fiemap = 64, 0xC020660B  # linux/fiemap.h, linux/fs.h
    request = bytearray(struct.pack("=QQLLLL", 0, 2**64 - 1, 0, 0, count, 0) + bytes(56 * count))
    with path.open("rb") as f:
        try:
            fcntl.ioctl(f.fileno(), fs_ioc_fiemap, request)
        except OSError:
            return None
    mapped = struct.unpack_from("=L", request, 20)[0]
    return [struct.unpack_from("=L", request, 32 + 56 * i + 40)[0] for i in range(mapped)]


def test_the_spool_stays_in_memory(tmp_path: Path) -> None:
    """The spool is a scratch file, removed before it would be written back:
    nothing may make the kernel write it to disk early.  On ext4, truncating
    it before filling it did (auto_da_alloc flushes a truncated file when it
    is closed: 0.15 s of CPU and the whole layer's bytes written)."""
    data = os.urandom(1 << 20)
    tree = read(tmp_path, layers(tmp_path, [file("big", data)]))
    assert content(tree, "big") == data
    # A file written the plain way shows whether this filesystem delays
    # allocation at all (ext4, xfs and btrfs do; with FIEMAP_EXTENT_DELALLOC).
    control = tmp_path / "control"
    control.write_bytes(data)
    if not all(f & 0x4 for f in _extent_flags(control) or [0]):
        pytest.skip("the filesystem under tmp_path shows no delayed allocation")
    flags = _extent_flags(tmp_path / "work" / "layer-0.tar")
    assert flags and all(f & 0x4 for f in flags), [hex(f) for f in flags or []]
