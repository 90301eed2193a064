"""A differential test: debchunk's layer reader (``TarReader``, the entries
made inodes, content hashed as ``LayersTree`` and ``LayerStream`` hash it)
and Go's archive/tar (tests/gotar/main.go) read the same streams: the same
entries, field by field and content digest, or both refuse.  Hand-written
cases for each rule, thousands of generated and mutated tars (hypothesis),
and real layers: debchunk's own, Python's tarfile's, umoci's.

Where debchunk is stricter on purpose (docs/tar-reading.md), ``compare``
says so: uids and gids Linux cannot hold, device numbers mknod(2) cannot
make, over ``MAX_HOLES`` of holes in a layer, over ``MAX_SPARSE_RUNS`` runs.
Go reads those entries; debchunk refuses at that entry, after reading the
same entries before it."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from mapping import RootfsOrigin
from mapping.layers import MAX_HOLES, MAX_ID, MAX_MAJOR, MAX_MINOR
from tests.gotar import craft
from tests.gotar.harness import GoTar, Result, by_debchunk, go_as_debchunk_reads, gotar
from tests.images import build, packages_tree

__all__ = ["gotar"]  # the session fixture, used here by name
GNU_SPARSE_10 = {b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0"}
# hypothesis examples per generated test; see the report in the docstring of
# test_generated_tars_read_as_go_reads_them.
EXAMPLES = 3000


def _deliberate(error: str, go_entries: list[dict[str, Any]], at: int) -> bool:
    """Whether debchunk's refusal at entry ``at`` is one of its own rules,
    stricter than Go, that Go's entry there breaks."""
    if at >= len(go_entries):
        return False
    entry = go_entries[at]
    if entry["sha256"] == "unread":
        return True  # Go did not read its content: its verdict on it is unknown
    if "outside what Linux holds" in error:
        return not all(0 <= int(entry[k]) <= MAX_ID for k in ("uid", "gid"))
    if "outside what Linux makes" in error:
        major, minor = int(entry["devmajor"]), int(entry["devminor"])
        return entry["type"] in (ord("3"), ord("4")) and not (
            0 <= major <= MAX_MAJOR and 0 <= minor <= MAX_MINOR
        )
    if "holes" in error:
        regular = (ord("0"), ord("7"), ord("S"))
        return sum(int(e["size"]) for e in go_entries[: at + 1] if e["type"] in regular) > MAX_HOLES
    return "debchunk reads at most" in error or "debchunk's limit" in error


def compare(go: GoTar, data: bytes, chunk: int = 1 << 16) -> Result:
    """debchunk reads ``data`` as Go does (but where it is stricter on
    purpose); Go's result."""
    expected = go_as_debchunk_reads(go.read(data))
    got = by_debchunk(data, chunk)
    at = len(got["entries"])
    assert got["entries"] == expected["entries"][:at], (got, expected)
    if got["error"] and _deliberate(got["error"], expected["entries"], at):
        return expected
    assert got["entries"] == expected["entries"], (got, expected)
    assert bool(got["error"]) == bool(expected["error"]), (got["error"], expected["error"])
    return expected


# Hand-written cases: (id, stream, whether Go reads it whole).
def _sparse_00(runs: list[tuple[int, int]], size: int) -> bytes:
    records: list[tuple[bytes, bytes]] = [(b"GNU.sparse.size", b"%d" % size)]
    records.append((b"GNU.sparse.numblocks", b"%d" % len(runs)))
    for offset, length in runs:
        records += [(b"GNU.sparse.offset", b"%d" % offset), (b"GNU.sparse.numbytes", b"%d" % length)]
    return craft.pax(records)


def _old_sparse(
    runs: list[tuple[int, int]], size: int, data: bytes, extended: list[tuple[int, int]]
) -> bytes:
    area = b"".join(craft.octal(o, 12) + craft.octal(n, 12) for o, n in runs)
    raw = {"sparse": area, "realsize": craft.octal(size, 12), "isextended": b"\1" if extended else b"\0"}
    head = craft.header(b"sparse", b"S", len(data), craft.GNU, raw)
    more = b"".join(craft.octal(o, 12) + craft.octal(n, 12) for o, n in extended)
    return head + (craft.padded(more) if extended else b"") + craft.padded(data)


CASES = [
    ("ustar", craft.archive(craft.entry(b"dir/", kind=b"5"), craft.entry(b"dir/f", b"hello")), True),
    (
        "v7-regular-a",
        craft.archive(craft.header(b"d/", b"\0", fmt=(b"\0" * 6, b"\0\0")), craft.entry(b"a")),
        True,
    ),
    (
        "gnu-long",
        craft.archive(
            craft.long_name(b"n" * 300), craft.long_name(b"t" * 200, b"K"), craft.entry(b"x", kind=b"2")
        ),
        True,
    ),
    (
        "hardlink",
        craft.archive(craft.entry(b"f", b"data"), craft.entry(b"h", kind=b"1", raw={"linkname": b"f"})),
        True,
    ),
    (
        "devices",
        craft.archive(
            craft.entry(b"null", kind=b"3", devmajor=1, devminor=3), craft.entry(b"fifo", kind=b"6")
        ),
        True,
    ),
    (
        "base256",
        craft.archive(
            craft.entry(b"f", b"x", raw={"uid": craft.base256(70000, 8), "mtime": craft.base256(-5, 12)})
        ),
        True,
    ),
    ("global", craft.archive(craft.pax({b"SCHILY.xattr.user.g": b"v"}, b"g"), craft.entry(b"f", b"x")), True),
    (
        "xattrs",
        craft.archive(
            craft.pax({b"SCHILY.xattr.user.a": b"", b"SCHILY.xattr.trusted.b": b"\xff\0"}), craft.entry(b"f")
        ),
        True,
    ),
    ("sparse-0.0", craft.archive(_sparse_00([(3, 2), (10, 1)], 20), craft.entry(b"s", b"abc")), True),
    (
        "sparse-0.1",
        craft.archive(
            craft.pax({b"GNU.sparse.numblocks": b"1", b"GNU.sparse.map": b"5,2", b"GNU.sparse.size": b"9"}),
            craft.entry(b"s", b"ab"),
        ),
        True,
    ),
    (
        "sparse-1.0",
        craft.archive(
            craft.pax({**GNU_SPARSE_10, b"GNU.sparse.realsize": b"9", b"GNU.sparse.name": b"real"}),
            craft.entry(b"s", craft.padded(b"1\n5\n2\n") + b"ab"),
        ),
        True,
    ),
    ("old-sparse", craft.archive(_old_sparse([(2, 1), (5, 1)], 30, b"abcd", [(20, 1), (29, 1)])), True),
    (
        "nul-in-path",
        craft.archive(
            craft.entry(b"etc/passwd", b"root"),
            craft.pax({b"path": b"etc/passwd\0.d/evil"}),
            craft.entry(b"x", b"evil"),
        ),
        False,
    ),
    (
        "nul-in-linkpath",
        craft.archive(craft.pax({b"linkpath": b"a\0b"}), craft.entry(b"l", kind=b"2")),
        False,
    ),
    ("mtime-inf", craft.archive(craft.pax({b"mtime": b"inf"}), craft.entry(b"f")), False),
    ("uid-2^32", craft.archive(craft.pax({b"uid": b"4294967296"}), craft.entry(b"f")), True),
    ("uid-minus-1", craft.archive(craft.entry(b"f", raw={"uid": craft.base256(-1, 8)})), True),
    ("gid-uid_t-max", craft.archive(craft.pax({b"gid": b"4294967295"}), craft.entry(b"f")), True),
    ("device-2^12", craft.archive(craft.entry(b"d", kind=b"4", devmajor=4096)), True),
    (
        "sparse-1-tib",
        craft.archive(
            craft.pax(
                {
                    b"GNU.sparse.numblocks": b"1",
                    b"GNU.sparse.map": b"%d,1" % ((1 << 40) - 1),
                    b"GNU.sparse.size": b"%d" % (1 << 40),
                }
            ),
            craft.entry(b"big", b"x"),
        ),
        True,
    ),
    (
        "holes-per-layer",
        craft.archive(
            *(
                craft.pax(
                    {
                        b"GNU.sparse.major": b"0",
                        b"GNU.sparse.minor": b"1",
                        b"GNU.sparse.numblocks": b"0",
                        b"GNU.sparse.map": b"",
                        b"GNU.sparse.size": b"%d" % (600 << 20),
                    }
                )
                + craft.entry(b"h%d" % i)
                for i in range(2)
            )
        ),
        True,
    ),
    (
        "bad-checksum-later",
        craft.archive(craft.entry(b"a"), craft.header(b"b", raw={"chksum": b"0000001\0"})),
        False,
    ),
    ("zero-then-header", craft.archive(craft.entry(b"a"), bytes(512), craft.entry(b"b")), False),
    ("ends-in-padding", craft.archive(craft.entry(b"a", b"abc"), end=False)[:515], True),
    ("cut-in-data", craft.archive(craft.entry(b"a", b"abc"), end=False)[:514], False),
    (
        "pax-over-1-mib",
        craft.archive(craft.header(b"p", b"x", (1 << 20) + 1) + craft.padded(b"1" * ((1 << 20) + 1))),
        False,
    ),
    ("negative-size", craft.archive(craft.entry(b"f", raw={"size": craft.base256(-1, 12)})), False),
    ("junk-number", craft.archive(craft.entry(b"f", raw={"mode": b"07 7\0"})), False),
    ("trailing-junk", craft.archive(craft.entry(b"f", b"x")) + b"junk", True),
]


@pytest.mark.parametrize(("data", "whole"), [(d, w) for _, d, w in CASES], ids=[c[0] for c in CASES])
def test_hand_written_cases(gotar: GoTar, data: bytes, whole: bool) -> None:
    for chunk in (1, 512, 1 << 16):
        result = compare(gotar, data, chunk)
    assert (result["error"] == "") == whole, result["error"]


def test_deliberately_stricter_than_go(gotar: GoTar) -> None:
    """Go reads these whole; debchunk refuses them, at the entry at fault."""
    strict = {
        "uid-2^32": "uid 4294967296, outside what Linux holds",
        "uid-minus-1": "uid -1, outside what Linux holds",
        "gid-uid_t-max": "gid 4294967295, outside what Linux holds",
        "device-2^12": "is 4096:0, outside what Linux makes",
        "sparse-1-tib": "sparse file big brings the layer's holes to 1099511627775 bytes",
        "holes-per-layer": "sparse file h1 brings the layer's holes to 1258291200 bytes",
    }
    for name, data, _ in CASES:
        if name in strict:
            assert gotar.read(data)["error"] == ""
            started = time.monotonic()
            error = by_debchunk(data)["error"]
            assert strict[name] in error, error
            assert time.monotonic() - started < 1


# Generated tars.
NAMES = st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\0", b"")) | st.sampled_from(
    [b"a", b"a/", b"./b", b"d/e", b"caf\xe9", b"x" * 99, b"y" * 100, b".wh.a", b"../up", b"/abs"]
)
NUMBER_FIELDS = st.sampled_from(
    [b"0000017\0", b" 17 \0", b"1 7\0", b"\x80" + bytes(6) + b"\x05", b"\xff" * 8, bytes(8), b"9\0"]
)
# PAX values: mostly numbers (as the numeric keywords want) or names, some junk.
DECIMALS = st.integers(-5, 5000).map(lambda n: b"%d" % n)
PAX_VALUES = st.one_of(
    DECIMALS,
    DECIMALS,
    NAMES,
    st.binary(max_size=8),
    st.sampled_from(
        [b"0", b"-1.5", b"+3", b"4294967296", b"1e3", b"inf", b"a\0b", b"9223372036854775808", b""]
    ),
)
PAX_KEYS = st.sampled_from(
    [
        b"path", b"linkpath", b"uid", b"gid", b"size", b"mtime", b"atime", b"uname", b"comment",
        b"SCHILY.xattr.user.x", b"SCHILY.xattr.a\0b", b"GNU.sparse.major", b"GNU.sparse.minor",
        b"GNU.sparse.size", b"GNU.sparse.realsize", b"GNU.sparse.numblocks", b"GNU.sparse.map",
        b"GNU.sparse.offset", b"GNU.sparse.numbytes", b"GNU.sparse.name", b"LIBARCHIVE.xattr.user.y",
    ]
)  # fmt: skip
KINDS = st.sampled_from([b"0", b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"5", b"6", b"7", b"S", b"V"])
FORMATS = st.sampled_from([craft.USTAR, craft.GNU, (b"\0" * 6, b"\0\0"), (b"ustar\0", b"  ")])


@st.composite
def sparse_map(draw: st.DrawFn) -> tuple[dict[bytes, bytes], bytes]:
    """PAX records and data of a GNU sparse 0.1 or 1.0 entry, often valid."""
    runs, at = [], 0
    for _ in range(draw(st.integers(0, 4))):
        at += draw(st.integers(-2, 50))
        length = draw(st.integers(0, 20))
        runs.append((at, length))
        at += length
    size = at + draw(st.integers(-5, 100))
    stored = sum(max(n, 0) for _, n in runs) + draw(st.sampled_from([0, 0, 0, 1, -1]))
    data = draw(st.binary(min_size=max(stored, 0), max_size=max(stored, 0)))
    numbers = b",".join(b"%d,%d" % run for run in runs)
    if draw(st.booleans()):
        lines = b"%d\n" % len(runs) + b"".join(b"%d\n%d\n" % run for run in runs)
        return {**GNU_SPARSE_10, b"GNU.sparse.realsize": b"%d" % size}, craft.padded(lines) + data
    records = {
        b"GNU.sparse.numblocks": b"%d" % len(runs),
        b"GNU.sparse.map": numbers,
        b"GNU.sparse.size": b"%d" % size,
    }
    return records, data


@st.composite
def member(draw: st.DrawFn) -> bytes:
    """One entry, with what may come before it: a PAX header, GNU long names."""
    out = b""
    records: dict[bytes, bytes] = {}
    data = draw(st.binary(max_size=700))
    if draw(st.integers(0, 4)) == 0:
        records, data = draw(sparse_map())
    if draw(st.booleans()):
        records.update(draw(st.dictionaries(PAX_KEYS, PAX_VALUES, max_size=2)))
    if records:
        out += craft.pax(records, draw(st.sampled_from([b"x", b"x", b"g"])))
    if draw(st.integers(0, 5)) == 0:
        out += craft.long_name(
            draw(NAMES) + b"n" * draw(st.sampled_from([0, 150])), draw(st.sampled_from([b"L", b"K"]))
        )
    raw: dict[str, bytes] = {}
    if draw(st.integers(0, 3)) == 0:
        for key in draw(st.lists(st.sampled_from(["uid", "gid", "mode", "mtime", "devmajor"]), max_size=2)):
            raw[key] = draw(NUMBER_FIELDS)
    if draw(st.integers(0, 6)) == 0:
        raw["prefix"] = draw(NAMES)
    kind = draw(KINDS)
    head = craft.header(draw(NAMES), kind, len(data), draw(FORMATS), raw, devminor=draw(st.integers(0, 9)))
    return out + head + craft.padded(data)


@st.composite
def tar(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(member(), min_size=1, max_size=5)))
    end = draw(st.sampled_from([bytes(1024), bytes(1024), b"", bytes(512), bytes(1024) + b"junk"]))
    return body + end


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated tar changed byte by byte: flips (a header's checksum
    made again, or not), a cut, a block inserted or dropped."""
    data = bytearray(draw(tar()))
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["flip", "flip", "flip", "cut", "insert", "drop"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[at] = draw(st.integers(0, 255))
            block = at - at % 512
            if draw(st.integers(0, 3)) and len(data) >= block + 512:
                data[block : block + 512] = craft_checksum(bytes(data[block : block + 512]))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            block = at - at % 512
            data[block:block] = draw(st.sampled_from([bytes(512), bytes(data[:512]).ljust(512, b"\0")]))
        else:
            block = at - at % 512
            del data[block : block + 512]
    return bytes(data)


def craft_checksum(block: bytes) -> bytes:
    fixed = bytearray(block)
    craft.checksum(fixed)
    return bytes(fixed)


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@SETTINGS
@given(data=tar(), chunk=st.sampled_from([1, 7, 512, 1 << 16]))
def test_generated_tars_read_as_go_reads_them(gotar: GoTar, data: bytes, chunk: int) -> None:
    compare(gotar, data, chunk)


@SETTINGS
@given(data=mutated(), chunk=st.sampled_from([1, 512, 1 << 16]))
def test_mutated_tars_read_as_go_reads_them(gotar: GoTar, data: bytes, chunk: int) -> None:
    compare(gotar, data, chunk)


# Real layers.
def test_debchunks_own_layers_read_as_go_reads_them(gotar: GoTar, tmp_path: Path) -> None:
    """Every layer of an image debchunk writes (plain format, PAX, xattrs)."""
    tree = packages_tree(tmp_path / "src", 4, 3000, 30)
    image = build(RootfsOrigin(str(tree)), f"oci:{tmp_path}/img", max_layers=3)
    read = 0
    for blob in image.layers:
        path = tmp_path / "img/blobs/sha256" / blob.descriptor.digest[7:]
        result = compare(gotar, gzip.decompress(path.read_bytes()))
        assert result["error"] == "" and result["entries"]
        read += 1
    assert read >= 2


def test_tarfile_and_umoci_layers_read_as_go_reads_them(gotar: GoTar, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "g"}) as t:
        for name, uid in (("a" * 150, 1), ("b", 3_000_000)):
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.mtime = 3, uid, 1.5
            info.pax_headers = {"SCHILY.xattr.user.own": name}
            t.addfile(info, io.BytesIO(b"abc"))
    assert compare(gotar, buf.getvalue())["error"] == ""
    layout = tmp_path / "layout"
    (tmp_path / "f").write_bytes(b"inserted\n")
    for args in (
        ["init", "--layout", str(layout)],
        ["new", "--image", f"{layout}:t"],
        ["insert", "--image", f"{layout}:t", str(tmp_path / "f"), "/etc/f"],
        ["insert", "--image", f"{layout}:t", "--whiteout", "/etc/gone"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    blobs = [p for p in (layout / "blobs/sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b"]
    assert len(blobs) == 2
    for path in blobs:
        data = gzip.decompress(path.read_bytes())
        assert compare(gotar, data)["error"] == ""
