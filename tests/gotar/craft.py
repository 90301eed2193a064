"""Tar streams made byte by byte, for cases no tar writer makes: any field
of a header may be given raw, PAX records may hold anything, and the
checksum is made right unless told otherwise."""

from __future__ import annotations

from collections.abc import Iterable

BLOCK = 512
# Where each header field is (offset, width): ustar, with GNU's own fields.
FIELDS = {
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "chksum": (148, 8),
    "type": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 6),
    "version": (263, 2),
    "uname": (265, 32),
    "gname": (297, 32),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
    "atime": (345, 12),
    "ctime": (357, 12),
    "sparse": (386, 96),
    "isextended": (482, 1),
    "realsize": (483, 12),
}
USTAR = (b"ustar\0", b"00")
GNU = (b"ustar ", b" \0")


def octal(value: int, width: int) -> bytes:
    """A number field as tar writers write it: octal digits and a NUL."""
    return b"%0*o\0" % (width - 1, value)


def base256(value: int, width: int) -> bytes:
    """A number field in GNU base-256 (two's complement, high bit set)."""
    bits = 8 * width
    return (value % (1 << bits) if value < 0 else (1 << (bits - 1)) | value).to_bytes(width, "big")


def checksum(block: bytearray) -> None:
    """Set the checksum field of ``block`` from its bytes."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def header(
    name: bytes = b"file",
    kind: bytes = b"0",
    size: int = 0,
    fmt: tuple[bytes, bytes] = USTAR,
    raw: dict[str, bytes] | None = None,
    **numbers: int,
) -> bytes:
    """One header block: ``numbers`` (mode, uid, gid, mtime, devmajor, ...)
    in octal, ``raw`` fields as given (``chksum`` too: then it is kept)."""
    block = bytearray(BLOCK)
    fields: dict[str, bytes] = {"name": name, "type": kind, "magic": fmt[0], "version": fmt[1]}
    values = {"mode": 0o644, "uid": 0, "gid": 0, "mtime": 0, "size": size, **numbers}
    for key, number in values.items():
        fields[key] = octal(number, FIELDS[key][1])
    fields.update(raw or {})
    for key, value in fields.items():
        offset, width = FIELDS[key]
        assert len(value) <= width, key
        block[offset : offset + len(value)] = value
    if "chksum" not in (raw or {}):
        checksum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def record(key: bytes, value: bytes) -> bytes:
    """One PAX record, its length right."""
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax(records: Iterable[tuple[bytes, bytes]] | dict[bytes, bytes], kind: bytes = b"x") -> bytes:
    """A PAX extended (or, with kind g, global) header and its records."""
    items = records.items() if isinstance(records, dict) else records
    data = b"".join(record(k, v) for k, v in items)
    return header(b"PaxHeader", kind, len(data)) + padded(data)


def entry(
    name: bytes, data: bytes = b"", kind: bytes = b"0", raw: dict[str, bytes] | None = None, **numbers: int
) -> bytes:
    """A header and its data, padded."""
    return header(name, kind, len(data), USTAR, raw, **numbers) + padded(data)


def long_name(name: bytes, kind: bytes = b"L") -> bytes:
    """A GNU long name (or, with kind K, long link) header."""
    return header(b"././@LongLink", kind, len(name) + 1, fmt=GNU) + padded(name + b"\0")


def archive(*parts: bytes, end: bool = True) -> bytes:
    """The parts, and the two zero blocks that end an archive."""
    return b"".join(parts) + (bytes(2 * BLOCK) if end else b"")
