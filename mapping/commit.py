"""Read an OSTree commit into a ``Tree`` through libostree.

In: a repository path (bare, bare-user, bare-user-only or archive) and a ref or
checksum.  Out: the commit's entries, walked from its dirtree and dirmeta
variants loaded with the repo API; each file's content id is its OSTree content
checksum.  File objects are loaded once per checksum, in threads (PyGObject drops
the GIL around libostree calls).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from ._gvariant import VariantFormatError, decode_dirtree
from ._threads import map_in_threads
from .errors import MappingError
from .libostree import Gio, GLib, OSTree
from .tree import Entry, EntryType, Tree

_BLOCK = 1 << 20

_KIND_NAMES = {
    OSTree.ObjectType.COMMIT: "commit",
    OSTree.ObjectType.DIR_TREE: "dirtree",
    OSTree.ObjectType.DIR_META: "dirmeta",
}


@dataclass(frozen=True, slots=True)
class _FileMeta:
    mode: int
    uid: int
    gid: int
    size: int
    target: str | None
    xattrs: tuple[tuple[bytes, bytes], ...]
    rdev: int


def _xattr_pairs(variant: GLib.Variant | None) -> tuple[tuple[bytes, bytes], ...]:
    if variant is None or variant.n_children() == 0:
        return ()
    pairs = []
    for i in range(variant.n_children()):
        pair = variant.get_child_value(i)
        name = bytes(pair.get_child_value(0).get_data_as_bytes().get_data() or b"")
        value = bytes(pair.get_child_value(1).get_data_as_bytes().get_data() or b"")
        # Names are bytestrings ("ay") stored with their trailing NUL.
        pairs.append((name.rstrip(b"\0"), value))
    return tuple(sorted(pairs))


class _GioReader(io.RawIOBase):
    """A GInputStream as a Python binary file."""

    def __init__(self, stream: Gio.InputStream) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read_bytes(len(buffer), None).get_data() or b""
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close(None)
        super().close()


class CommitTree(Tree):
    """One commit of an OSTree repository."""

    def __init__(self, repo_path: str, rev: str, threads: int | None = None) -> None:
        self.repo_path = repo_path
        if not os.path.isdir(repo_path):
            raise MappingError(f"{repo_path}: no such OSTree repository; pass --repo the repo directory")
        self.repo = OSTree.Repo.new(Gio.File.new_for_path(repo_path))
        try:
            self.repo.open(None)
        except GLib.Error as e:
            raise MappingError(
                f"{repo_path}: not an OSTree repository ({e.message}); pass --repo the repo directory"
            ) from None
        try:
            _, self.checksum = self.repo.resolve_rev(rev, False)
            self.repo.load_commit(self.checksum)
        except GLib.Error as e:
            raise MappingError(
                f"{repo_path}: no ref or commit {rev!r} ({e.message}); "
                f"list refs with 'ostree refs --repo={repo_path}'"
            ) from None
        self.rev = rev
        commit = self._load_variant(OSTree.ObjectType.COMMIT, self.checksum)
        metadata: dict[str, Any] = commit.get_child_value(0).unpack()
        # The commit variant is (metadata, parent, related, subject, body, ...).
        self.subject: str = commit.get_child_value(3).get_string()
        timestamp = int(OSTree.commit_get_timestamp(commit))
        self._dirmeta: dict[str, tuple[int, int, int, tuple[tuple[bytes, bytes], ...]]] = {}
        records: list[tuple[str, str, str | None]] = []
        root_tree = OSTree.checksum_from_bytes_v(commit.get_child_value(6))
        root_meta = OSTree.checksum_from_bytes_v(commit.get_child_value(7))
        self._walk(root_tree, root_meta, records)
        # Loading a file object is mostly libostree time with the GIL released.
        unique = sorted({c for _, c, meta in records if meta is None})
        files = dict(map_in_threads(self._load_file, unique, threads))
        entries = [self._entry(path, csum, meta, files) for path, csum, meta in records]
        super().__init__(f"{repo_path}:{rev}", entries, metadata=metadata, timestamp=timestamp)

    def _load_variant(self, kind: OSTree.ObjectType, checksum: str) -> GLib.Variant:
        """Load a metadata object and check it against its checksum (libostree
        does not, and GVariant reads short data as default values)."""
        try:
            _, variant = self.repo.load_variant(kind, checksum)
        except GLib.Error as e:
            raise MappingError(self._corrupt(checksum, _KIND_NAMES[kind], e)) from None
        # A metadata object's checksum is the sha256 of its serialized variant.
        data = variant.get_data_as_bytes().get_data() or b""
        if hashlib.sha256(data).hexdigest() != checksum:
            raise MappingError(self._corrupt(checksum, _KIND_NAMES[kind], GLib.Error("checksum mismatch")))
        return variant

    def _corrupt(self, checksum: str, kind: str, error: GLib.Error) -> str:
        return (
            f"{self.repo_path}: {kind} object {checksum} of {self.rev} cannot be read "
            f"({error.message}); the repository is damaged, run 'ostree fsck --repo={self.repo_path}'"
        )

    def _walk(self, tree: str, meta: str, records: list[tuple[str, str, str | None]]) -> None:
        """Append (path, checksum, dirmeta checksum or None) in depth-first order,
        children by name (bytes), like the root directory reader."""
        stack: list[tuple[str, str, str | None]] = [("", tree, meta)]
        while stack:
            path, csum, dirmeta = stack.pop()
            records.append((path, csum, dirmeta))
            if dirmeta is None:
                continue
            data = self._load_variant(OSTree.ObjectType.DIR_TREE, csum).get_data_as_bytes().get_data()
            try:
                files, dirs = decode_dirtree(data or b"")
            except (VariantFormatError, UnicodeDecodeError) as e:
                raise MappingError(self._corrupt(csum, "dirtree", GLib.Error(str(e)))) from None
            prefix = f"{path}/" if path else ""
            children: list[tuple[bytes, str, str, str | None]] = [
                (name.encode(), prefix + name, checksum.hex(), None) for name, checksum in files
            ]
            children.extend(
                (name.encode(), prefix + name, tree_checksum.hex(), meta_checksum.hex())
                for name, tree_checksum, meta_checksum in dirs
            )
            children.sort(reverse=True)
            stack.extend(
                (child_path, child_csum, child_meta) for _, child_path, child_csum, child_meta in children
            )

    def _load_file(self, checksum: str) -> tuple[str, _FileMeta]:
        """Metadata of a file object: mode, owner, size, symlink target, xattrs."""
        try:
            _, stream, info, xattrs = self.repo.load_file(checksum, None)
        except GLib.Error as e:
            raise MappingError(self._corrupt(checksum, "file", e)) from None
        # The content stream is closed when its last reference goes.
        del stream
        mode = info.get_attribute_uint32("unix::mode")
        is_device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        return checksum, _FileMeta(
            mode,
            info.get_attribute_uint32("unix::uid"),
            info.get_attribute_uint32("unix::gid"),
            info.get_size() if stat.S_ISREG(mode) else 0,
            info.get_symlink_target() if stat.S_ISLNK(mode) else None,
            _xattr_pairs(xattrs),
            info.get_attribute_uint32("unix::rdev") if is_device else 0,
        )

    def _entry(self, path: str, checksum: str, meta: str | None, files: dict[str, _FileMeta]) -> Entry:
        if meta is not None:
            mode, uid, gid, xattrs = self._dir_meta(meta)
            return Entry(path, EntryType.DIR, stat.S_IMODE(mode), uid, gid, xattrs=xattrs)
        f = files[checksum]
        kind = EntryType.from_mode(f.mode)
        if kind is None:
            raise MappingError(self._corrupt(checksum, "file", GLib.Error(f"unknown file mode {f.mode:o}")))
        return Entry(
            path,
            kind,
            stat.S_IMODE(f.mode),
            f.uid,
            f.gid,
            f.size,
            f.xattrs,
            f.target,
            checksum,
            f.rdev,
            checksum if kind is EntryType.FILE else None,
            self,
        )

    def _dir_meta(self, checksum: str) -> tuple[int, int, int, tuple[tuple[bytes, bytes], ...]]:
        cached = self._dirmeta.get(checksum)
        if cached is None:
            variant = self._load_variant(OSTree.ObjectType.DIR_META, checksum)
            if variant.get_type_string() != "(uuua(ayay))":
                raise MappingError(self._corrupt(checksum, "dirmeta", GLib.Error("wrong variant type")))
            # dirmeta integers are stored big-endian (ostree's core format).
            uid, gid, mode = (
                int.from_bytes(struct.pack("=I", variant.get_child_value(i).get_uint32()), "big")
                for i in range(3)
            )
            cached = (mode, uid, gid, _xattr_pairs(variant.get_child_value(3)))
            self._dirmeta[checksum] = cached
        return cached

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """A small file's content, checked against its content checksum."""
        resolved = self.resolve(path)
        entry = None if resolved is None else self.get(resolved)
        if entry is None or entry.type is not EntryType.FILE or entry.content_id is None:
            return None
        try:
            _, stream, info, xattrs = self.repo.load_file(entry.content_id, None)
            data = b""
            while chunk := stream.read_bytes(_BLOCK, None).get_data():
                data += chunk
            stream.close(None)
            memory = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
            _, actual = OSTree.checksum_file_from_input(info, xattrs, memory, OSTree.ObjectType.FILE, None)
        except GLib.Error as e:
            raise MappingError(self._corrupt(entry.content_id, "file", e)) from None
        if bytes(actual).hex() != entry.content_id:
            raise MappingError(self._corrupt(entry.content_id, "file", GLib.Error("checksum mismatch")))
        return data if limit is None else data[:limit]

    def open(self, entry: Entry) -> BinaryIO:
        """Open a file object's content through libostree."""
        assert entry.content_id is not None
        try:
            _, stream, _, _ = self.repo.load_file(entry.content_id, None)
        except GLib.Error as e:
            raise MappingError(self._corrupt(entry.content_id, "file", e)) from None
        # A bare repo's object is a plain file: read its descriptor directly.
        get_fd = getattr(stream, "get_fd", None)
        if get_fd is not None:
            fd = os.dup(get_fd())
            stream.close(None)
            return os.fdopen(fd, "rb", buffering=_BLOCK)
        return io.BufferedReader(_GioReader(stream), buffer_size=_BLOCK)
