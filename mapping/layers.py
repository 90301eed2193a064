"""Read a container image's layers into a ``Tree``.

In: the image's layer blobs (gzip, zstd or plain tar), lowest first.  Out: the
flattened tree, with entries exactly as ``RootfsTree`` gives them for the same
tree unpacked on disk, so every ownership rule applies unchanged.

The layers are applied as the OCI image spec's layer.md says ("Applying
Changesets", "Whiteouts"), never extracted: each blob is read once, in one
pass.  A child process (``spooler``) hashes it (its digest checked at the
end), inflates it and writes the tar stream to a spool file under
``workdir``, checking the stream against the layer's diff_id; meanwhile
this process reads the tar headers from the spool as it grows (``tarread``)
and hashes each regular file's bytes as they go by.  File content is read
back from the spool.  Memory grows with the number of entries, not with
their size; disk use is at most the image's uncompressed size.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import os
import queue
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import zstandard

try:
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # Debian has no zlib-ng package: the standard library's zlib reads the same streams
    _inflate = zlib  # type: ignore[misc,assignment,unused-ignore]

from ._threads import map_in_threads
from .errors import MappingError, show, warn
from .space import Meter
from .spooler import spooled
from .tarread import (
    BLKTYPE,
    CHRTYPE,
    FIFOTYPE,
    PAX_GLOBAL,
    SYMTYPE,
    TarEndsInside,
    TarFormatError,
    TarMember,
    TarReader,
)
from .tree import MAX_SYMLINKS, Entry, EntryType, Tree

_BLOCK = 1 << 20
# zstd can expand a few bytes into a 128 KiB block; feeding it small input
# blocks keeps one call's output (held in memory) modest.
_ZSTD_INPUT_BLOCK = 1 << 16
_ZEROS = bytes(_BLOCK)
# gzip output in pieces of up to 1 MiB: small enough that hashing and
# writing a piece find it still in the CPU's cache (the spooling child's
# system time fell from 0.23-0.31 s to 0.17-0.21 s for a 356 MB tar; 4 MiB
# pieces missed it), large enough that handing pieces between its threads
# and reporting them to the parent stays cheap (512 KiB pieces cost the
# parent more than they saved).
_INFLATE_BLOCK = 1 << 20
# Inflated pieces the inflating thread may be ahead of the tar reader by.
_AHEAD = 8
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."
_DEFAULT_DIR_MODE = 0o755
# The most the holes of a layer's sparse files may add up to: a tree at most
# 1 GiB larger than the layer's tar (docs/tar-reading.md).
MAX_HOLES = 1 << 30
# The largest uid and gid a Linux system holds: uid_t is 32 bits and
# (uid_t)-1 means "unchanged" to chown(2).
MAX_ID = (1 << 32) - 2
# What mknod(2) takes: a 12-bit major and a 20-bit minor (the kernel's
# 32-bit dev_t, linux/kdev_t.h; glibc refuses larger with EOVERFLOW).
MAX_MAJOR, MAX_MINOR = (1 << 12) - 1, (1 << 20) - 1
_FIX_BLOB = "pull the image again (its blob store is damaged) or rebuild it"
_COMPRESSIONS = ("gzip", "zstd", "none")
DECOMPRESSION_ERRORS = (zlib.error, zstandard.ZstdError, cast(type[Exception], _inflate.error))


@dataclass(frozen=True)
class LayerArchive:
    """One layer blob: its file, its digest as stored (compressed), its
    compression ("gzip", "zstd" or "none") and, when the image's config names
    it, the digest of its uncompressed tar stream (``diff_id``), checked as
    the blob is read; so is its ``size`` in bytes, when the manifest gives it."""

    path: str
    digest: str
    compression: str
    diff_id: str | None = None
    size: int | None = None


@dataclass(eq=False, slots=True)
class _Meta:
    """What an inode holds; hardlinked paths share one."""

    type: EntryType
    mode: int
    uid: int
    gid: int
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    target: str | None = None
    rdev: int = 0
    size: int = 0
    layer: int = -1
    # Where a regular file's bytes are in its layer's spool: (start, end,
    # spool offset) in file coordinates, a hole when the offset is None.
    segments: tuple[tuple[int, int, int | None], ...] = ()
    content_id: str | None = None
    mtime: int = 0


@dataclass(eq=False, slots=True)
class _Node:
    """One path of the merged tree; ``layer`` is the last layer that declared it."""

    meta: _Meta
    layer: int
    children: dict[str, _Node] | None = None


def _blob_chunks(layer: LayerArchive) -> Generator[bytes, None, None]:
    """The tar stream of a layer blob (``_inflated``), checked against the
    layer's diff_id as it goes by (``_diff_checked``)."""
    return _diff_checked(layer, _inflated(layer))


def _inflated(layer: LayerArchive) -> Generator[bytes, None, None]:
    """The tar stream of a layer blob: the blob read once, hashed and
    inflated block by block; at the end, its digest, its size and that the
    compressed stream ends where it should are checked."""
    h, expected = _hasher(layer.digest, f"layer digest {layer.digest!r}", layer.path)
    if layer.compression not in _COMPRESSIONS:
        raise MappingError(
            f"unknown compression {layer.compression!r}",
            layer.digest,
            f"use one of {', '.join(_COMPRESSIONS)}",
        )
    try:
        blob = open(layer.path, "rb")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise MappingError(f"cannot read layer blob: {e.strerror}", layer.path, _FIX_BLOB) from None
    read = 0
    with blob, _HashThread(h) as hashing:
        inflate = Inflater(layer.compression)
        try:
            while block := blob.read(_BLOCK):
                read += len(block)
                hashing.update(block)
                yield from inflate.feed(block)
            rest = inflate.finish()
        except DECOMPRESSION_ERRORS as e:
            raise MappingError(
                f"layer {layer.digest}: its {layer.compression} stream is corrupt ({e})",
                layer.path,
                _FIX_BLOB,
            ) from None
        except OSError as e:
            raise MappingError(f"cannot read layer blob: {e.strerror}", layer.path, _FIX_BLOB) from None
        if rest is None:
            raise MappingError(
                f"layer {layer.digest}: its {layer.compression} stream is truncated", layer.path, _FIX_BLOB
            )
        yield rest
    if h.hexdigest() != expected:
        raise MappingError(
            f"layer {layer.digest}: the blob's digest is {h.name}:{h.hexdigest()}", layer.path, _FIX_BLOB
        )
    if layer.size is not None and read != layer.size:
        raise MappingError(
            f"layer {layer.digest}: the blob has {read} bytes, and the manifest says {layer.size}",
            layer.path,
            "the image is damaged or was altered; pull it again from a source you trust",
        )


class _HashThread:
    """A hash updated in a thread of its own, with the blocks given to
    ``update`` in turn, so that hashing a blob and inflating it overlap;
    ``h`` holds them all once the block (``with``) ends."""

    def __init__(self, h: Any) -> None:
        self._h = h
        self._pipe: queue.Queue[bytes | None] = queue.Queue(_AHEAD)
        self._thread = threading.Thread(target=self._run, name="hash", daemon=True)

    def __enter__(self) -> _HashThread:
        self._thread.start()
        return self

    def update(self, block: bytes) -> None:
        self._pipe.put(block)

    def _run(self) -> None:
        while (block := self._pipe.get()) is not None:
            self._h.update(block)

    def __exit__(self, *exc: object) -> None:
        self._pipe.put(None)
        self._thread.join()


def _diff_checked(layer: LayerArchive, stream: Iterator[bytes]) -> Generator[bytes, None, None]:
    """``stream``, a layer's tar stream, hashed as it goes by and, at its end,
    checked against the layer's diff_id (when it has one)."""
    if layer.diff_id is None:
        yield from stream
        return
    diff, _ = _hasher(layer.diff_id, f"layer {layer.digest}: diff_id {layer.diff_id!r}", layer.path)
    for piece in stream:
        diff.update(piece)
        yield piece
    if f"{diff.name}:{diff.hexdigest()}" != layer.diff_id:
        raise MappingError(
            f"layer {layer.digest}: its uncompressed stream is {diff.name}:{diff.hexdigest()}, "
            f"and the image's config says {layer.diff_id}",
            layer.path,
            "the image is damaged or was altered; pull it again from a source you trust",
        )


def verify_layer(layer: LayerArchive) -> None:
    """Read a layer blob through once, checking its digest, its size and its
    uncompressed stream against its diff_id; a ``MappingError`` names what
    does not hold.  Nothing is kept."""
    deque(_blob_chunks(layer), maxlen=0)


def _hasher(digest: str, what: str, where: str) -> tuple[Any, str]:
    """A new hash of ``digest``'s algorithm and the hex it must end as; a
    digest that is not sha256 or sha512 is a ``MappingError`` (``what``)."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hexdigest:
        raise MappingError(f"{what} is not a sha256 or sha512 digest", where, "pull the image again")
    return hashlib.new(algorithm), hexdigest


class _Spool:
    """A layer's tar stream on disk: the compressed blob is hashed and
    inflated into it in one pass, the space it takes metered (``space``).
    A spool that cannot be filled is removed."""

    def __init__(self, layer: LayerArchive, path: str) -> None:
        self.layer = layer
        self.path = path

    def fill(self) -> Generator[bytes, None, None]:
        """Inflate the blob into the spool, yielding the tar stream as it is
        written (``_blob_chunks``); stops with a ``MappingError`` before the
        disk is full or past the run's budget (``space.Meter``)."""
        meter = Meter(self.path, f"spooling layer {self.layer.digest}")
        try:
            # Truncated only when not empty (``spooled`` has just made it): on
            # ext4, truncating a file marks it for auto_da_alloc, and closing
            # it then starts writing the whole spool to disk (0.15 s of CPU
            # and 356 MB of writes for a 214 MB layer), though it is removed
            # before it would ever have been written.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            out = os.fdopen(fd, "wb")
            if os.fstat(fd).st_size:
                out.truncate(0)
        except OSError as e:
            raise self._error(e, meter) from None
        try:
            with out:
                # Inflating in a thread of its own, hashing and writing in this one.
                for data in _diff_checked(self.layer, _ahead(_inflated(self.layer))):
                    meter.wrote(len(data))
                    try:
                        out.write(data)
                        # Read back by another process as it is written (``spooler``).
                        out.flush()
                    except OSError as e:
                        raise self._error(e, meter) from None
                    yield data
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise

    def _error(self, e: OSError, meter: Meter) -> MappingError:
        return MappingError(
            f"cannot spool layer {self.layer.digest}: {e.strerror}",
            self.path,
            meter.account.limits.hint,
        )


def _read_members(
    reader: TarReader, layer: LayerArchive, hashed: Callable[[TarMember], bool]
) -> Iterator[tuple[TarMember, str | None]]:
    """The entries of a layer's tar (``reader``), read as Go's archive/tar
    reads them, each regular file that ``hashed`` accepts with the sha256 of
    its content (a sparse file's holes read as zeros); an entry is given
    once its data has gone by, and the stream is read to its end.  PAX
    global headers are left out: containerd and moby ignore them too.  A
    malformed tar is a ``MappingError`` naming the entry before the fault;
    but a damaged blob (digest, compression) is the fault to report: on any
    ``MappingError`` the caller reads the stream to its end
    (``TarReader.drain``), where that is found, before saying anything else."""
    digest = layer.digest
    last: TarMember | None = None
    holes = 0
    try:
        for member in reader:
            content_id = None
            if member.type == PAX_GLOBAL:
                continue
            if member.isreg():
                holes = _add_holes(holes, member, layer)
                if hashed(member):
                    content_id = _content_hash(reader, member)
            if member.stored and content_id is None:
                reader.data(None)
            yield member, content_id
            last = member
        # Go reads nothing after the end of the archive; the digests cover it.
        reader.drain()
    except TarEndsInside as e:
        raise MappingError(
            f"layer {digest}: its tar ends inside {show(e.member.name)}", layer.path, _FIX_BLOB
        ) from None
    except TarFormatError as e:
        raise MappingError(
            f"layer {digest}: its tar is corrupt after "
            f"{'the start of the archive' if last is None else show(last.name)} ({e})",
            layer.path,
            _FIX_BLOB,
        ) from None


def _content_hash(reader: TarReader, member: TarMember) -> str:
    """The sha256 of the current regular file's content, holes read as zeros."""
    h = hashlib.sha256()
    if member.sparse is None:
        reader.data(h.update)
    else:
        expanded = _Expanded(member, h)
        reader.data(expanded.update)
        expanded.finish()
    return h.hexdigest()


def _add_holes(holes: int, member: TarMember, layer: LayerArchive) -> int:
    """The holes of a layer's sparse files so far, ``member``'s added;
    refused past ``MAX_HOLES``: debchunk writes files whole, so holes become
    bytes to hash, store and ship (Go's reader has no such limit)."""
    if member.sparse is None:
        return holes
    holes += member.size - member.stored
    if holes > MAX_HOLES:
        raise MappingError(
            f"layer {layer.digest}: sparse file {show(member.name)} brings the layer's holes to "
            f"{holes} bytes (debchunk writes files whole and takes at most {MAX_HOLES} per layer)",
            layer.path,
            "rebuild the image without the large sparse file",
        )
    return holes


class _Expanded:
    """A sparse file's stored runs fed to a hash as the file reads: zeros
    for the holes before each run and, at ``finish``, after the last."""

    def __init__(self, member: TarMember, h: Any) -> None:
        self._runs = iter([(offset, size) for offset, size in member.sparse or () if size])
        self._size = member.size
        self._h = h
        self._pos = 0  # in the expanded file
        self._left = 0  # of the current run

    def _zeros(self, until: int) -> None:
        while self._pos < until:
            n = min(until - self._pos, _BLOCK)
            self._h.update(_ZEROS[:n])
            self._pos += n

    def update(self, view: memoryview) -> None:
        """The next stored bytes."""
        while view.nbytes:
            if not self._left:
                run = next(self._runs, None)
                if run is None:
                    return  # more stored bytes than runs: tarread refuses such a map
                self._zeros(run[0])
                self._left = run[1]
            take = min(self._left, view.nbytes)
            self._h.update(view[:take])
            self._pos += take
            self._left -= take
            view = view[take:]

    def finish(self) -> None:
        """The hole after the last run."""
        self._zeros(self._size)


def _contiguous(member: TarMember) -> bool:
    return member.sparse is None


def _ahead(chunks: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """``chunks``, computed in a thread up to ``_AHEAD`` chunks ahead: inflating,
    writing and hashing release the GIL, so the two threads overlap.  An
    error in the thread is raised here, where it reaches the caller."""
    pipe: queue.Queue[bytes | BaseException | None] = queue.Queue(_AHEAD)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                pipe.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
        except BaseException as e:  # handed over to the reading thread
            put(e)
            return
        finally:
            chunks.close()
        put(None)

    thread = threading.Thread(target=run, name="inflate", daemon=True)
    thread.start()
    try:
        while (item := pipe.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class Inflater:
    """Decompress gzip (any number of members) or zstd (any number of frames)
    block by block, and say whether the stream ended cleanly: the one
    decompressor of layer blobs (``DECOMPRESSION_ERRORS`` are its faults)."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        # zlib's and zstandard's decompression objects; neither module
        # exports the type.
        self._d: Any = None

    def _new(self) -> Any:
        if self.compression == "gzip":
            return _inflate.decompressobj(16 + _inflate.MAX_WBITS)
        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, block: bytes) -> Iterator[bytes]:
        """The uncompressed bytes ``block`` gives, in bounded pieces."""
        if self.compression == "none":
            yield block
            return
        step = _ZSTD_INPUT_BLOCK if self.compression == "zstd" else len(block)
        for i in range(0, len(block), step):
            pending = block[i : i + step]
            while pending:
                if self._d is None or self._d.eof:
                    self._d = self._new()
                d = self._d
                if self.compression == "zstd":
                    yield d.decompress(pending)
                    pending = d.unused_data if d.eof else b""
                else:
                    # max_length bounds what one call returns (gzip expands up to 1032x).
                    yield d.decompress(pending, _INFLATE_BLOCK)
                    pending = d.unconsumed_tail or (d.unused_data if d.eof else b"")

    def finish(self) -> bytes | None:
        """What is left to output, or None when the stream did not end at the
        end of a gzip member or zstd frame (it is truncated)."""
        if self.compression == "none":
            return b""
        if self._d is None:
            return None
        rest: bytes = self._d.flush()
        return rest if self._d.eof else None


@dataclass(frozen=True, slots=True)
class LayerMember:
    """One member of a layer's tar as streamed: its name, whether it is a
    directory or a regular file, its size (of a regular file, its content's)
    and, when asked for, the sha256 of a regular file's content."""

    name: str
    is_dir: bool
    is_file: bool
    size: int
    sha256: str | None


class LayerStream:
    """One layer blob read once, front to back, never unpacked, by the reader
    ``LayersTree`` applies layers with.  Iterate for its members
    (``LayerMember``); when the iteration ends, the blob has been checked
    against its digest and ``tar_size`` is the size of its tar stream.
    ``want``, given a regular file's size, says whether to hash its content.
    A tar that ends inside its last member's padding, or without its
    end-of-archive blocks, reads to its end, as Go's archive/tar reads it
    (umoci 0.4 writes such layers).  Faults are ``MappingError``s naming the layer."""

    def __init__(self, layer: LayerArchive, want: Callable[[int], bool] | None = None) -> None:
        self.layer = layer
        self.tar_size = 0
        self._want = want

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.tar_size += len(chunk)
            yield chunk

    def _hashed(self, member: TarMember) -> bool:
        return self._want is not None and self._want(member.size)

    def __iter__(self) -> Iterator[LayerMember]:
        chunks = _ahead(_blob_chunks(self.layer))
        reader = TarReader(self._counted(chunks))
        try:
            for member, sha256 in _read_members(reader, self.layer, self._hashed):
                yield LayerMember(member.name, member.isdir(), member.isreg(), member.size, sha256)
        except MappingError:
            reader.drain()
            raise
        finally:
            chunks.close()


class LayersTree(Tree):
    """The tree an image's layers make, applied in order (OCI layer.md);
    content read back from spool files under ``workdir``."""

    def __init__(
        self, description: str, layers: Sequence[LayerArchive], workdir: str, threads: int | None = None
    ) -> None:
        os.makedirs(workdir, exist_ok=True)
        self._spools = [
            _Spool(layer, os.path.join(workdir, f"layer-{i}.tar")) for i, layer in enumerate(layers)
        ]
        self._root = _Node(_Meta(EntryType.DIR, _DEFAULT_DIR_MODE, 0, 0), -1, {})
        for index, spool in enumerate(self._spools):
            self._apply(index, spool)
        entries, metas = self._flatten()
        # Sparse files were not hashed on the way: their holes are not in the stream.
        unhashed = [meta for meta in metas if meta.content_id is None]
        for meta, content_id in zip(unhashed, map_in_threads(self._sha256, unhashed, threads), strict=True):
            meta.content_id = content_id
        self._content: dict[str, _Meta] = {}
        for meta in metas:
            assert meta.content_id is not None
            self._content.setdefault(meta.content_id, meta)
        super().__init__(description, [e.build(self) for e in entries])

    # Applying one layer.

    def _apply(self, index: int, spool: _Spool) -> None:
        chunks = spooled(spool.fill, spool.path, f"spooling layer {spool.layer.digest}")
        # Read as Go's archive/tar reads it: a stream that ends in its last
        # padding too, as umoci 0.4.7 writes it for `umoci insert` of one
        # file or a whiteout.
        reader = TarReader(chunks)
        try:
            # Sparse files are hashed later, from the spool (their holes are not in the stream).
            for member, content_id in _read_members(reader, spool.layer, _contiguous):
                self._member(index, spool.layer.digest, member, content_id)
        except MappingError:
            reader.drain()
            raise
        finally:
            chunks.close()

    def _member(self, index: int, digest: str, member: TarMember, content_id: str | None) -> None:
        parts = _parts(member.name, digest)
        if not parts:
            if member.isdir():
                self._root.meta = _dir_meta(member, digest)
                self._root.layer = index
                return
            raise MappingError(
                f"layer {digest}: entry {show(member.name)} replaces the root directory with a non-directory"
            )
        *dirs, name = parts
        if name.startswith(_WHITEOUT):
            self._whiteout(index, digest, dirs, name, member.name)
            return
        parent = self._directory(dirs, index, digest, member.name, create=True)
        assert parent is not None and parent.children is not None
        existing = parent.children.get(name)
        if member.isdir():
            if existing is not None and existing.children is not None:
                # A directory declared again keeps its children, takes the new metadata.
                existing.meta = _dir_meta(member, digest)
                existing.layer = index
            else:
                parent.children[name] = _Node(_dir_meta(member, digest), index, {})
            return
        if member.islnk():
            parent.children[name] = _Node(self._link_target(index, digest, member), index)
            return
        meta = _meta(index, member, content_id, digest)
        if meta is None:
            warn(f"layer {digest}: {show(member.name)}: entry type {member.type!r} cannot be stored; skipped")
            return
        parent.children[name] = _Node(meta, index)

    def _whiteout(self, index: int, digest: str, dirs: list[str], name: str, entry: str) -> None:
        if name == _OPAQUE:
            parent = self._directory(dirs, index, digest, entry, create=True)
            assert parent is not None
            _hide_lower(parent, index)
            return
        if name.startswith(_OPAQUE[: len(_WHITEOUT) * 2]):
            warn(f"layer {digest}: {show(entry)}: unknown whiteout kind; ignored")
            return
        parent = self._directory(dirs, index, digest, entry, create=False)
        hidden = name[len(_WHITEOUT) :]
        node = None if parent is None or parent.children is None else parent.children.get(hidden)
        if node is None:
            warn(
                f"layer {digest}: whiteout {show(entry)} hides nothing (no such path in the lower layers); "
                "ignored"
            )
            return
        # Whiteouts apply to lower layers only (layer.md, "Whiteouts").
        if node.layer < index:
            assert parent is not None and parent.children is not None
            del parent.children[hidden]

    def _link_target(self, index: int, digest: str, member: TarMember) -> _Meta:
        parts = _parts(member.linkname, digest)
        parent = self._directory(parts[:-1], index, digest, member.name, create=False) if parts else None
        node = None if parent is None or parent.children is None else parent.children.get(parts[-1])
        if node is None:
            raise MappingError(
                f"layer {digest}: hardlink {show(member.name)} -> {show(member.linkname)}: "
                "its target is not in this layer or a lower one",
                hint="rebuild the image; its layer is malformed",
            )
        if node.children is not None:
            raise MappingError(
                f"layer {digest}: hardlink {show(member.name)} -> {show(member.linkname)}: "
                "its target is a directory",
                hint="rebuild the image; its layer is malformed",
            )
        return node.meta

    def _directory(self, parts: list[str], index: int, digest: str, entry: str, create: bool) -> _Node | None:
        """The directory at ``parts``, symlinks followed inside the tree as a
        runtime unpacking the layer does; missing directories are made (with
        default metadata) when ``create``, else None is returned."""
        chain = [self._root]
        pending = list(reversed(parts))
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(chain) > 1:
                    chain.pop()
                continue
            children = chain[-1].children
            assert children is not None
            node = children.get(part)
            if node is None:
                if not create:
                    return None
                node = children[part] = _Node(_Meta(EntryType.DIR, _DEFAULT_DIR_MODE, 0, 0), index, {})
            if node.meta.type is EntryType.SYMLINK:
                hops += 1
                target = node.meta.target or ""
                if hops > MAX_SYMLINKS:
                    raise MappingError(
                        f"layer {digest}: {show(entry)}: too many levels of symlinks in its directory"
                    )
                if target.startswith("/"):
                    del chain[1:]
                pending.extend(reversed(target.split("/")))
                continue
            if node.children is None and node.layer < index and create:
                # The layer holds a path below what a lower layer made a
                # non-directory: this layer made it a directory.
                node = children[part] = _Node(_Meta(EntryType.DIR, _DEFAULT_DIR_MODE, 0, 0), index, {})
            if node.children is None:
                raise MappingError(
                    f"layer {digest}: {show(entry)}: a parent of it is not a directory",
                    hint="rebuild the image; its layer is malformed",
                )
            chain.append(node)
        return chain[-1]

    # The merged tree.

    def _flatten(self) -> tuple[list[_Pending], list[_Meta]]:
        """The entries, depth first with children sorted by the bytes of their
        names (as ``RootfsTree``), and the inodes of regular files to hash."""
        links: Counter[int] = Counter()
        order: list[tuple[str, _Node]] = []
        stack: list[tuple[str, _Node]] = [("", self._root)]
        while stack:
            path, node = stack.pop()
            order.append((path, node))
            if node.meta.type is EntryType.FILE:
                links[id(node.meta)] += 1
            if node.children:
                prefix = f"{path}/" if path else ""
                names = sorted(
                    node.children, key=lambda n: n.encode("utf-8", "surrogateescape"), reverse=True
                )
                stack.extend((prefix + n, node.children[n]) for n in names)
        entries: list[_Pending] = []
        metas: list[_Meta] = []
        seen: set[int] = set()
        for path, node in order:
            meta = node.meta
            key = None
            if meta.type is EntryType.FILE:
                if id(meta) not in seen:
                    seen.add(id(meta))
                    metas.append(meta)
                if links[id(meta)] > 1:
                    key = f"{meta.layer}:{id(meta):x}"
            entries.append(_Pending(path, meta, key))
        return entries, metas

    def _sha256(self, meta: _Meta) -> str:
        h = hashlib.sha256()
        with self._reader(meta) as f:
            while block := f.read(_BLOCK):
                h.update(block)
        return h.hexdigest()

    def _reader(self, meta: _Meta) -> BinaryIO:
        spool = self._spools[meta.layer].path
        try:
            return io.BufferedReader(_Content(spool, meta.size, meta.segments))
        except OSError as e:
            raise MappingError(
                f"cannot read spooled layer: {e.strerror}",
                spool,
                "keep the work directory until the image is written",
            ) from None

    def open(self, entry: Entry) -> BinaryIO:
        """Open a regular file's content, read back from its layer's spool."""
        meta = self._content.get(entry.content_id or "")
        if meta is None:
            raise MappingError(f"{show(entry.path)}: not a regular file of {self.description}")
        return self._reader(meta)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An entry whose content id is known once its layer's files are hashed."""

    path: str
    meta: _Meta
    hardlink: str | None

    def build(self, tree: LayersTree) -> Entry:
        m = self.meta
        is_file = m.type is EntryType.FILE
        return Entry(
            self.path,
            m.type,
            m.mode,
            m.uid,
            m.gid,
            m.size if is_file else 0,
            m.xattrs,
            m.target,
            m.content_id,
            m.rdev,
            self.hardlink,
            tree if is_file else None,
            m.mtime,
        )


class _Content(io.RawIOBase):
    """A regular file's bytes in a spool: data segments read with pread,
    holes (sparse files) read as zeros."""

    def __init__(self, spool: str, size: int, segments: tuple[tuple[int, int, int | None], ...]) -> None:
        super().__init__()
        self._fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
        self._size = size
        self._segments = segments
        self._starts = [s[0] for s in segments]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._size or not len(buffer):
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        start, end, offset = self._segments[i]
        n = min(len(buffer), end - self._pos)
        if offset is None:
            buffer[:n] = _ZEROS[:n] if n <= _BLOCK else bytes(n)
        # Read into the caller's buffer: one copy (a BufferedReader gives
        # reads longer than its own buffer to readinto whole).  A view: the
        # buffer may be a bytearray, whose slice is a copy.
        elif os.preadv(self._fd, [memoryview(buffer)[:n]], offset + self._pos - start) < n:
            raise OSError(f"spool {self._fd} ends early")
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _parts(name: str, digest: str) -> list[str]:
    """A member name's components, normalised; climbing out of the root or an
    absolute name is an error (it would write outside the tree)."""
    if name.startswith("/"):
        raise MappingError(
            f"layer {digest}: entry {show(name)} has an absolute path",
            hint="rebuild the image; a layer's paths are relative to its root",
        )
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise MappingError(
                    f"layer {digest}: entry {show(name)} climbs out of the root with ..",
                    hint="rebuild the image; a layer's paths must stay inside its root",
                )
            parts.pop()
            continue
        parts.append(part)
    return parts


def _xattrs(member: TarMember) -> tuple[tuple[bytes, bytes], ...]:
    """PAX ``SCHILY.xattr.NAME`` records as (name, value) bytes, sorted.
    Values are the stored bytes; keywords were decoded with surrogateescape,
    so encoding back gives the stored bytes too."""
    pairs = [
        (key[len(_XATTR) :].encode("utf-8", "surrogateescape"), value)
        for key, value in member.pax_headers.items()
        if key.startswith(_XATTR)
    ]
    return tuple(sorted(pairs))


def _owner(member: TarMember, digest: str) -> tuple[int, int]:
    """The uid and gid of an entry that becomes an inode: refused, as bad
    input, when a Linux system cannot hold them (Go's reader takes any
    int64; debchunk is stricter here, docs/tar-reading.md)."""
    for what, value in (("uid", member.uid), ("gid", member.gid)):
        if not 0 <= value <= MAX_ID:
            raise MappingError(
                f"layer {digest}: entry {show(member.name)} has {what} {value}, "
                f"outside what Linux holds (0 to {MAX_ID})",
                hint="rebuild the image with owners Linux can hold",
            )
    return member.uid, member.gid


def _dir_meta(member: TarMember, digest: str) -> _Meta:
    uid, gid = _owner(member, digest)
    return _Meta(EntryType.DIR, member.mode & 0o7777, uid, gid, _xattrs(member), mtime=member.mtime)


_TYPE_OF_MEMBER = {
    SYMTYPE: EntryType.SYMLINK,
    CHRTYPE: EntryType.CHAR,
    BLKTYPE: EntryType.BLOCK,
    FIFOTYPE: EntryType.FIFO,
}


def _rdev(member: TarMember, digest: str) -> int:
    """A device's number, refused when mknod(2) cannot make it."""
    if not (0 <= member.devmajor <= MAX_MAJOR and 0 <= member.devminor <= MAX_MINOR):
        raise MappingError(
            f"layer {digest}: device {show(member.name)} is {member.devmajor}:{member.devminor}, "
            f"outside what Linux makes (majors 0 to {MAX_MAJOR}, minors 0 to {MAX_MINOR})",
            hint="rebuild the image without that device node",
        )
    return os.makedev(member.devmajor, member.devminor)


def _meta(index: int, member: TarMember, content_id: str | None, digest: str) -> _Meta | None:
    """An inode for a regular file, symlink, device or fifo member; None for
    a type debchunk does not store."""
    kind = EntryType.FILE if member.isreg() else _TYPE_OF_MEMBER.get(member.type)
    if kind is None:
        return None
    uid, gid = _owner(member, digest)
    mode, xattrs = member.mode & 0o7777, _xattrs(member)
    if kind is EntryType.FILE:
        return _Meta(
            kind,
            mode,
            uid,
            gid,
            xattrs,
            size=member.size,
            layer=index,
            segments=_segments(member),
            content_id=content_id,
            mtime=member.mtime,
        )
    is_device = kind in (EntryType.CHAR, EntryType.BLOCK)
    return _Meta(
        kind,
        mode,
        uid,
        gid,
        xattrs,
        target=member.linkname if kind is EntryType.SYMLINK else None,
        rdev=_rdev(member, digest) if is_device else 0,
        layer=index,
        mtime=member.mtime,
    )


def _segments(member: TarMember) -> tuple[tuple[int, int, int | None], ...]:
    """Where a regular file's bytes are in the tar: one run for a plain file;
    for a sparse one, its data runs stored back to back from ``offset_data``
    with holes between them (as Go's sparse reader reads them)."""
    sparse = member.sparse
    if sparse is None:
        return ((0, member.size, member.offset_data),) if member.size else ()
    segments: list[tuple[int, int, int | None]] = []
    stored, last = member.offset_data, 0
    for offset, size in sparse:
        if offset > last:
            segments.append((last, offset, None))
        if size:
            segments.append((offset, offset + size, stored))
        stored += size
        last = max(last, offset + size)
    if last < member.size:
        segments.append((last, member.size, None))
    return tuple(segments)


def _hide_lower(directory: _Node, index: int) -> None:
    """An opaque whiteout: drop every child of ``directory`` that lower layers
    made, keeping what this layer added (whatever its order in the tar), as
    containerd's unpacker does."""
    children = directory.children
    assert children is not None
    for name in list(children):
        child = children[name]
        if child.layer < index:
            del children[name]
        elif child.children is not None:
            _hide_lower(child, index)
