"""A corpus of hostile images, made byte by byte: tar layers that tools read
differently, tampered manifests and configs, numbers out of range, strings
that would drive a terminal, and layers that claim more than they hold.

Each case is an OCI layout written by ``write_case`` and what debchunk must
do with it: refuse it (exit 1, one line holding ``words``) or re-chunk it
into the tree Go's ``archive/tar`` reads from it.  ``tests/test_hostile.py``
runs them all through ``debchunk rechunk``.

Tar headers are packed here by hand (POSIX ustar, the PAX ``x``/``g``
extended headers and the GNU ``L``/``S`` types as described in GNU tar's
manual and POSIX.1-2001 pax) so that a case can hold what no tar writer
would write.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from tests.images import put_blob, store_image, write_index

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
EPOCH = 1_767_225_600
BLOCK = 512


# --- tar blocks ------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return (b"%0*o" % (width - 1, value)) + b"\0"


def header(
    name: bytes | str,
    size: int = 0,
    kind: bytes = b"0",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = EPOCH,
    link: bytes | str = b"",
    raw: dict[int, bytes] | None = None,
) -> bytes:
    """A ustar header block; ``raw`` overwrites bytes at offsets (before the
    checksum is computed), for fields no writer would write."""
    name = name.encode() if isinstance(name, str) else name
    link = link.encode() if isinstance(link, str) else link
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12) if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    block[136:148] = _octal(mtime, 12)
    block[156:157] = kind
    block[157:257] = link[:100].ljust(100, b"\0")
    block[257:265] = b"ustar\x0000"
    block[329:337] = _octal(0, 8)
    block[337:345] = _octal(0, 8)
    for offset, data in (raw or {}).items():
        block[offset : offset + len(data)] = data
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: bytes | str, data: bytes = b"", kind: bytes = b"0", **fields: Any) -> bytes:
    """A member: its header, then its data padded to a block."""
    return header(name, len(data), kind, **fields) + padded(data)


def pax_records(records: list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        n = len(body) + 1
        while len(str(n).encode()) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def pax(records: list[tuple[bytes, bytes]], kind: bytes = b"x") -> bytes:
    """A PAX extended header (``x``) or global header (``g``) member."""
    return member(b"PaxHeaders/x", pax_records(records), kind)


def end() -> bytes:
    return bytes(2 * BLOCK)


def tar(*members: bytes) -> bytes:
    return b"".join(members) + end()


def plain_file(name: str = "etc/hostname", data: bytes = b"hostile\n") -> bytes:
    return member(name, data)


def sparse_old(name: str, runs: list[tuple[int, int]], real_size: int, stored: bytes) -> bytes:
    """An old GNU sparse member (type ``S``): up to four runs in the header."""
    raw: dict[int, bytes] = {}
    for i, (offset, size) in enumerate(runs[:4]):
        raw[386 + 24 * i] = _octal(offset, 12)
        raw[386 + 24 * i + 12] = _octal(size, 12)
    raw[483] = _octal(real_size, 12)
    raw[257] = b"ustar  \0"  # the GNU magic
    return header(name, len(stored), b"S", raw=raw) + padded(stored)


# --- blobs and layouts ------------------------------------------------------


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Layer:
    """A layer blob, its media type and the diff_id its config will name
    (the true one unless a case says otherwise)."""

    blob: bytes
    media_type: str = TAR_GZIP
    diff_id: str | None = None
    size: int | None = None
    digest: str | None = None

    @classmethod
    def of(cls, tar_bytes: bytes, media_type: str = TAR_GZIP) -> Layer:
        compress: dict[str, Callable[[bytes], bytes]] = {TAR_GZIP: gz, TAR_ZSTD: zst, TAR: bytes}
        return cls(compress[media_type](tar_bytes), media_type, sha(tar_bytes))


@dataclass
class Image:
    """What a layout holds; the ``tamper_*`` hooks change bytes after the
    digests are taken."""

    layers: list[Layer]
    config: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    tamper_config: Callable[[bytes], bytes] | None = None
    tamper_manifest: Callable[[bytes], bytes] | None = None
    nested_index: bool = False


def _replace(layout: Path, descriptor: dict[str, Any], change: Callable[[bytes], bytes]) -> None:
    path = layout / "blobs/sha256" / descriptor["digest"].split(":")[1]
    path.write_bytes(change(path.read_bytes()))


def write_layout(layout: Path, image: Image, tag: str = "t") -> str:
    """The image as an OCI layout at ``layout``; its IMGREF."""
    layout.mkdir(parents=True, exist_ok=True)
    descriptors = []
    for layer in image.layers:
        d = {"mediaType": layer.media_type, **put_blob(layout, layer.blob)}
        d["digest"] = layer.digest or d["digest"]
        d["size"] = layer.size if layer.size is not None else d["size"]
        descriptors.append(d)
    document = {
        "created": "2026-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
        **image.config,
    }
    config, entry = store_image(layout, descriptors, document, image.annotations)
    if image.tamper_config:
        _replace(layout, config, image.tamper_config)
    if image.tamper_manifest:
        _replace(layout, entry, image.tamper_manifest)
    if image.nested_index:
        inner = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
        entry = {"mediaType": INDEX, **put_blob(layout, json.dumps(inner).encode())}
    return write_index(layout, entry, tag)


# --- the cases --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A hostile image and what debchunk must do with it: refuse it with a
    line holding every one of ``words``, or (``words`` None) read it as Go
    does.  ``kind`` is the class of finding it belongs to."""

    kind: str
    image: Callable[[], Image]
    words: tuple[str, ...] | None


def _one(*members: bytes, media_type: str = TAR_GZIP) -> Callable[[], Image]:
    return lambda: Image([Layer.of(tar(*members), media_type)])


def _layers(*tars: bytes) -> Callable[[], Image]:
    return lambda: Image([Layer.of(t) for t in tars])


BASE = plain_file()
NUL_PATH = b"etc/passwd\0.d/evil"


def _gzip_trailing_garbage() -> Image:
    data = tar(BASE)
    return Image([Layer(gz(data) + b"garbage!", TAR_GZIP, sha(data))])


def _gzip_two_members() -> Image:
    first, second = member("a", b"one\n"), tar(member("b", b"two\n"))
    return Image([Layer(gz(first) + gz(second), TAR_GZIP, sha(first + second))])


def _zstd_huge_window() -> Image:
    # A frame header declaring a 2 GiB window (Window_Descriptor exponent 21,
    # RFC 8878 3.1.1.1.2): a decoder that believes it would allocate that much.
    data = tar(BASE)
    frame = bytearray(zstandard.ZstdCompressor(write_content_size=False).compress(data))
    frame[4] = 0x00  # no checksum, no content size, window descriptor present
    frame[5] = (21 << 3) | 0
    return Image([Layer(bytes(frame), TAR_ZSTD, sha(data))])


def _deflate_bomb(size: int) -> Image:
    """A gzip layer whose one file is ``size`` zero bytes."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out, digest = [z.compress(header("bomb", size))], hashlib.sha256(header("bomb", size))
    zeros = bytes(1 << 20)
    left = size + (-size % BLOCK) + 2 * BLOCK
    while left:
        piece = zeros[: min(left, len(zeros))]
        out.append(z.compress(piece))
        digest.update(piece)
        left -= len(piece)
    out.append(z.flush())
    return Image([Layer(b"".join(out), TAR_GZIP, "sha256:" + digest.hexdigest())])


def _tampered_cmd(blob: bytes) -> bytes:
    return blob.replace(b'"/bin/sh"', b'"/bin/xx"')


def _wrong_diff_id() -> Image:
    layer = Layer.of(tar(BASE))
    layer.diff_id = sha(tar(plain_file(data=b"other\n")))
    return Image([layer])


def _short_diff_ids() -> Image:
    image = Image([Layer.of(tar(BASE)), Layer.of(tar(member("b", b"b")))])
    image.config = {"rootfs": {"type": "layers", "diff_ids": [image.layers[0].diff_id]}}
    return image


def _wrong_size() -> Image:
    layer = Layer.of(tar(BASE))
    layer.size = len(layer.blob) + 1
    return Image([layer])


def _missing_blob() -> Image:
    layer = Layer.of(tar(BASE))
    layer.digest = sha(b"not stored")
    return Image([layer])


def _config(**fields: Any) -> Callable[[], Image]:
    return lambda: Image([Layer.of(tar(BASE))], config={"config": fields})


def _deep(depth: int) -> bytes:
    return pax([(b"path", b"/".join([b"d"] * depth) + b"/f")]) + member("deep", b"x")


ESC = "\x1b]0;owned\x07\x1b[2J\rOK\n"
SHORT_PAX = pax([(b"path", b"etc/short")])[:BLOCK] + b"12 path=abc\n"


CASES: dict[str, Case] = {
    # Parser differentials: what Go's archive/tar refuses.
    "pax-path-nul": Case("tar", _one(pax([(b"path", NUL_PATH)]) + member("x", b"evil")), ("NUL",)),
    "pax-linkpath-nul": Case(
        "tar",
        _one(BASE, pax([(b"linkpath", b"etc/hostname\0x")]) + member("l", kind=b"2", link="x")),
        ("NUL",),
    ),
    "pax-key-nul": Case("tar", _one(pax([(b"SCHILY.xattr.user.a\0b", b"v")]) + member("x", b"1")), ("NUL",)),
    "pax-over-1mib": Case(
        "tar", _one(pax([(b"comment", b"c" * (1 << 20))]) + member("x", b"1")), ("1048576",)
    ),
    "pax-claims-1mb": Case(
        "tar", _one(header("PaxHeaders/x", 1 << 20, b"x") + b"20 path=etc/passwd\n"), None
    ),
    "pax-record-length-huge": Case(
        "tar", _one(member("p", b"99999999999999999999 path=x\n", b"x") + BASE), None
    ),
    "pax-record-length-short": Case("tar", _one(member("p", b"3 path=x\n", b"x") + BASE), None),
    "pax-record-no-newline": Case("tar", _one(member("p", b"11 path=xyz", b"x") + BASE), None),
    "pax-mtime-inf": Case("tar", _one(pax([(b"mtime", b"inf")]) + BASE), ("mtime",)),
    "pax-mtime-nan": Case("tar", _one(pax([(b"mtime", b"nan")]) + BASE), ("mtime",)),
    "pax-mtime-huge": Case("tar", _one(pax([(b"mtime", b"1e300")]) + BASE), ("mtime",)),
    "pax-uid-2^32": Case("numbers", _one(pax([(b"uid", b"4294967296")]) + BASE), ("uid",)),
    "pax-uid-minus-1": Case("numbers", _one(pax([(b"uid", b"-1")]) + BASE), ("uid",)),
    "pax-gid-2^63": Case("numbers", _one(pax([(b"gid", b"9223372036854775808")]) + BASE), ("gid",)),
    "pax-size-negative": Case("tar", _one(pax([(b"size", b"-5")]) + BASE), None),
    "pax-size-garbage": Case("tar", _one(pax([(b"size", b"12abc")]) + BASE), None),
    "octal-mode-garbage": Case("tar", _one(header("etc/x", 0, raw={100: b"06x4\0\0\0\0"})), None),
    "octal-size-embedded-nul": Case(
        "tar", _one(header("etc/x", 0, raw={124: b"000\x000000001\0"}) + padded(b"a")), None
    ),
    "base256-negative-size": Case("tar", _one(header("etc/x", 0, raw={124: b"\xff" * 12})), None),
    "base256-size-2^62": Case("resources", _one(header("etc/x", 1 << 62)), None),
    "bad-checksum": Case("tar", _one(BASE, header("etc/y", raw={148: b"0000000\0"}, kind=b"0")), None),
    "zero-then-header": Case(
        "tar", lambda: Image([Layer.of(BASE + bytes(BLOCK) + member("etc/z", b"z") + end())]), None
    ),
    "gnu-longname-over-1mib": Case(
        "tar", _one(member("././@LongLink", b"a" * ((1 << 20) + 1), b"L") + BASE), None
    ),
    "sparse-1tib": Case("resources", _one(sparse_old("sparse", [(1 << 40, 1)], (1 << 40) + 1, b"x")), ()),
    "sparse-overlap": Case("tar", _one(sparse_old("sparse", [(0, 10), (5, 10)], 20, b"a" * 20)), None),
    "sparse-past-size": Case("tar", _one(sparse_old("sparse", [(0, 10), (30, 10)], 20, b"a" * 20)), None),
    "sparse-unbacked": Case(
        "tar", lambda: Image([Layer.of(sparse_old("s", [(0, 5000)], 5000, b"a" * 600))]), None
    ),
    "cut-inside-data": Case(
        "tar", lambda: Image([Layer.of(member("f", b"x" * 4000)[:2000])]), ("ends inside",)
    ),
    "cut-inside-header": Case("tar", lambda: Image([Layer.of(BASE + header("g", 3)[:200])]), None),
    "pax-then-nothing": Case("tar", lambda: Image([Layer.of(BASE + pax([(b"path", b"x")]) + end())]), None),
    # What Go accepts, debchunk accepts, as Go reads it.
    "no-end-blocks": Case("accepts", lambda: Image([Layer.of(BASE + member("etc/motd", b"m" * 700))]), None),
    "ends-in-padding": Case(
        "accepts", lambda: Image([Layer.of(BASE + header("etc/motd", 700) + b"m" * 700)]), None
    ),
    "global-header-not-merged": Case(
        "accepts", _one(pax([(b"uid", b"7"), (b"path", b"g")], b"g") + BASE), None
    ),
    "duplicate-paths-last-wins": Case(
        "accepts", _one(member("etc/a", b"first"), member("etc/a", b"second")), None
    ),
    "gnu-longname-nul-cut": Case(
        "accepts", _one(member("././@LongLink", b"etc/long\0tail", b"L") + member("x", b"1")), None
    ),
    "pax-xattrs-binary": Case(
        "accepts", _one(pax([(b"SCHILY.xattr.user.bin", b"\x00\x01\xff")]) + member("etc/x", b"1")), None
    ),
    "pax-mtime-fraction": Case("accepts", _one(pax([(b"mtime", b"1700000000.999999999")]) + BASE), None),
    "uid-large-valid": Case("accepts", _one(pax([(b"uid", b"100000000")]) + BASE), None),
    "devices-and-fifo": Case(
        "accepts",
        _one(
            member("dev/null2", kind=b"3", mode=0o666),
            member("dev/sda9", kind=b"4"),
            member("run/fifo", kind=b"6"),
        ),
        None,
    ),
    "setuid-file": Case("accepts", _one(member("usr/bin/su2", b"elf", mode=0o4755)), None),
    "absolute-symlink": Case("accepts", _one(member("etc/evil", kind=b"2", link="/etc/shadow")), None),
    "gzip-two-members": Case("accepts", _gzip_two_members, None),
    "trailing-garbage-after-end": Case("accepts", lambda: Image([Layer.of(tar(BASE) + b"junk" * 300)]), None),
    "many-pax-records": Case(
        "accepts", _one(pax([(b"comment.k%d" % i, b"v") for i in range(20000)]) + BASE), None
    ),
    "deep-path": Case("accepts", _one(_deep(1500)), None),
    # Paths.
    "climbs-out": Case("paths", _one(member("../escape", b"x")), ("climbs out",)),
    "absolute-path": Case("paths", _one(member("/etc/escape", b"x")), ("absolute",)),
    "hardlink-missing": Case("paths", _one(member("b", kind=b"1", link="missing")), ("target",)),
    "hardlink-climbs": Case("paths", _one(BASE, member("b", kind=b"1", link="../etc/hostname")), ("climbs",)),
    "file-under-symlink": Case(
        "paths", _one(member("etc/link", kind=b"2", link="/tmp"), member("etc/link/x", b"1")), None
    ),
    "escape-in-name": Case("strings", _one(member("etc/\x1b[31mred\rOK", b"x")), None),
    # dpkg's status file is read with python3-apt, whose TagSection crashed
    # (SIGSEGV) on a field name that is not UTF-8.
    "dpkg-status-field-not-utf8": Case(
        "strings",
        _one(member("var/lib/dpkg/status", b"Package: a\nStatus: install ok installed\n\x80: b\n\n")),
        None,
    ),
    "dpkg-status-field-nul": Case(
        "strings", _one(member("var/lib/dpkg/status", b"Package: a\nP\x00: x\n\n")), None
    ),
    "dpkg-status-name-not-utf8": Case(
        "strings",
        _one(member("var/lib/dpkg/status", b"Package: \xff\x1b[2J\nStatus: install ok installed\n\n")),
        None,
    ),
    # Integrity.
    "manifest-tampered": Case(
        "integrity", lambda: Image([Layer.of(tar(BASE))], tamper_manifest=lambda b: b + b" "), ("digest",)
    ),
    "config-tampered": Case(
        "integrity", lambda: Image([Layer.of(tar(BASE))], tamper_config=_tampered_cmd), ("digest",)
    ),
    "diff-id-wrong": Case("integrity", _wrong_diff_id, ("diff_id",)),
    "diff-ids-short": Case("integrity", _short_diff_ids, ("diff_ids",)),
    "layer-size-wrong": Case("integrity", _wrong_size, ()),
    "layer-blob-missing": Case("integrity", _missing_blob, ()),
    "index-in-index": Case("integrity", lambda: Image([Layer.of(tar(BASE))], nested_index=True), ("index",)),
    "gzip-trailing-garbage": Case("integrity", _gzip_trailing_garbage, ()),
    "zstd-2gib-window": Case("resources", _zstd_huge_window, ()),
    "gzip-bomb-200mib": Case("resources", lambda: _deflate_bomb(200 << 20), ("--tmp-budget",)),
    # Config.
    "config-cmd-number": Case("config", _config(Cmd=42), ("Cmd",)),
    "config-env-string": Case("config", _config(Env="PATH=/bin"), ("Env",)),
    "config-labels-list": Case("config", _config(Labels=["a"]), ("Labels",)),
    # Strings that would drive a terminal.
    "label-escapes": Case(
        "strings", lambda: Image([Layer.of(tar(BASE))], config={"config": {"Labels": {"x": ESC}}}), None
    ),
    "annotation-escapes": Case("strings", lambda: Image([Layer.of(tar(BASE))], annotations={"x": ESC}), None),
    "label-key-escapes": Case(
        "strings", lambda: Image([Layer.of(tar(BASE))], config={"config": {"Labels": {ESC: "v"}}}), None
    ),
}
