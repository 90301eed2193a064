"""Read tar headers from a stream, once, front to back.

In: the uncompressed bytes of a tar archive, as an iterator of chunks.  Out:
its members (``TarMember``), each with where its data lies in the stream;
the data itself is passed to a sink as it goes by, never kept.

What is read, and how, follows CPython's ``tarfile`` (3.11) so that a member
reads as ``tarfile`` reads it: ustar and GNU headers (base-256 numbers, the
ustar prefix, GNU longname/longlink ``L``/``K``, old GNU sparse ``S``), PAX
extended ``x`` and global ``g`` headers with binary values and the GNU sparse
formats 0.0, 0.1 and 1.0.  Names are decoded as UTF-8 with surrogateescape,
as ``tarfile.open(..., encoding="utf-8", errors="surrogateescape")`` does.
Like ``tarfile``, a bad header after the first ends the archive: the caller
checks that only zeros follow (``TarReader.trailing_zeros``).  A stream that
ends without end-of-archive blocks ends the archive too; one that ends in the
padding after the last member's data does with ``end_in_padding``, as Go's
archive/tar reads it (``tarfile`` calls it "unexpected end of data").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_CHECKSUM_SPACES = 8 * 0x20

REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
GNU_SPARSE = b"S"
PAX_EXTENDED = b"x"
PAX_GLOBAL = b"g"
SOLARIS_EXTENDED = b"X"
_REGULAR = frozenset((REGTYPE, AREGTYPE, CONTTYPE, GNU_SPARSE))
_GNU = frozenset((GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE))
# Types whose data tarfile does not skip (it treats a size on them as noise).
_NO_DATA = frozenset((LNKTYPE, SYMTYPE, DIRTYPE, FIFOTYPE, CHRTYPE, BLKTYPE, GNU_LONGNAME, GNU_LONGLINK))
_PAX_RECORD_LENGTH = re.compile(rb"([0-9]{1,20}) ")
_PAX_NAMES = {"path": "name", "linkpath": "linkname"}


class TarFormatError(Exception):
    """The archive is malformed; the message is ``tarfile``'s word for why
    ("bad checksum", "invalid header", "unexpected end of data", ...)."""


class TarEndsInside(Exception):
    """The stream ends inside a regular member's data."""

    def __init__(self, member: TarMember) -> None:
        super().__init__(member.name)
        self.member = member


@dataclass(frozen=True, slots=True)
class _Extension:
    """A PAX extended header (its records merged over the global ones, and
    GNU sparse 0.0's runs) or a GNU longname/longlink, for the next member."""

    kind: bytes
    records: dict[str, bytes] = field(default_factory=dict)
    sparse_00: list[tuple[int, int]] = field(default_factory=list)
    name: str = ""


class _HeaderError(Exception):
    """A header block could not be read (tarfile's HeaderError family)."""

    def __init__(self, reason: str, nonzero: bool = True) -> None:
        super().__init__(reason)
        # Whether bytes that are not zeros were consumed: then the archive
        # does not just end here.
        self.nonzero = nonzero


@dataclass(slots=True)
class TarMember:
    """One member as ``tarfile.TarInfo`` gives it (the fields debchunk uses).

    ``offset_data`` is where its data starts in the stream; for a sparse
    member ``sparse`` lists its data runs (offset, size) in the expanded
    file, stored back to back from ``offset_data``.  ``pax_headers`` keeps
    PAX records as raw bytes (the global ones included)."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    devmajor: int
    devminor: int
    mtime: int = 0
    offset: int = 0
    offset_data: int = 0
    next_offset: int = 0
    sparse: list[tuple[int, int]] | None = None
    pax_headers: dict[str, bytes] = field(default_factory=dict)

    def isreg(self) -> bool:
        """A regular file (sparse and contiguous ones included)."""
        return self.type in _REGULAR

    def isdir(self) -> bool:
        """A directory."""
        return self.type == DIRTYPE

    def islnk(self) -> bool:
        """A hardlink."""
        return self.type == LNKTYPE

    def stored_size(self) -> int:
        """How many bytes of data the stream holds for it from ``offset_data``."""
        if self.sparse:
            return sum(n for _, n in self.sparse)
        return self.size

    def skips_data(self) -> bool:
        """Whether its data blocks follow its header (tarfile's rule)."""
        return self.isreg() or self.type not in _NO_DATA


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _field(raw: bytes) -> bytes:
    end = raw.find(0)
    return raw if end < 0 else raw[:end]


def _number(raw: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when its first
    byte is 0x80 (positive) or 0xff (negative)."""
    first = raw[0]
    if first == 0o200 or first == 0o377:
        n = int.from_bytes(raw[1:], "big")
        return n - 256 ** (len(raw) - 1) if first == 0o377 else n
    try:
        text = _field(raw).decode("ascii").strip()
        return int(text or "0", 8)
    except ValueError:
        raise _HeaderError("invalid header") from None


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    # The checksum treats its own field as spaces; some tars summed signed
    # chars (tarfile accepts both).
    unsigned = sum(block) - sum(block[148:156]) + _CHECKSUM_SPACES
    if stored == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b >= 0x80)
    return stored == signed


def _round(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


class _Stream:
    """Chunks read front to back, with the absolute offset of what is next."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._pos = 0
        self._base = 0

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _advance(self) -> bool:
        """Move to the next non-empty chunk; False at the end."""
        self._base += len(self._chunk)
        self._pos = 0
        for chunk in self._chunks:
            if chunk:
                self._chunk = chunk
                return True
        self._chunk = b""
        return False

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes, fewer only at the end of the stream."""
        end = self._pos + n
        if end <= len(self._chunk):
            data = self._chunk[self._pos : end]
            self._pos = end
            return data
        parts = [self._chunk[self._pos :]]
        got = len(parts[0])
        self._pos = len(self._chunk)
        while got < n and self._advance():
            part = self._chunk[: n - got]
            parts.append(part)
            got += len(part)
            self._pos = len(part)
        return b"".join(parts)

    def pass_on(self, n: int, sink: Callable[[memoryview], object] | None) -> int:
        """Give the next ``n`` bytes to ``sink`` (or drop them); how many there were."""
        done = 0
        while done < n:
            if self._pos >= len(self._chunk) and not self._advance():
                break
            take = min(n - done, len(self._chunk) - self._pos)
            if sink is not None:
                sink(memoryview(self._chunk)[self._pos : self._pos + take])
            self._pos += take
            done += take
        return done


class TarReader:
    """The members of a tar stream, in order; see the module's docstring.

    Iterate for the members; while a regular member is current, ``data``
    passes its stored bytes on.  When the iteration ends, ``trailing_zeros``
    reads what follows the end of the archive.  ``end_in_padding``: the
    stream may end inside the padding after the last member's data."""

    def __init__(self, chunks: Iterator[bytes], *, end_in_padding: bool = False) -> None:
        self._stream = _Stream(chunks)
        self._end_in_padding = end_in_padding
        self._globals: dict[str, bytes] = {}
        self._current: TarMember | None = None
        self._data_done = True
        # Whether the end was a bad header (bytes other than zeros read).
        self._bad_end = False

    def __iter__(self) -> Iterator[TarMember]:
        stream = self._stream
        while True:
            current = self._current
            if current is not None:
                if current.isreg() and not self._data_done:
                    self.data(None)
                need = current.next_offset - stream.offset
                if need < 0:
                    raise TarFormatError("invalid header")
                if stream.pass_on(need, None) < need:
                    stored = current.stored_size() if current.skips_data() else 0
                    if self._end_in_padding and stream.offset >= current.offset_data + stored:
                        self._current = None
                        return
                    raise TarFormatError("unexpected end of data")
            start = stream.offset
            try:
                member = self._member()
            except _HeaderError as e:
                if start == 0 and str(e) != "end of file header":
                    raise TarFormatError("empty file" if str(e) == "empty header" else str(e)) from None
                self._bad_end = e.nonzero
                self._current = None
                return
            member.offset = start
            self._current = member
            self._data_done = False
            yield member

    def data(self, sink: Callable[[memoryview], object] | None) -> None:
        """Pass the current regular member's stored bytes to ``sink``;
        ``TarEndsInside`` when the stream ends first."""
        member = self._current
        assert member is not None and not self._data_done
        self._data_done = True
        stream = self._stream
        stored = member.stored_size()
        if member.offset_data + stored > member.next_offset:
            # Only a sparse map can claim more than the member holds.
            raise TarFormatError("invalid sparse map")
        if stream.pass_on(stored, sink) < stored:
            raise TarEndsInside(member)

    def trailing_zeros(self) -> bool:
        """After the iteration: whether only zeros follow the end of the archive."""
        ok = not self._bad_end
        stream = self._stream

        def check(view: memoryview) -> None:
            nonlocal ok
            if ok and view.nbytes and view.tobytes().count(0) != view.nbytes:
                ok = False

        while stream.pass_on(1 << 20, check):
            pass
        return ok

    def drain(self) -> None:
        """Read the stream to its end, keeping nothing."""
        while self._stream.pass_on(1 << 20, None):
            pass

    # Headers.

    def _block(self) -> TarMember:
        """One header block, as tarfile's ``TarInfo.frombuf``."""
        block = self._stream.read(BLOCK)
        if len(block) != BLOCK:
            if not block:
                raise _HeaderError("empty header", False)
            raise _HeaderError("truncated header", block.count(0) != len(block))
        if block == _ZERO_BLOCK:
            raise _HeaderError("end of file header", False)
        if not _checksum_ok(block):
            raise _HeaderError("bad checksum")
        kind = block[156:157]
        name = _text(_field(block[0:100]))
        member = TarMember(
            name,
            kind,
            _number(block[100:108]),
            _number(block[108:116]),
            _number(block[116:124]),
            _number(block[124:136]),
            _text(_field(block[157:257])),
            _number(block[329:337]),
            _number(block[337:345]),
            _number(block[136:148]),
        )
        prefix = _field(block[345:500])
        if kind == AREGTYPE and name.endswith("/"):
            member.type = DIRTYPE
        if kind == GNU_SPARSE:
            member.sparse = self._old_sparse(block)
        if member.type == DIRTYPE:
            member.name = member.name.rstrip("/")
        if prefix and kind not in _GNU:
            member.name = _text(prefix) + "/" + member.name
        return member

    def _member(self) -> TarMember:
        """The next member, its extension headers applied (tarfile's
        ``fromtarfile`` and ``_proc_*``, unrolled)."""
        stream = self._stream
        # Extension headers before the member, outermost first: tarfile
        # applies them innermost first, so the outermost wins.
        extensions: list[_Extension] = []
        first = True
        while True:
            try:
                header = self._block()
                if header.type in (PAX_EXTENDED, PAX_GLOBAL, SOLARIS_EXTENDED):
                    records, sparse_00 = _pax(stream.read(_round(header.size)))
                    if header.type == PAX_GLOBAL:
                        self._globals.update(records)
                    else:
                        merged = self._globals.copy()
                        merged.update(records)
                        extensions.append(_Extension(PAX_EXTENDED, merged, sparse_00))
                elif header.type in (GNU_LONGNAME, GNU_LONGLINK):
                    name = _text(_field(stream.read(_round(header.size))))
                    extensions.append(_Extension(header.type, name=name))
                else:
                    break
            except _HeaderError as e:
                if first:
                    raise
                raise TarFormatError(str(e)) from None
            first = False
        member = header
        if member.sparse is not None:
            # Old GNU sparse: the size field holds the stored size.
            stored_size, member.size = member.size, self._origsize
            member.offset_data = stream.offset
            member.next_offset = member.offset_data + _round(stored_size)
        else:
            member.offset_data = stream.offset
            member.next_offset = member.offset_data + (_round(member.size) if member.skips_data() else 0)
        try:
            _apply_pax(member, self._globals)
            for extension in reversed(extensions):
                if extension.kind == PAX_EXTENDED:
                    self._extended(member, extension)
                elif extension.kind == GNU_LONGNAME:
                    member.name = extension.name.removesuffix("/") if member.isdir() else extension.name
                else:
                    member.linkname = extension.name
        except ValueError:
            # tarfile lets these escape as ValueError.
            raise TarFormatError("invalid number in a PAX header") from None
        return member

    def _extended(self, member: TarMember, extension: _Extension) -> None:
        """A PAX extended header's records applied to the member after it."""
        pax = extension.records
        if "GNU.sparse.map" in pax:
            numbers = [int(x) for x in pax["GNU.sparse.map"].split(b",")]
            member.sparse = list(zip(numbers[::2], numbers[1::2], strict=False))
        elif "GNU.sparse.size" in pax:
            member.sparse = extension.sparse_00
        elif pax.get("GNU.sparse.major") == b"1" and pax.get("GNU.sparse.minor") == b"0":
            member.sparse = self._sparse_10(member)
        _apply_pax(member, pax)
        if "size" in pax:
            member.next_offset = member.offset_data + (_round(member.size) if member.skips_data() else 0)

    def _sparse_10(self, member: TarMember) -> list[tuple[int, int]]:
        """GNU sparse 1.0: the map is decimal lines at the start of the data."""
        stream = self._stream
        buf = stream.read(BLOCK)
        count, _, buf = buf.partition(b"\n")
        numbers: list[int] = []
        while len(numbers) < int(count) * 2:
            if b"\n" not in buf:
                more = stream.read(BLOCK)
                if not more:
                    raise ValueError("sparse map cut short")
                buf += more
            number, _, buf = buf.partition(b"\n")
            numbers.append(int(number))
        member.offset_data = stream.offset
        return list(zip(numbers[::2], numbers[1::2], strict=False))

    def _old_sparse(self, block: bytes) -> list[tuple[int, int]]:
        """Old GNU sparse: up to 4 runs in the header, 21 in each extension block."""
        runs: list[tuple[int, int]] = []
        for pos in range(386, 386 + 4 * 24, 24):
            # tarfile keeps the header's empty slots as (0, 0) runs.
            runs.append((_number(block[pos : pos + 12]), _number(block[pos + 12 : pos + 24])))
        extended = bool(block[482])
        self._origsize = _number(block[483:495])
        while extended:
            more = self._stream.read(BLOCK)
            if len(more) != BLOCK:
                raise _HeaderError("truncated header")
            for pos in range(0, 21 * 24, 24):
                offset, size = _number(more[pos : pos + 12]), _number(more[pos + 12 : pos + 24])
                if offset and size:
                    runs.append((offset, size))
            extended = bool(more[504])
        return runs


def _pax(buf: bytes) -> tuple[dict[str, bytes], list[tuple[int, int]]]:
    """PAX records ``"%d %s=%s\\n"``, keywords decoded, values kept as bytes.
    GNU sparse 0.0 repeats its offset/numbytes keywords: their pairs are
    kept aside, in order."""
    records: dict[str, bytes] = {}
    offsets: list[int] = []
    sizes: list[int] = []
    pos = 0
    while len(buf) > pos and buf[pos] != 0:
        match = _PAX_RECORD_LENGTH.match(buf, pos)
        if match is None:
            raise _HeaderError("invalid header")
        length = int(match.group(1))
        if length < 5 or pos + length > len(buf):
            raise _HeaderError("invalid header")
        end = match.start(1) + length - 1
        keyword, equals, value = buf[match.end(1) + 1 : end].partition(b"=")
        if not keyword or equals != b"=" or buf[end] != 0x0A:
            raise _HeaderError("invalid header")
        if keyword == b"GNU.sparse.offset" or keyword == b"GNU.sparse.numbytes":
            try:
                (offsets if keyword == b"GNU.sparse.offset" else sizes).append(int(value))
            except ValueError:
                raise _HeaderError("invalid header") from None
        records[_text(keyword)] = value
        pos += length
    return records, list(zip(offsets, sizes, strict=False))


def _apply_pax(member: TarMember, pax: dict[str, bytes]) -> None:
    """tarfile's ``_apply_pax_info``: the records that override header fields."""
    for keyword, value in pax.items():
        if keyword == "GNU.sparse.name" or keyword == "path":
            member.name = _text(value).rstrip("/") if keyword == "path" else _text(value)
        elif keyword in ("GNU.sparse.size", "GNU.sparse.realsize"):
            member.size = int(value)
        elif keyword == "linkpath":
            member.linkname = _text(value)
        elif keyword in ("size", "uid", "gid"):
            try:
                number = int(value)
            except ValueError:
                number = 0
            setattr(member, keyword, number)
        elif keyword == "mtime":
            # PAX times may have a fraction (POSIX pax, "mtime"); whole seconds are kept.
            try:
                member.mtime = int(float(value))
            except ValueError:
                member.mtime = 0
    # A copy: the global records change with later global headers.
    member.pax_headers = pax.copy()
