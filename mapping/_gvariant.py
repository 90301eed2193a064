"""Decode a dirtree object's serialized GVariant, ``(a(say)a(sayay))``, in one pass.

The bytes come from ``OstreeRepo.load_variant`` and are checked against the
object's checksum first, so they are in normal form.  Walking them here costs a
slice per child instead of several PyGObject calls per child.  Framing follows
the GVariant serialization format (GLib's "GVariant Serialisation" spec):
variable-sized array elements end at offsets listed after them; a tuple lists
the ends of its variable-sized members except the last, in reverse order, at its
own end; offsets are 1, 2, 4 or 8 bytes wide depending on the container's size.
"""

from __future__ import annotations


class VariantFormatError(ValueError):
    """The bytes do not frame as the expected type."""


def _offset_size(size: int) -> int:
    if size <= 0xFF:
        return 1
    if size <= 0xFFFF:
        return 2
    return 4 if size <= 0xFFFFFFFF else 8


def _read(data: bytes, at: int, width: int) -> int:
    return int.from_bytes(data[at : at + width], "little")


def _array(data: bytes) -> list[bytes]:
    """Elements of an array of variable-sized elements."""
    size = len(data)
    if size == 0:
        return []
    width = _offset_size(size)
    table = _read(data, size - width, width)
    if table > size or (size - table) % width:
        raise VariantFormatError("bad array framing")
    count = (size - table) // width
    out = []
    start = 0
    for i in range(count):
        end = _read(data, table + i * width, width)
        if not start <= end <= table:
            raise VariantFormatError("bad array element offset")
        out.append(data[start:end])
        start = end
    return out


def _string(data: bytes) -> str:
    if not data or data[-1] != 0:
        raise VariantFormatError("string without its NUL")
    return data[:-1].decode("utf-8")


def _tuple_ends(data: bytes, count: int) -> tuple[list[int], int]:
    """Ends of the first ``count`` members of a tuple, and where the last one ends."""
    size = len(data)
    width = _offset_size(size)
    ends = [_read(data, size - (i + 1) * width, width) for i in range(count)]
    last = size - count * width
    if any(not 0 <= e <= last for e in ends) or ends != sorted(ends):
        raise VariantFormatError("bad tuple framing")
    return ends, last


def decode_dirtree(data: bytes) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, bytes]]]:
    """Files as (name, content checksum) and directories as (name, dirtree
    checksum, dirmeta checksum); checksums are the raw 32 bytes."""
    (files_end,), dirs_end = _tuple_ends(data, 1)
    files = []
    for element in _array(data[:files_end]):
        (name_end,), last = _tuple_ends(element, 1)
        files.append((_string(element[:name_end]), element[name_end:last]))
    dirs = []
    for element in _array(data[files_end:dirs_end]):
        (name_end, tree_end), last = _tuple_ends(element, 2)
        dirs.append((_string(element[:name_end]), element[name_end:tree_end], element[tree_end:last]))
    checksums = [c for _, c in files] + [c for _, t, m in dirs for c in (t, m)]
    if any(len(c) != 32 for c in checksums):
        raise VariantFormatError("checksum is not 32 bytes")
    return files, dirs
