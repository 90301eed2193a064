"""Read tar headers from a stream, once, front to back.

In: the uncompressed bytes of a tar archive, as an iterator of chunks.  Out:
its entries (``TarMember``), each with where its data lies in the stream;
the data itself is passed to a sink as it goes by, never kept.

A layer means what Go's ``archive/tar`` says it means: containers/storage,
containerd, moby and umoci read layers with it.  So this reader accepts what
Go's ``Reader`` accepts, reads the same entries from it, and refuses what it
refuses (docs/tar-reading.md; the facts are from Go 1.19's
``archive/tar/{reader,strconv,format,common}.go``, the code is this
project's).  In short:

- formats: V7, ustar (its prefix), STAR, GNU (base-256 numbers, long names
  ``L``/``K``, old sparse ``S``), PAX extended headers ``x`` with the GNU
  sparse formats 0.0, 0.1 and 1.0.  A PAX global header ``g`` is an entry of
  its own; its records do not apply to later entries.
- a header block that is not zeros and has a bad checksum, a number field
  that is not a number, a PAX record that is malformed, holds a NUL where Go
  refuses one, or a value Go cannot parse, a negative size, a sparse map
  that is unsorted, overlapping, beyond the file's size or not the size of
  the stored data: ``TarFormatError``.
- a PAX header or GNU long name or link over 1 MiB (Go's
  ``maxSpecialFileSize``) is refused before it is read.
- the archive ends at two zero blocks (what follows is not read), at the
  end of the stream between entries, or inside the padding after an entry's
  data; a stream cut inside a header or data is refused.
- names are decoded as UTF-8 with surrogateescape, so encoding back gives
  the stored bytes.

Deliberately stricter than Go (memory stays bounded): a sparse map of more
than ``MAX_SPARSE_RUNS`` runs is refused.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import show

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# Go's maxSpecialFileSize (archive/tar/format.go): the cap on a PAX header's
# and a GNU long name's data.
MAX_SPECIAL = 1 << 20
# debchunk's own cap on a sparse map's runs (Go keeps any number): each run
# costs memory for as long as the tree is read.
MAX_SPARSE_RUNS = 1 << 20
_INT64 = 1 << 63

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
_REGULAR = frozenset((REGTYPE, AREGTYPE, CONTTYPE, GNU_SPARSE))
# Headers that extend the next one (a PAX global header is an entry of its own).
_EXTENSIONS = frozenset((PAX_EXTENDED, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK))
# Go's isHeaderOnlyType: entries whose size field claims no data.
_HEADER_ONLY = frozenset((LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE))
# PAX keywords whose value Go refuses to hold a NUL (validPAXRecord); every
# other keyword may hold one in its value, none in its name.
_NO_NUL_VALUES = frozenset((b"path", b"linkpath", b"uname", b"gname"))
_SPARSE_OFFSET = b"GNU.sparse.offset"
_SPARSE_NUMBYTES = b"GNU.sparse.numbytes"
_SPARSE_MAP = b"GNU.sparse.map"
# Go's strconv.ParseInt(s, 10, 64): a sign, then decimal digits only.
_DECIMAL = re.compile(rb"[+-]?[0-9]+")
_DIGITS = b"0123456789"
_OCTAL_DIGITS = b"01234567"
# The form every common writer gives mode, uid, gid, size and mtime (bytes
# 100-148): all digits, then one space or NUL.  What ``_numeric`` reads from
# such fields is their digits in octal, so they are parsed at once.
_PLAIN_NUMBERS = re.compile(rb"([0-7]{7})[ \0]([0-7]{7})[ \0]([0-7]{7})[ \0]([0-7]{11})[ \0]([0-7]{11})[ \0]")
_PLAIN_DEVICES = re.compile(rb"([0-7]{7})[ \0]([0-7]{7})[ \0]")
_NO_DEVICE = bytes(16)
# The PAX times Go parses (mergePAX), each named for a message.
_TIMES = {b"mtime": "PAX mtime", b"atime": "PAX atime", b"ctime": "PAX ctime"}
# Device numbers as GNU tar writes them for every entry: zeros.
_ZERO_DEVICES = b"0000000\x000000000\x00"
# An octal field with spaces and NULs around its digits only: ``_octal``
# reads the digits.
_PLAIN_OCTAL = re.compile(rb"[ \0]*([0-7]+)[ \0]*")
# A PAX time that is whole seconds that fit, and maybe a fraction: its value
# is its digits before the point (``_pax_time``).
_PLAIN_TIME = re.compile(rb"([0-9]{1,18})(?:\.[0-9]*)?")
_HIGH = bytes(range(0x80, 0x100))
# Header formats (Go's Block.getFormat), by their magic.
_V7, _USTAR, _STAR, _GNU = range(4)


class TarFormatError(Exception):
    """The archive is malformed (Go's ``ErrHeader`` and kin); the message
    says what is wrong."""


class TarEndsInside(Exception):
    """The stream ends inside an entry's data."""

    def __init__(self, member: TarMember) -> None:
        super().__init__(member.name)
        self.member = member


@dataclass(slots=True)
class TarMember:
    """One entry as Go's ``tar.Header`` gives it (the fields debchunk uses).

    ``size`` is the file's size (a sparse file's expanded one); ``stored``
    how many bytes of data the stream holds for it from ``offset_data``.  A
    sparse entry's ``sparse`` lists its data runs (offset, size) in the
    expanded file, stored back to back; the rest are holes.  ``pax_headers``
    are the records of the PAX header before it, as raw bytes."""

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
    stored: int = 0

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
        return self.stored


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _shown(raw: bytes) -> str:
    """Bytes from the archive, escaped and cut short, for a message."""
    return show(_text(raw[:40]))


def show_name(member: TarMember) -> str:
    """The entry's name, escaped for a message."""
    return show(member.name)


def _cstring(raw: bytes) -> bytes:
    """A NUL-terminated field (Go's parseString)."""
    end = raw.find(0)
    return raw if end < 0 else raw[:end]


def _octal(raw: bytes) -> int:
    """Go's parseOctal: spaces and NULs around are dropped, the text ends at
    a NUL, and what is left is octal digits or an error."""
    text = raw.strip(b" \0")
    if not text:
        return 0
    end = text.find(0)
    if end >= 0:
        text = text[:end]
    if text.translate(None, _OCTAL_DIGITS):
        raise TarFormatError(f"a number field is not octal: {_shown(text)}")
    return int(text, 8)


def _numeric(raw: bytes) -> int:
    """Go's parseNumeric: base-256 when the first byte's high bit is set
    (two's complement, its next bit the sign), else octal."""
    first = raw[0]
    if not first & 0x80:
        return _octal(raw)
    bits = 8 * len(raw)
    value = int.from_bytes(raw, "big")
    negative = bool(first & 0x40)
    if negative:
        value ^= (1 << bits) - 1
    value &= (1 << (bits - 1)) - 1
    if value >= _INT64:
        raise TarFormatError("a base-256 number field overflows 64 bits")
    return -value - 1 if negative else value


def _int64(raw: bytes, what: str) -> int:
    """Go's strconv.ParseInt(raw, 10, 64)."""
    if raw.isdigit() and len(raw) < 19:  # the common case: it fits
        return int(raw)
    if _DECIMAL.fullmatch(raw) is None:
        raise TarFormatError(f"{what} is not a decimal number: {_shown(raw)}")
    digits = raw.lstrip(b"+-").lstrip(b"0")
    # Leading zeros may be many (int() refuses over 4300 digits).
    value = int(digits[:20] or b"0") * (-1 if raw.startswith(b"-") else 1)
    if len(digits) > 19 or not -_INT64 <= value < _INT64:
        raise TarFormatError(f"{what} overflows 64 bits")
    return value


def _pax_time(raw: bytes, what: str) -> int:
    """Go's parsePAXTime, as whole seconds (``time.Time.Unix``: the floor).
    Below the int64 minimum it is clamped (Go wraps around)."""
    plain = _PLAIN_TIME.fullmatch(raw)
    if plain is not None:  # the common case: what every writer gives
        return int(plain[1])
    whole, _, fraction = raw.partition(b".")
    seconds = _int64(whole, what)
    if not fraction:
        return seconds
    if fraction.translate(None, _DIGITS):
        raise TarFormatError(f"{what} is not a decimal time: {_shown(raw)}")
    if whole.startswith(b"-") and fraction[:9].strip(b"0"):
        return max(seconds - 1, -_INT64)
    return seconds


def _byte_sum(block: bytes) -> int:
    """``sum(block)`` of a 512-byte block, four times faster: the low half
    of zlib's adler32 is one plus the sum of the bytes modulo 65521, and the
    bytes of half a block add up to at most 256 * 255 = 65280 (RFC 1950)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _checksum_ok(block: bytes) -> bool:
    """Go's getFormat checksum test: the octal field equals the sum of the
    block's bytes, unsigned or signed, the field itself counted as spaces."""
    field = block[148:156]
    plain = _PLAIN_OCTAL.fullmatch(field)
    if plain is not None:  # what _octal reads from it, at once
        stored = int(plain[1], 8)
    else:
        try:
            stored = _octal(field)
        except TarFormatError:
            return False
    unsigned = _byte_sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    rest = block[:148] + block[156:]
    high = len(rest) - len(rest.translate(None, _HIGH))
    return stored == unsigned - 256 * high


def _format(block: bytes) -> int:
    magic = block[257:263]
    if magic == b"ustar\0":
        return _STAR if block[508:512] == b"tar\0" else _USTAR
    if magic == b"ustar " and block[263:265] == b" \0":
        return _GNU
    return _V7


def _gnu_prefix(block: bytes) -> bytes:
    """A GNU header's name prefix: none, unless its atime or ctime field does
    not parse, when Go takes bytes 345-500 as a ustar prefix if they are
    ASCII (archives of Go before 1.8, golang.org/issues/12594)."""
    for at in (345, 357):
        if block[at]:
            try:
                _numeric(block[at : at + 12])
            except TarFormatError:
                prefix = _cstring(block[345:500])
                return prefix if prefix.isascii() else b""
    return b""


def _numbers(block: bytes) -> tuple[int, int, int, int, int]:
    """A header's mode, uid, gid, size and mtime."""
    plain = _PLAIN_NUMBERS.match(block, 100)
    if plain is not None:
        mode, uid, gid, size, mtime = plain.groups()
        return int(mode, 8), int(uid, 8), int(gid, 8), int(size, 8), int(mtime, 8)
    return (
        _numeric(block[100:108]),
        _numeric(block[108:116]),
        _numeric(block[116:124]),
        _numeric(block[124:136]),
        _numeric(block[136:148]),
    )


def _devices(block: bytes) -> tuple[int, int]:
    """A header's device major and minor numbers."""
    devices = block[329:345]
    if devices in (_NO_DEVICE, _ZERO_DEVICES):
        return 0, 0
    plain = _PLAIN_DEVICES.match(block, 329)
    if plain is not None:
        return int(plain[1], 8), int(plain[2], 8)
    return _numeric(block[329:337]), _numeric(block[337:345])


def _header(block: bytes) -> tuple[TarMember, bytes, int]:
    """One header block (Go's readHeader): the entry, its raw name and format."""
    if not _checksum_ok(block):
        raise TarFormatError("a header block has a bad checksum")
    kind = _format(block)
    end = block.find(0, 0, 100)
    name = block[: 100 if end < 0 else end]
    mode, uid, gid, size, mtime = _numbers(block)
    link = _text(_cstring(block[157:257])) if block[157] else ""
    member = TarMember("", block[156:157], mode, uid, gid, size, link, 0, 0, mtime)
    prefix = b""
    if kind != _V7:
        member.devmajor, member.devminor = _devices(block)
        if kind == _USTAR:
            prefix = _cstring(block[345:500]) if block[345] else b""
        elif kind == _STAR:
            prefix = _cstring(block[345:476])
            _numeric(block[476:488])
            _numeric(block[488:500])
        else:
            prefix = _gnu_prefix(block)
    if prefix:
        name = prefix + b"/" + name
    return member, name, kind


def _pax_records(buf: bytes) -> dict[bytes, bytes]:
    """PAX records ``"%d %s=%s\\n"`` as Go's parsePAX reads them: all of the
    data is records, Go's validPAXRecord holds, and GNU sparse 0.0's
    repeated offset/numbytes records become one ``GNU.sparse.map``."""
    records: dict[bytes, bytes] = {}
    runs: list[bytes] = []
    pos, end = 0, len(buf)
    while pos < end:
        space = buf.find(b" ", pos)
        if space < 0:
            raise TarFormatError("a PAX record has no length")
        length = _int64(buf[pos:space], "a PAX record's length")
        last = pos + length - 1
        if length < 5 or length > end - pos or last <= space or buf[last] != 0x0A:
            raise TarFormatError("a PAX record's length is wrong")
        key, equals, value = buf[space + 1 : last].partition(b"=")
        if not key or not equals:
            raise TarFormatError("a PAX record has no keyword")
        if 0 in (value if key in _NO_NUL_VALUES else key):
            raise TarFormatError(f"PAX record {_shown(key)} holds a NUL byte")
        if key in (_SPARSE_OFFSET, _SPARSE_NUMBYTES):
            expected = _SPARSE_OFFSET if len(runs) % 2 == 0 else _SPARSE_NUMBYTES
            if key != expected or b"," in value:
                raise TarFormatError("a GNU sparse 0.0 map is out of order")
            runs.append(value)
        else:
            records[key] = value
        pos = last + 1
    if runs:
        records[_SPARSE_MAP] = b",".join(runs)
    return records


def _merge(member: TarMember, name: bytes, records: dict[bytes, bytes]) -> bytes:
    """Go's mergePAX: the records that override header fields (empty values
    keep the header's); the entry's name as bytes."""
    for key, value in records.items():
        if not value:
            continue
        if key in _TIMES:
            seconds = _pax_time(value, _TIMES[key])
            if key == b"mtime":
                member.mtime = seconds
        elif key == b"path":
            name = value
        elif key == b"linkpath":
            member.linkname = _text(value)
        elif key == b"uid":
            member.uid = _int64(value, "PAX uid")
        elif key == b"gid":
            member.gid = _int64(value, "PAX gid")
        elif key == b"size":
            member.size = _int64(value, "PAX size")
    member.pax_headers = {_text(k): v for k, v in records.items()}
    return name


def _valid_runs(runs: list[tuple[int, int]], size: int) -> bool:
    """Go's validateSparseEntries: runs in order, apart, inside ``size``."""
    if size < 0:
        return False
    end = 0
    for offset, length in runs:
        if offset < 0 or length < 0 or offset + length >= _INT64 or offset + length > size or end > offset:
            return False
        end = offset + length
    return True


def _runs_of(numbers: list[bytes], what: str) -> list[tuple[int, int]]:
    values = [_int64(n, what) for n in numbers]
    return list(zip(values[::2], values[1::2], strict=True))


def _run_count(raw: bytes, what: str) -> int:
    count = _int64(raw, what)
    if count < 0 or count >= 1 << 62:
        raise TarFormatError(f"{what} is out of range")
    if count > MAX_SPARSE_RUNS:
        raise TarFormatError(f"a sparse map of {count} runs (debchunk reads at most {MAX_SPARSE_RUNS})")
    return count


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


class _MapTokens:
    """GNU sparse 1.0's map: decimal lines read block by block from the
    entry's data, as Go's readGNUSparseMap1x0 reads them (only whole blocks,
    no more than it takes to hold the lines wanted).  A line not yet ended
    is kept short without changing what it parses as, so memory stays small
    whatever the data holds."""

    def __init__(self, read_block: Callable[[], bytes]) -> None:
        self._read_block = read_block
        self._lines: list[bytes] = []
        self._partial = b""
        self.blocks = 0

    def take(self, n: int) -> list[bytes]:
        while len(self._lines) < n:
            block = self._read_block()
            self.blocks += 1
            *done, self._partial = (self._partial + block).split(b"\n")
            self._lines.extend(done)
            if len(self._partial) > 64:
                self._partial = _shortened(self._partial)
        taken, self._lines = self._lines[:n], self._lines[n:]
        return taken


def _shortened(token: bytes) -> bytes:
    """A decimal token's start, shorter, that ParseInt reads as it reads the
    whole: leading zeros dropped; a non-number or overflow kept as one."""
    sign = token[:1] if token[:1] in (b"+", b"-") else b""
    digits = token[len(sign) :]
    if digits.translate(None, _DIGITS):
        return b"x"
    digits = digits.lstrip(b"0") or b"0"
    return b"x" if len(digits) > 20 else sign + digits


class TarReader:
    """The entries of a tar stream, in order; see the module's docstring.

    Iterate for the entries; while one is current, ``data`` passes its
    stored bytes on (else they are skipped).  After the iteration, ``drain``
    reads what follows the end of the archive."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._stream = _Stream(chunks)
        self._current: TarMember | None = None
        self._data_done = True

    def __iter__(self) -> Iterator[TarMember]:
        stream = self._stream
        while True:
            current = self._current
            if current is not None:
                if not self._data_done:
                    self.data(None)
                pad = current.next_offset - stream.offset
                # A stream that ends in the padding ends the archive (Go's tryReadFull).
                if stream.pass_on(pad, None) < pad:
                    self._current = None
                    return
            member = self._next()
            self._current = member
            if member is None:
                return
            self._data_done = False
            yield member

    def data(self, sink: Callable[[memoryview], object] | None) -> None:
        """Pass the current entry's stored bytes to ``sink``;
        ``TarEndsInside`` when the stream ends first."""
        member = self._current
        assert member is not None and not self._data_done
        self._data_done = True
        if self._stream.pass_on(member.stored, sink) < member.stored:
            raise TarEndsInside(member)

    def drain(self) -> None:
        """Read the stream to its end, keeping nothing."""
        while self._stream.pass_on(1 << 20, None):
            pass

    # Headers.

    def _block(self) -> bytes | None:
        """The next header block; None at the end of the archive (Go's readHeader)."""
        stream = self._stream
        block = stream.read(BLOCK)
        if block == _ZERO_BLOCK:
            block = stream.read(BLOCK)
            if block == _ZERO_BLOCK or not block:
                return None
            if len(block) == BLOCK:
                raise TarFormatError("a zero block is followed by a header")
        if not block:
            return None
        if len(block) < BLOCK:
            raise TarFormatError("the stream ends inside a header block")
        return block

    def _special(self, size: int, what: str) -> bytes:
        """A PAX header's or GNU long name's data, at most ``MAX_SPECIAL``
        bytes (Go's readSpecialFile)."""
        if size > MAX_SPECIAL:
            raise TarFormatError(f"a {what} of {size} bytes (Go's archive/tar reads at most {MAX_SPECIAL})")
        data = self._stream.read(size)
        if len(data) < size:
            raise TarFormatError(f"the stream ends inside a {what}")
        return data

    def _padding(self, size: int) -> bool:
        """Skip the padding after ``size`` bytes of data: False when the
        stream ends in it (then the archive ends, as Go reads it)."""
        pad = -size % BLOCK
        return self._stream.pass_on(pad, None) == pad

    def _next(self) -> TarMember | None:
        """The next entry, its extension headers applied (Go's Reader.next);
        None at the end of the archive."""
        start = self._stream.offset
        records: dict[bytes, bytes] | None = None
        long_name = long_link = b""
        while True:
            block = self._block()
            if block is None:
                return None
            member, name, kind = _header(block)
            if member.type not in _HEADER_ONLY and member.size < 0:
                raise TarFormatError(f"a header claims a negative size ({member.size})")
            if member.type in _EXTENSIONS:
                pax = member.type in (PAX_EXTENDED, PAX_GLOBAL)
                data = self._special(member.size, "PAX header" if pax else "GNU long name")
                if member.type == PAX_GLOBAL:
                    return self._global(start, name, _pax_records(data))
                if pax:
                    records = _pax_records(data)
                elif member.type == GNU_LONGNAME:
                    long_name = _cstring(data)
                else:
                    long_link = _cstring(data)
                # Go parses the data first, and finds the end in its padding after.
                if not self._padding(member.size):
                    return None
                continue
            break
        if records is not None:
            name = _merge(member, name, records)
        if long_name:
            name = long_name
        if long_link:
            member.linkname = _text(long_link)
        if member.type == AREGTYPE:
            member.type = DIRTYPE if name.endswith(b"/") else REGTYPE
        member.name = _text(name)
        member.offset = start
        self._data(member, block, kind)
        return member

    def _global(self, start: int, name: bytes, records: dict[bytes, bytes]) -> TarMember:
        """A PAX global header, an entry of its own as Go returns it; its
        records apply to nothing else."""
        member = TarMember("", PAX_GLOBAL, 0, 0, 0, 0, "", 0, 0, offset=start)
        # Go ignores an error here; the entry is left without records.
        with contextlib.suppress(TarFormatError):
            name = _merge(member, name, records)
        member.name = _text(name)
        member.offset_data = self._stream.offset
        member.next_offset = member.offset_data + (-member.offset_data % BLOCK)
        return member

    def _data(self, member: TarMember, block: bytes, kind: int) -> None:
        """Where the entry's data is, its sparse map read and checked (Go's
        handleRegularFile and handleSparseFile)."""
        stream = self._stream
        header_only = member.type in _HEADER_ONLY
        if not header_only and member.size < 0:
            raise TarFormatError(f"a PAX size is negative ({member.size})")
        stored = 0 if header_only else member.size
        before = stream.offset
        if member.type == GNU_SPARSE:
            # Its extension blocks come before the data.
            runs: list[tuple[int, int]] | None = self._old_sparse(member, block, kind)
        else:
            # A 1.0 map is the start of the data.
            runs = self._pax_sparse(member, stored)
            stored -= stream.offset - before
        if runs is not None:
            if header_only or not _valid_runs(runs, member.size):
                raise TarFormatError(f"the sparse map of {show_name(member)} is not valid")
            if sum(n for _, n in runs) != stored:
                raise TarFormatError(f"the sparse map of {show_name(member)} does not match its stored data")
            member.sparse = runs
        member.offset_data = stream.offset
        member.stored = stored
        member.next_offset = member.offset_data + stored + (-stored % BLOCK)

    def _pax_sparse(self, member: TarMember, stored: int) -> list[tuple[int, int]] | None:
        """GNU sparse 0.0, 0.1 or 1.0 from the PAX records (Go's
        readGNUSparsePAXHeaders), or None.  A 1.0 map is read from the
        start of the data: ``offset_data`` is set to where it starts."""
        pax = member.pax_headers
        major, minor = pax.get("GNU.sparse.major", b""), pax.get("GNU.sparse.minor", b"")
        if major == b"0" and minor in (b"0", b"1"):
            v1 = False
        elif major == b"1" and minor == b"0":
            v1 = True
        elif major or minor or not pax.get("GNU.sparse.map"):
            return None
        else:
            v1 = False
        if pax.get("GNU.sparse.name"):
            member.name = _text(pax["GNU.sparse.name"])
        size = pax.get("GNU.sparse.size") or pax.get("GNU.sparse.realsize")
        if size:
            member.size = _int64(size, "GNU.sparse.size")
        if v1:
            return self._sparse_10(stored)
        count = _run_count(pax.get("GNU.sparse.numblocks", b""), "GNU.sparse.numblocks")
        numbers = pax.get("GNU.sparse.map", b"").split(b",")
        if numbers == [b""]:
            numbers = []
        if len(numbers) != 2 * count:
            raise TarFormatError("GNU.sparse.map does not hold GNU.sparse.numblocks runs")
        return _runs_of(numbers, "a GNU.sparse.map number")

    def _sparse_10(self, stored: int) -> list[tuple[int, int]]:
        """GNU sparse 1.0: decimal lines in whole blocks at the start of the data."""
        left = stored

        def read_block() -> bytes:
            nonlocal left
            block = self._stream.read(BLOCK) if left >= BLOCK else b""
            left -= BLOCK
            if len(block) < BLOCK:
                raise TarFormatError("a GNU sparse 1.0 map is cut short")
            return block

        tokens = _MapTokens(read_block)
        count = _run_count(tokens.take(1)[0], "a GNU sparse 1.0 map's count")
        return _runs_of(tokens.take(2 * count), "a GNU sparse 1.0 map number")

    def _old_sparse(self, member: TarMember, block: bytes, kind: int) -> list[tuple[int, int]]:
        """Old GNU sparse (Go's readOldGNUSparseMap): the expanded size, up
        to 4 runs in the header, 21 in each extension block after it; a run
        whose offset field starts with a NUL ends a block's list."""
        if kind != _GNU:
            raise TarFormatError("an old GNU sparse header is not in GNU format")
        member.size = _numeric(block[483:495])
        runs: list[tuple[int, int]] = []
        area, count, extended = block[386:482], 4, block[482]
        while True:
            for at in range(0, 24 * count, 24):
                if area[at] == 0:
                    break
                runs.append((_numeric(area[at : at + 12]), _numeric(area[at + 12 : at + 24])))
            if len(runs) > MAX_SPARSE_RUNS:
                raise TarFormatError(f"a sparse map of over {MAX_SPARSE_RUNS} runs (debchunk's limit)")
            if not extended:
                return runs
            more = self._stream.read(BLOCK)
            if len(more) < BLOCK:
                raise TarFormatError("the stream ends inside a GNU sparse header")
            area, count, extended = more[:504], 21, more[504]
