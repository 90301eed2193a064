"""The layer writer's tar and gzip bytes: the same tar as Python's tarfile
writes, one gzip member any reader takes, already-compressed content stored."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benches.compressors import NATIVE, OURS_GZIP, OURS_ZSTD, digests_on
from encapsulate.oci.layout import Layout
from encapsulate.write.gzipstream import SEGMENT, CompressPool, GzipMember
from encapsulate.write.tar import Content, looks_random, tar_header, write_layer

MTIME = 1_767_225_600


def noise(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def text(n: int) -> bytes:
    words = [b"package", b"debian", b"layer", b"ostree", b"component", b"changelog", b"\n"]
    rng = random.Random(n)
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **fields: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mtime, ti.mode = kind, size, MTIME, 0o644
    ti.uname = ti.gname = ""
    for key, value in fields.items():
        setattr(ti, key, value)
    return ti


def reference_tar(items: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """The same items written by tarfile in PAX format."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        for ti, data in items:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def write(
    tmp_path: Path,
    items: list[tuple[tarfile.TarInfo, bytes | None]],
    compression: str,
    threads: int = 1,
    level: int | None = None,
) -> bytes:
    layout = Layout(str(tmp_path / f"layout-{compression}-{threads}-{level}"))
    contents: list[tuple[tarfile.TarInfo, Content]] = list(items)
    with layout.blob() as blob, CompressPool(threads) as pool:
        written = write_layer(blob, contents, compression, level=level, pool=pool)
    assert written.files == sum(ti.type != tarfile.DIRTYPE for ti, _ in items)
    return layout.read_blob(written.descriptor.digest)


MIXED = [
    (info("usr", tarfile.DIRTYPE, mode=0o755), None),
    (info("usr/lib/modules/x.ko.xz", size=3 << 20), noise(3 << 20, 1)),
    (info("usr/share/doc/copyright", size=200_000), text(200_000)),
    (info("usr/lib/firmware/exact", size=1 << 16), noise(1 << 16, 2)),
    (info("usr/lib/firmware/short", size=(1 << 16) - 1), noise((1 << 16) - 1, 3)),
    (info("usr/lib/mixed", size=5 << 20), noise(2 << 20, 4) + text(1 << 20) + noise(2 << 20, 5)),
    (info("usr/lib/empty"), b""),
    (info("usr/bin/sh", tarfile.SYMTYPE, linkname="dash"), None),
]


def test_same_tar_as_tarfile_one_gzip_member_and_random_content_stored(tmp_path: Path) -> None:
    expected = reference_tar(MIXED)
    plain = write(tmp_path, MIXED, "none")
    assert plain == expected
    blob = write(tmp_path, MIXED, "gzip")
    assert gzip.decompress(blob) == expected
    # GNU gzip reads it too, and it is one member (gzip -l reports its size).
    path = tmp_path / "layer.gz"
    path.write_bytes(blob)
    subprocess.run(["gzip", "-t", str(path)], check=True)
    assert subprocess.run(["zcat", str(path)], capture_output=True, check=True).stdout == expected
    # The 7 MiB of noise costs its own size plus a few bytes per 64 KiB block; the
    # 1.2 MiB of text and the headers compress.
    stored = (3 << 20) + (1 << 16) + (4 << 20)
    assert stored < len(blob) < stored + stored // 1000 + 200_000
    assert len(blob) < len(gzip.compress(expected, 6)) * 1.01


def test_reproducible_and_zstd(tmp_path: Path) -> None:
    expected = reference_tar(MIXED)
    first = write(tmp_path / "a", MIXED, "gzip")
    assert write(tmp_path / "b", MIXED, "gzip") == first
    import zstandard

    blob = write(tmp_path, MIXED, "zstd")
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == expected


def gzip_members(blob: bytes) -> list[bytes]:
    """The uncompressed bytes of each gzip member of ``blob``."""
    members = []
    while blob:
        d = zlib.decompressobj(31)
        members.append(d.decompress(blob))
        assert d.eof, "a gzip member is cut short"
        blob = d.unused_data
    return members


# Over ten segments of text and ELF code, then noise stored, then more text:
# segments are cut by size and before stored content.
BIG = [
    *MIXED,
    (info("usr/share/big.txt", size=9 << 20), text(9 << 20)),
    (info("usr/bin/python3", size=2 << 20), Path("/usr/bin/python3").resolve().read_bytes()[: 2 << 20]),
]


def test_one_gzip_member_the_same_whatever_the_threads(tmp_path: Path) -> None:
    expected = reference_tar(BIG)
    assert len(expected) > 12 * SEGMENT
    one = write(tmp_path, BIG, "gzip", threads=1)
    assert gzip_members(one) == [expected]  # one member, ostree-ext reads no other
    for threads in (2, 3, 8):
        assert write(tmp_path, BIG, "gzip", threads=threads) == one
    # Independent segments cost little: within 1% of gzip -6 of the whole tar
    # (the stored noise included), and level 1 is larger, level 9 smaller.
    assert len(one) < len(gzip.compress(expected, 6, mtime=0)) * 1.01
    fast, best = (write(tmp_path, BIG, "gzip", level=k) for k in (1, 9))
    assert gzip_members(fast) == gzip_members(best) == [expected]
    assert len(best) < len(one) < len(fast)
    # zstd's multi-threaded mode: the same frame with any number of workers.
    import zstandard

    zstd_one = write(tmp_path, BIG, "zstd", threads=1)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zstd_one) == expected
    assert write(tmp_path, BIG, "zstd", threads=3) == zstd_one


def test_gzip_and_zstd_bytes_do_not_depend_on_the_cpu(tmp_path: Path) -> None:
    # qemu-x86_64 (Debian qemu-user, in the Makefile's list) emulates x86-64
    # CPUs on any host.
    assert shutil.which("qemu-x86_64"), "install qemu-user (make installs it)"
    # The encoders run under the baseline x86-64, an SSE4.2 CPU and an AVX2
    # one (qemu emulates each model's instructions and CPUID) and natively.
    sample = tmp_path / "sample"
    sample.write_bytes(reference_tar(BIG)[: 3 << 20])
    ours = [OURS_GZIP.format(level=6), OURS_GZIP.format(level=1), OURS_ZSTD]
    # ISA-L level 3 picks its code by CPU: it shows the check sees a difference.
    control = "ISA-L 3"
    seen = {model: digests_on(model, sample, [*ours, control]) for model in ("qemu64", "Haswell", NATIVE)}
    for name in ours:
        assert len({d[name] for d in seen.values()}) == 1, name
    assert len({d[control] for d in seen.values()}) > 1
    # What ran under emulation, one thread, is what the package's encoder
    # writes with a pool of threads.
    out = io.BytesIO()
    with CompressPool(2) as pool:
        member = GzipMember(out, 6, pool)
        member.compressed(sample.read_bytes())
        member.finish()
    assert seen[NATIVE][ours[0]] == hashlib.sha256(out.getvalue()).hexdigest()


def test_looks_random() -> None:
    assert looks_random(noise(1 << 16, 7))
    assert looks_random(gzip.compress(text(1 << 20), 9) + noise(1 << 16, 8))
    assert not looks_random(text(1 << 16))
    assert not looks_random(bytes(1 << 20))
    elf = Path("/usr/bin/python3").resolve().read_bytes()[: 1 << 20]
    assert not looks_random(elf)


names = st.text(
    st.characters(codec="utf-8", exclude_characters="\0/", categories=("L", "N", "P", "S", "Zs")),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(names, min_size=1, max_size=8),
    kind=st.sampled_from(
        [
            tarfile.REGTYPE,
            tarfile.DIRTYPE,
            tarfile.SYMTYPE,
            tarfile.LNKTYPE,
            tarfile.CHRTYPE,
            tarfile.FIFOTYPE,
        ]
    ),
    link=names,
    uid=st.sampled_from([0, 1000, 8**7 - 1, 8**7, 2**32 - 1]),
    size=st.sampled_from([0, 1, 8**11 - 1, 8**11, 9 << 30]),
    mode=st.integers(0, 0o7777),
    xattr=st.booleans(),
    raw=st.booleans(),
)
def test_header_bytes_match_tarfile(
    parts: list[str], kind: bytes, link: str, uid: int, size: int, mode: int, xattr: bool, raw: bool
) -> None:
    name = "/".join(parts) + ("\udcff" if raw else "")
    ti = info(name, kind, size if kind == tarfile.REGTYPE else 0, uid=uid, gid=uid, mode=mode)
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        ti.linkname = link
    if kind == tarfile.CHRTYPE:
        ti.devmajor, ti.devminor = 1, 3
    if xattr:
        ti.pax_headers = {"SCHILY.xattr.user.component": "glibc"}
    expected = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    header = tar_header(ti)
    if uid < 8**7 and ti.size < 8**11:
        assert header == expected
        return
    # Values octal cannot hold: the PAX records are tarfile's, and the entry's
    # own header holds them in base-256 where tarfile leaves 0.
    assert len(header) == len(expected) and header[:-512] == expected[:-512]
    own = tarfile.TarInfo.frombuf(header[-512:], "utf-8", "surrogateescape")
    assert (own.uid, own.gid, own.size) == (uid, uid, ti.size)
    assert header[-512 + 108 : -512 + 116] == (
        b"\x80" + uid.to_bytes(7, "big") if uid >= 8**7 else expected[-512 + 108 : -512 + 116]
    )


def ustar_number(field: bytes) -> int:
    """A ustar/GNU numeric field, as a reader that knows no PAX decodes it:
    octal digits, or GNU base-256 (first byte 0x80, then big-endian)."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    return int(field.split(b"\0")[0].strip() or b"0", 8)


def test_large_owners_are_read_with_or_without_pax(tmp_path: Path) -> None:
    owner = 3_000_000  # above 2,097,151, the most 7 octal digits hold
    items: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (info("home/user/file", size=5, uid=owner, gid=owner + 1), b"hello")
    ]
    data = write(tmp_path, items, "none")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (member,) = tar.getmembers()
        assert (member.uid, member.gid) == (owner, owner + 1)
        assert tar.extractfile(member).read() == b"hello"  # type: ignore[union-attr]
    # A reader that ignores PAX uid/gid (tar-rs before 0.4.40) reads the ustar
    # fields of the entry's own header: the block after the PAX header's records.
    pax_size = ustar_number(data[124:136])
    own_at = 512 + -(-pax_size // 512) * 512
    own = data[own_at : own_at + 512]
    assert own[:100].rstrip(b"\0") == b"home/user/file"
    assert (ustar_number(own[108:116]), ustar_number(own[116:124]), ustar_number(own[124:136])) == (
        owner,
        owner + 1,
        5,
    )
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"], input=data, capture_output=True, check=True
    )
    assert f"{owner}/{owner + 1}" in listing.stdout.decode()


def test_short_content_is_an_error(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "layout"))
    source = tmp_path / "file"
    source.write_bytes(b"12345")
    ti = info("f", size=10)
    with layout.blob() as blob, pytest.raises(OSError, match="shorter than its 10 bytes"):
        write_layer(blob, [(ti, lambda: source.open("rb"))])
    assert os.listdir(layout.blobs) == []
    assert hashlib.sha256(source.read_bytes()).hexdigest()  # the source is untouched


def test_compression_level_options_and_layer_keys() -> None:
    from encapsulate import BuildConfig, Compression, ConfigError, RootfsOrigin
    from encapsulate.write.tar import compression_setting, layer_key

    def config(**fields: object) -> BuildConfig:
        return BuildConfig(origin=RootfsOrigin("/tree"), destination="oci:/tmp/out", **fields)  # type: ignore[arg-type]

    assert config().level == 6 and config(compression_fast=True).level == 1
    assert config(compression=Compression.ZSTD).level == 3
    assert config(compression=Compression.ZSTD, compression_level=19).level == 19
    for bad, message in (
        (config(compression_level=10), "--compression-level 10: gzip levels are 1 to 9"),
        (config(compression_level=3, compression_fast=True), "give one of them"),
    ):
        with pytest.raises(ConfigError, match=message):
            bad.check()
    # A layer written at another level is another blob: its key differs, so a
    # build never takes it from the layout in place of the level asked for.
    items: list[tuple[tarfile.TarInfo, Content]] = [(info("f", size=3), b"abc")]
    keys = {layer_key(items, compression_setting(c, k)) for c, k in (("gzip", 1), ("gzip", 6), ("zstd", 3))}
    assert len(keys) == 3 and layer_key(items, compression_setting("gzip")) in keys
