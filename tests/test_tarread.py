"""The tar header reader against CPython's tarfile, on archives written by GNU
tar (gnu, ustar, posix with every GNU sparse version) and by tarfile (PAX
global headers, base-256 numbers): the same members, fields, PAX records,
sparse maps and data offsets; and bad archives refused as tarfile refuses
them."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mapping import EntryType, LayerArchive, MappingError
from mapping.layers import LayersTree
from mapping.tarread import TarEndsInside, TarFormatError, TarMember, TarReader

# A row of fields of one member; mixed types, compared whole.
Fields = tuple[Any, ...]
GIB = 1 << 30


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (headers and data cut anywhere)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _stored_digest(data: bytes, offset: int, stored: int) -> str:
    return hashlib.sha256(data[offset : offset + stored]).hexdigest()


def _row(m: tarfile.TarInfo | TarMember, sparse: object, pax: object, digest: str | None) -> Fields:
    """The fields compared, the same for both readers."""
    header = (m.name, m.type, m.mode, m.uid, m.gid, m.size, m.linkname, m.devmajor, m.devminor)
    return (*header, sparse, m.offset_data, pax, digest, int(m.mtime))


def by_tarfile(data: bytes) -> list[Fields]:
    """Each member as tarfile reads it, with the digest of its stored bytes."""
    out: list[Fields] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        for m in tar:
            sparse = getattr(m, "sparse", None)
            stored = sum(n for _, n in sparse) if sparse else m.size
            digest = _stored_digest(data, m.offset_data, stored) if m.isreg() else None
            pax = {k: v.encode("utf-8", "surrogateescape") for k, v in m.pax_headers.items()}
            out.append(_row(m, sparse, pax, digest))
    return out


def by_reader(data: bytes, size: int) -> list[Fields]:
    """Each member as TarReader reads it from ``size``-byte chunks, its
    stored bytes hashed as they pass."""
    out: list[Fields] = []
    reader = TarReader(chunks(data, size))
    for m in reader:
        digest = None
        if m.isreg():
            h = hashlib.sha256()
            reader.data(h.update)
            digest = h.hexdigest()
        out.append(_row(m, m.sparse, m.pax_headers, digest))
    assert reader.trailing_zeros()
    return out


def assert_reads_as_tarfile(data: bytes) -> list[Fields]:
    """The reader agrees with tarfile, whatever the chunk size."""
    expected = by_tarfile(data)
    assert expected
    for size in (1, 511, 4096, 1 << 20):
        if size == 1 and len(data) > 200_000:
            continue
        assert by_reader(data, size) == expected, size
    return expected


@pytest.fixture
def gnu_tree(tmp_path: Path) -> Path:
    """What GNU tar's formats differ on: long names and targets, non-UTF-8
    names, hardlinks, devices, fifos, a sparse file over 8 GiB, xattrs."""
    root = tmp_path / "tree"
    deep = root / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 99)).write_bytes(b"long name")
    (root / "file").write_bytes(os.urandom(5000))
    os.link(root / "file", root / "hardlink")
    os.symlink("t" * 150, root / "long-target")
    os.symlink("file", root / "short-target")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1")
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 300))
    with open(root / "sparse", "wb") as f:
        f.truncate(9 * GIB)
        f.seek(GIB)
        f.write(b"middle")
        f.seek(9 * GIB - 3)
        f.write(b"end")
    os.setxattr(root / "file", "user.binary", b"\x00\xff\x80")
    return root


def gnu_tar(root: Path, *options: str) -> bytes:
    """``root`` archived by GNU tar with ``options``."""
    return subprocess.run(
        ["tar", "--numeric-owner", "--sort=name", "-C", root, *options, "-cf", "-", "."],
        check=True,
        capture_output=True,
    ).stdout


@pytest.mark.parametrize(
    "options",
    [
        ("--format=gnu", "--sparse"),
        ("--format=gnu", "--sparse", "--owner=:3000000", "--group=:4000000"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=0.0"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=0.1"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=1.0"),
        ("--format=posix", "--sparse", "--owner=:3000000"),
    ],
    ids=["gnu-sparse", "gnu-base256", "pax-sparse-0.0", "pax-sparse-0.1", "pax-sparse-1.0", "pax-uid"],
)
def test_gnu_tar_archives_read_as_tarfile_reads_them(gnu_tree: Path, options: tuple[str, ...]) -> None:
    members = assert_reads_as_tarfile(gnu_tar(gnu_tree, *options))
    names = {m[0] for m in members}
    assert os.fsdecode(b"./caf\xe9") in names and any(len(str(n)) > 200 for n in names)
    sparse = next(m for m in members if m[0] == "./sparse")
    assert sparse[5] == 9 * GIB and sparse[9]
    if "--owner=:3000000" in options:
        assert {m[3] for m in members} == {3000000}
    if "--xattrs" in options:
        file = next(m for m in members if m[0] == "./file")
        assert file[11]["SCHILY.xattr.user.binary"] == b"\x00\xff\x80"


def test_ustar_prefix(tmp_path: Path) -> None:
    deep = tmp_path / "t" / ("p" * 80) / ("q" * 60)
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"x")
    data = subprocess.run(
        ["tar", "--format=ustar", "-C", tmp_path / "t", "-cf", "-", "."], check=True, capture_output=True
    ).stdout
    members = assert_reads_as_tarfile(data)
    assert f"./{'p' * 80}/{'q' * 60}/file" in {m[0] for m in members}


def test_pax_global_header_and_base256_from_tarfile() -> None:
    buf = io.BytesIO()
    globals_ = {"SCHILY.xattr.user.all": "every member", "comment": "global"}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=globals_) as tar:
        for name, uid in (("a", 1), ("b", 3_000_000)):
            info = tarfile.TarInfo(name)
            info.size, info.uid = 3, uid
            info.pax_headers = {"SCHILY.xattr.user.own": name}
            tar.addfile(info, io.BytesIO(b"abc"))
    members = assert_reads_as_tarfile(buf.getvalue())
    assert [m[11]["SCHILY.xattr.user.all"] for m in members] == [b"every member"] * 2
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("neg")
        info.uid, info.gid, info.mtime = 5_000_000, 2**40, -1000
        tar.addfile(info, io.BytesIO(b""))
    data = buf.getvalue()
    assert data[108] == 0o200 and data[136] == 0o377  # base-256, positive and negative
    assert [m[3:5] for m in assert_reads_as_tarfile(data)] == [(5_000_000, 2**40)]


def _two_files() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            info.size = 10
            tar.addfile(info, io.BytesIO(b"0123456789"))
    return buf.getvalue()


def test_bad_headers_end_or_fail_as_in_tarfile() -> None:
    data = bytearray(_two_files())
    # A bad checksum first is an error; later, it ends the archive and the
    # caller finds bytes other than zeros after the end.
    first = bytearray(data)
    first[0] ^= 1
    with pytest.raises(TarFormatError, match="bad checksum"):
        list(TarReader(chunks(bytes(first), 512)))
    later = bytearray(data)
    later[1024] ^= 1
    reader = TarReader(chunks(bytes(later), 512))
    assert [m.name for m in reader] == ["a"]
    assert reader.trailing_zeros() is False
    with pytest.raises(TarFormatError, match="empty file"):
        list(TarReader(iter([b""])))
    # Cut inside the data of "b", and inside its padding.
    reader = TarReader(chunks(bytes(data[: 1536 + 5]), 512))
    with pytest.raises(TarEndsInside) as cut:
        for _ in reader:
            reader.data(None)
    assert cut.value.member.name == "b"
    reader = TarReader(chunks(bytes(data[: 1536 + 100]), 512))
    with pytest.raises(TarFormatError, match="unexpected end of data"):
        for _ in reader:
            reader.data(None)
    # A GNU longname whose member header is missing.
    long = io.BytesIO()
    with tarfile.open(fileobj=long, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("x" * 200))
    with pytest.raises(TarFormatError, match="empty header"):
        list(TarReader(iter([long.getvalue()[:1024]])))


def test_layers_tree_reads_gnu_tar_formats(tmp_path: Path, gnu_tree: Path) -> None:
    """A layer written by GNU tar in each format gives the same tree."""
    # Hashing 9 GiB of holes twice is slow: 2 GiB shows the same.
    os.truncate(gnu_tree / "sparse", 2 * GIB)
    trees = []
    for i, options in enumerate(
        [("--format=gnu", "--sparse"), ("--format=posix", "--sparse", "--sparse-version=1.0")]
    ):
        data = gnu_tar(gnu_tree, *options)
        path = tmp_path / f"layer-{i}.tar"
        path.write_bytes(data)
        layer = LayerArchive(str(path), "sha256:" + hashlib.sha256(data).hexdigest(), "none")
        tree = LayersTree(f"gnu-{i}", [layer], str(tmp_path / f"work-{i}"))
        sparse = tree.get("sparse")
        assert sparse is not None and sparse.type is EntryType.FILE and sparse.size == 2 * GIB
        with sparse.open() as f:
            f.seek(GIB - 2)
            assert f.read(10) == b"\0\0middle\0\0"
        file, link = tree.get("file"), tree.get("hardlink")
        assert file is not None and link is not None and file.hardlink == link.hardlink is not None
        assert file.content_id == hashlib.sha256((gnu_tree / "file").read_bytes()).hexdigest()
        trees.append([(e.path, e.type, e.mode, e.uid, e.size, e.target, e.content_id, e.rdev) for e in tree])
    assert trees[0] == trees[1]


def test_layers_tree_names_the_member_before_a_bad_header(tmp_path: Path) -> None:
    data = bytearray(_two_files())
    data[1024 + 148] ^= 0x07  # "b"'s checksum field
    path = tmp_path / "bad.tar"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(MappingError) as raised:
        LayersTree("bad", [LayerArchive(str(path), digest, "none")], str(tmp_path / "work"))
    assert raised.value.what == f"layer {digest}: its tar is corrupt after a"
    assert raised.value.where == str(path)


def test_end_in_padding_as_go_reads_it() -> None:
    """With ``end_in_padding``, a stream that ends in the padding after the
    last member's data (umoci 0.4's layers) ends the archive, as Go's
    archive/tar reads it; one that ends inside the data is still cut."""
    data = _two_files()
    for end in (1536 + 10, 1536 + 100):
        reader = TarReader(chunks(data[:end], 512), end_in_padding=True)
        names = []
        for member in reader:
            reader.data(None)
            names.append(member.name)
        assert names == ["a", "b"] and reader.trailing_zeros()
    reader = TarReader(chunks(data[: 1536 + 5], 512), end_in_padding=True)
    with pytest.raises(TarEndsInside):
        for _ in reader:
            reader.data(None)
