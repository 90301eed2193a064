"""The tar reader reads as Go's archive/tar reads: archives written by GNU
tar in each format (gnu, oldgnu, ustar, v7, posix with every GNU sparse
version, xattrs, base-256 numbers) give the same entries, fields and content
as Go's reader, whatever the stream's chunks; and each rule of Go's that
CPython's tarfile does not follow (number fields, PAX records, the 1 MiB cap,
sparse maps, header errors, global headers) is kept, checked against Go
where Go is at hand (tests/gotar)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from mapping.tarread import MAX_SPARSE_RUNS, TarEndsInside, TarFormatError, TarMember, TarReader
from tests.gotar import craft
from tests.gotar.harness import GoTar, Result, by_tarreader, go_as_tarreader_reads, gotar, pieces

__all__ = ["gotar"]  # the session fixture, used here by name
GIB = 1 << 30


def agree(go: GoTar, data: bytes, sizes: tuple[int, ...] = (511, 4096, 1 << 20)) -> Result:
    """The reader reads ``data`` as Go does, in chunks of each size; Go's result."""
    expected = go_as_tarreader_reads(go.read(data))
    for size in sizes:
        got = by_tarreader(data, size)
        assert got["entries"] == expected["entries"], size
        assert bool(got["error"]) == bool(expected["error"]), (size, got["error"], expected["error"])
    return expected


def members(data: bytes) -> list[TarMember]:
    """The entries the reader reads, their data skipped."""
    return list(TarReader(pieces(data, 512)))


def refusal(data: bytes) -> str:
    """The reader's error for ``data``, its data read too."""
    reader = TarReader(pieces(data, 512))
    with pytest.raises((TarFormatError, TarEndsInside)) as raised:
        for _ in reader:
            reader.data(None)
    return str(raised.value)


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
    with open(root / "small-sparse", "wb") as f:
        f.truncate(3 << 20)
        f.seek(1 << 20)
        f.write(b"data")
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
        ("--format=oldgnu", "--sparse"),
        ("--format=gnu", "--sparse", "--owner=:3000000", "--group=:4000000"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=0.0"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=0.1"),
        ("--format=posix", "--xattrs", "--sparse", "--sparse-version=1.0"),
        ("--format=posix", "--sparse", "--owner=:3000000"),
    ],
    ids=[
        "gnu-sparse",
        "oldgnu",
        "gnu-base256",
        "pax-sparse-0.0",
        "pax-sparse-0.1",
        "pax-sparse-1.0",
        "pax-uid",
    ],
)
def test_gnu_tar_archives_read_as_go_reads_them(
    gotar: GoTar, gnu_tree: Path, options: tuple[str, ...]
) -> None:
    result = agree(gotar, gnu_tar(gnu_tree, *options))
    assert result["error"] == ""
    names = {bytes.fromhex(e["name"]) for e in result["entries"]}
    assert b"./caf\xe9" in names and any(len(n) > 200 for n in names)
    sparse = next(e for e in result["entries"] if e["name"] == b"./sparse".hex())
    assert sparse["size"] == 9 * GIB
    small = next(e for e in result["entries"] if e["name"] == b"./small-sparse".hex())
    expected = bytearray(3 << 20)
    expected[1 << 20 : (1 << 20) + 4] = b"data"
    assert small["sha256"] == hashlib.sha256(expected).hexdigest()
    if "--owner=:3000000" in options:
        assert {e["uid"] for e in result["entries"]} == {3000000}
    if "--xattrs" in options:
        file = next(e for e in result["entries"] if e["name"] == b"./file".hex())
        assert file["xattrs"] == [[b"user.binary".hex(), b"\x00\xff\x80".hex()]]


def test_small_chunks_ustar_prefix_and_v7(gotar: GoTar, tmp_path: Path) -> None:
    deep = tmp_path / "t" / ("p" * 80) / ("q" * 60)
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"x" * 700)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "file").write_bytes(b"y" * 700)
    for fmt, top in (("ustar", "t"), ("v7", "v")):
        data = subprocess.run(
            ["tar", f"--format={fmt}", "-C", tmp_path / top, "-cf", "-", "."], check=True, capture_output=True
        ).stdout
        entries = agree(gotar, data, (1, 7, 512, 1 << 20))["entries"]
        if fmt == "ustar":
            assert f"./{'p' * 80}/{'q' * 60}/file".encode().hex() in {e["name"] for e in entries}


# A number field, raw: what Go's parseNumeric makes of it (None: refused).
NUMBERS = [
    (b"0000017\0", 0o17),
    (b" 17 \0\0\0\0", 0o17),  # spaces and NULs around are dropped
    (b"\0\0\0\x0017\0", 0o17),
    (b"17\x009999", 0o17),  # the text ends at a NUL
    (b"       \0", 0),
    (bytes(8), 0),
    (b"1 7\0", None),  # a space inside
    (b"+17\0", None),
    (b"0o17\0", None),
    (b"1_7\0", None),
    (b"18\0", None),
    (b"\t17\0", None),
    (craft.base256(5, 8), 5),
    (craft.base256(-1, 8), -1),
    (craft.base256(2**40, 8), 2**40),
    (b"\xc0" + bytes(7), -(1 << 62)),
]


def _uid_field(raw: bytes) -> bytes:
    return craft.archive(craft.header(b"f", raw={"uid": raw}))


@pytest.mark.parametrize(("raw", "value"), NUMBERS, ids=[repr(r) for r, _ in NUMBERS])
def test_number_fields_parse_as_in_go(gotar: GoTar, raw: bytes, value: int | None) -> None:
    data = _uid_field(raw)
    result = agree(gotar, data)
    if value is None:
        assert result["error"] and "not octal" in refusal(data)
    else:
        assert [e["uid"] for e in result["entries"]] == [value]


def test_base256_overflow_and_negative_size(gotar: GoTar) -> None:
    # Twelve bytes whose value needs 64 bits or more: Go's ErrHeader.
    for raw in (b"\x80\x00\x00\x00\x80" + bytes(7), b"\x80\x00\x00\x01" + bytes(8)):
        data = craft.archive(craft.header(b"f", raw={"size": raw}))
        assert agree(gotar, data)["error"]
        assert "overflows" in refusal(data)
    negative = craft.archive(craft.header(b"f", raw={"size": craft.base256(-512, 12)}))
    assert agree(gotar, negative)["error"] and "negative size" in refusal(negative)
    # A directory's size claims no data: Go takes a negative one as it is.
    directory = craft.archive(craft.header(b"d/", b"5", raw={"size": craft.base256(-5, 12)}))
    assert [e["size"] for e in agree(gotar, directory)["entries"]] == [-5]


def test_pax_nul_in_path_is_refused_not_cut(gotar: GoTar) -> None:
    """tarfile cut ``etc/passwd\\0.d/evil`` at the NUL: the entry overwrote etc/passwd."""
    for key in (b"path", b"linkpath", b"uname", b"gname"):
        data = craft.archive(craft.pax({key: b"etc/passwd\0.d/evil"}), craft.entry(b"x", b"evil", b"2"))
        assert agree(gotar, data)["error"], key
        assert "holds a NUL" in refusal(data)
    # Any other keyword may hold a NUL in its value, none in its name.
    ok = craft.archive(craft.pax({b"SCHILY.xattr.user.a": b"\0\1"}), craft.entry(b"f", b"x"))
    assert agree(gotar, ok)["entries"][0]["xattrs"] == [[b"user.a".hex(), "0001"]]
    bad = craft.archive(craft.pax({b"SCHILY.xattr.user\0a": b"v"}), craft.entry(b"f", b"x"))
    assert agree(gotar, bad)["error"] and "holds a NUL" in refusal(bad)


@pytest.mark.parametrize(
    ("key", "value", "field", "expected"),
    [
        (b"mtime", b"inf", "mtime", None),
        (b"mtime", b"nan", "mtime", None),
        (b"mtime", b"1e9", "mtime", None),
        (b"mtime", b".5", "mtime", None),
        (b"mtime", b"1.5x", "mtime", None),
        (b"mtime", b"1.5", "mtime", 1),
        (b"mtime", b"-1.5", "mtime", -2),  # Go's time.Unix: the floor
        (b"mtime", b"-0.0000000001", "mtime", 0),  # nine digits of fraction
        (b"mtime", b"+7.", "mtime", 7),
        (b"atime", b"garbage", "mtime", None),  # atime and ctime are checked too
        (b"uid", b"12a", "uid", None),
        (b"uid", b"1_000", "uid", None),
        (b"uid", b"9223372036854775808", "uid", None),
        (b"uid", b"-1", "uid", -1),
        (b"uid", b"4294967296", "uid", 4294967296),
        (b"uid", b"", "uid", 0),  # empty: the header's value stays
        (b"size", b"-1", "size", None),
        (b"size", b" 1", "size", None),
    ],
)
def test_pax_values_parse_as_in_go(
    gotar: GoTar, key: bytes, value: bytes, field: str, expected: int | None
) -> None:
    data = craft.archive(craft.pax({key: value}), craft.entry(b"f", b"x"))
    result = agree(gotar, data)
    if expected is None:
        assert result["error"]
        refusal(data)
    else:
        assert result["entries"][0][field] == expected


def test_pax_records_must_fill_the_header(gotar: GoTar) -> None:
    good = craft.record(b"path", b"a")
    for data in (
        good + b"\0" * 10,
        good[:-1] + b"x",
        b"03 a=\n",
        b"99 path=a\n",
        b"7 path\n",
        b"+11 path=a\n",
    ):
        tar = craft.archive(craft.header(b"p", b"x", len(data)) + craft.padded(data), craft.entry(b"f"))
        result = agree(gotar, tar)
        if data == b"+11 path=a\n":  # ParseInt takes a sign
            assert result["entries"][0]["name"] == b"a".hex()
        else:
            assert result["error"], data


def test_pax_and_long_names_over_1_mib_are_refused_unread(gotar: GoTar) -> None:
    """Go caps a PAX header or GNU long name at 1 MiB; a claim is refused
    before anything is read, so memory stays small whatever it claims."""
    under = craft.record(b"path", b"p" * ((1 << 20) - 20))
    assert (1 << 20) - 10 < len(under) <= 1 << 20
    data = craft.archive(craft.header(b"p", b"x", len(under)) + craft.padded(under), craft.entry(b"f", b"x"))
    assert agree(gotar, data, (1 << 16,))["entries"][0]["name"].startswith("70707070")
    tracemalloc.start()
    members(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20, peak
    over = craft.archive(craft.header(b"p", b"x", (1 << 20) + 1) + craft.padded(b"9" * ((1 << 20) + 1)))
    assert agree(gotar, over, (1 << 16,))["error"]
    for kind in (b"x", b"L", b"K"):
        # A claim of 1 TiB with 10 blocks behind it: refused at once.
        claim = craft.header(b"p", kind, raw={"size": craft.base256(1 << 40, 12)}) + bytes(5120)
        assert "reads at most 1048576" in refusal(claim)
    assert "reads at most" in refusal(craft.archive(craft.long_name(b"n" * ((1 << 20) + 1))))


def test_header_errors_as_in_go(gotar: GoTar) -> None:
    two = craft.archive(craft.entry(b"a", b"0123456789"), craft.entry(b"b", b"0123456789"))
    # A bad checksum, first or later, is an error (tarfile ended the archive).
    for at in (0, 1024):
        bad = bytearray(two)
        bad[at] ^= 1
        assert agree(gotar, bytes(bad))["error"]
        assert "bad checksum" in refusal(bytes(bad))
    # A zero block and then a header; a header cut short.
    zero_then = craft.archive(craft.entry(b"a"), bytes(512), craft.entry(b"b"))
    assert agree(gotar, zero_then)["error"] and "zero block is followed" in refusal(zero_then)
    assert agree(gotar, two[: 1024 + 100])["error"]
    assert "inside a header" in refusal(two[: 1024 + 100])
    assert agree(gotar, two[: 2048 + 100])["error"]  # one zero block, then part of one
    # Bytes after the two zero blocks are not read; an empty stream is an empty archive.
    assert len(agree(gotar, two + b"junk" * 300)["entries"]) == 2
    assert agree(gotar, b"") == {"entries": [], "error": ""}
    # An unknown magic is a V7 header: read, without its ustar fields.
    v7 = craft.archive(craft.header(b"f", fmt=(b"nope!!", b"xx"), raw={"prefix": b"pre"}, devmajor=3))
    entries = agree(gotar, v7)["entries"]
    assert entries[0]["name"] == b"f".hex() and entries[0]["devmajor"] == 0


def test_stream_ending_in_padding_or_without_end_blocks(gotar: GoTar) -> None:
    """umoci 0.4's layers end inside their last padding, as Go accepts; a
    stream cut inside data is still refused."""
    data = craft.archive(craft.entry(b"a", b"0123456789"), craft.entry(b"b", b"0123456789"), end=False)
    for end in (1536 + 10, 1536 + 100, 2048):
        assert [e["name"] for e in agree(gotar, data[:end])["entries"]] == ["61", "62"]
    assert agree(gotar, data[: 1536 + 5])["error"]
    reader = TarReader(pieces(data[: 1536 + 5], 512))
    with pytest.raises(TarEndsInside) as cut:
        for _ in reader:
            reader.data(None)
    assert cut.value.member.name == "b"


def test_global_headers_are_entries_that_apply_to_nothing(gotar: GoTar) -> None:
    data = craft.archive(
        craft.pax({b"SCHILY.xattr.user.all": b"v", b"uid": b"junk"}, kind=b"g"),
        craft.entry(b"f", b"x", uid=5),
    )
    result = agree(gotar, data)
    assert [e["type"] for e in result["entries"]] == [ord("g"), ord("0")]
    assert result["entries"][1]["xattrs"] == [] and result["entries"][1]["uid"] == 5
    # Two PAX headers in a row: the second replaces the first; GNU long names win over PAX paths.
    data = craft.archive(
        craft.pax({b"path": b"first", b"uid": b"7"}),
        craft.pax({b"mtime": b"9"}),
        craft.entry(b"f", b"x"),
        craft.long_name(b"long"),
        craft.pax({b"path": b"pax"}),
        craft.entry(b"g", b"y"),
    )
    entries = agree(gotar, data)["entries"]
    assert [(e["name"], e["uid"], e["mtime"]) for e in entries] == [("66", 0, 9), (b"long".hex(), 0, 0)]


def _sparse_10(runs: list[tuple[int, int]], size: int, data: bytes, count: int | None = None) -> bytes:
    lines = [str(len(runs) if count is None else count)] + [str(n) for run in runs for n in run]
    map_ = craft.padded(("\n".join(lines) + "\n").encode())
    records = {
        b"GNU.sparse.major": b"1",
        b"GNU.sparse.minor": b"0",
        b"GNU.sparse.realsize": str(size).encode(),
    }
    return craft.archive(craft.pax(records), craft.entry(b"s", map_ + data))


def test_sparse_maps_are_checked_as_in_go(gotar: GoTar) -> None:
    good = _sparse_10([(10, 3), (100, 2)], 200, b"abcde")
    entry = agree(gotar, good)["entries"][0]
    expected = bytearray(200)
    expected[10:13], expected[100:102] = b"abc", b"de"
    assert entry["sha256"] == hashlib.sha256(expected).hexdigest()
    for runs, size, data in (
        ([(100, 2), (10, 3)], 200, b"abcde"),  # out of order
        ([(10, 3), (12, 2)], 200, b"abcde"),  # overlapping
        ([(10, 3), (199, 2)], 200, b"abcde"),  # past the size
        ([(10, 3), (100, 2)], 200, b"abcd"),  # less data than the map
        ([(10, 3), (100, 2)], 200, b"abcdef"),  # more
        ([(-1, 3)], 200, b"abc"),
    ):
        tar = _sparse_10(runs, size, data)
        assert agree(gotar, tar)["error"], runs
        assert "sparse map" in refusal(tar)
    # The map claims more runs than the data holds lines: cut short.
    assert agree(gotar, _sparse_10([(1, 1)], 10, b"a", count=50))["error"]
    # debchunk's own cap on runs, stricter than Go.
    assert f"at most {MAX_SPARSE_RUNS}" in refusal(_sparse_10([], 10, b"", count=MAX_SPARSE_RUNS + 1))


def test_a_215_byte_sparse_claim_of_1_tib_reads_at_once() -> None:
    """The map is valid; the reader takes it in no time, holes unread (the
    layer reader refuses its holes, tests/test_layers.py)."""
    records = {b"GNU.sparse.major": b"0", b"GNU.sparse.minor": b"1", b"GNU.sparse.numblocks": b"1"}
    records[b"GNU.sparse.map"] = b"%d,1" % ((1 << 40) - 1)
    records[b"GNU.sparse.size"] = b"%d" % (1 << 40)
    (member,) = members(craft.archive(craft.pax(records), craft.entry(b"big", b"x")))
    assert member.size == 1 << 40 and member.stored == 1 and member.sparse == [((1 << 40) - 1, 1)]
