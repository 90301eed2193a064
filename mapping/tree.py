"""What a tree holds: entries, and path resolution that never leaves the tree.

In: a reader (root directory or OSTree commit) fills a ``Tree`` with ``Entry``
values in depth-first order, children sorted by name, and with what an OSTree
commit says about itself (its metadata and timestamp).  Out: lookups by path,
symlink resolution confined to the tree (``/`` and ``..`` stop at its root, as in
a chroot), and ``open()`` of regular files' content.
"""

from __future__ import annotations

import enum
import posixpath
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from .errors import MappingError, show, warn

# Linux's limit on symlinks followed while resolving one path (path_resolution(7)).
MAX_SYMLINKS = 40


class EntryType(enum.Enum):
    """The kinds of filesystem object a tree can hold."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"

    @classmethod
    def from_mode(cls, mode: int) -> EntryType | None:
        """The type for an ``st_mode``, or None for sockets and unknown types."""
        return _TYPE_OF_FMT.get(stat.S_IFMT(mode))


_TYPE_OF_FMT = {
    stat.S_IFREG: EntryType.FILE,
    stat.S_IFDIR: EntryType.DIR,
    stat.S_IFLNK: EntryType.SYMLINK,
    stat.S_IFCHR: EntryType.CHAR,
    stat.S_IFBLK: EntryType.BLOCK,
    stat.S_IFIFO: EntryType.FIFO,
}


class ContentSource(Protocol):
    """Something that can open an entry's content."""

    def open(self, entry: Entry) -> BinaryIO: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One object in a tree.

    ``path`` is relative to the tree root ("" is the root itself), decoded with
    ``surrogateescape`` so non-UTF-8 names survive.  ``mode`` holds the permission
    bits including setuid/setgid/sticky.  ``content_id`` is the OSTree content
    checksum (commit input) or the sha256 of the content (regular files of a root
    directory).  Entries with the same ``hardlink`` key are one inode.
    ``mtime`` is the modification time in whole seconds, 0 where the origin
    keeps none (OSTree commits hold every mtime as 0).
    """

    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    target: str | None = None
    content_id: str | None = None
    rdev: int = 0
    hardlink: str | None = None
    source: ContentSource | None = field(default=None, compare=False, repr=False)
    mtime: int = 0

    def open(self) -> BinaryIO:
        """Open a regular file's content for reading (binary, streaming)."""
        if self.type is not EntryType.FILE or self.source is None:
            raise MappingError(f"{show(self.path)}: not a regular file, it has no content to read")
        return self.source.open(self)

    def xattr(self, name: bytes) -> bytes | None:
        """The value of one extended attribute, or None."""
        for key, value in self.xattrs:
            if key == name:
                return value
        return None


class Tree:
    """The entries of one root tree, indexed by path.

    ``metadata`` and ``timestamp`` are an OSTree commit's metadata (its
    ``a{sv}``, unpacked) and its time in seconds since 1970; other trees have
    empty metadata and no timestamp.
    """

    description: str
    entries: Sequence[Entry]
    metadata: Mapping[str, Any]
    timestamp: int | None

    def __init__(
        self,
        description: str,
        entries: Sequence[Entry],
        *,
        metadata: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.description = description
        self.entries = entries
        self.metadata = {} if metadata is None else metadata
        self.timestamp = timestamp
        self.index: dict[str, int] = {e.path: i for i, e in enumerate(entries)}
        self._dirs: dict[str, str | None] = {"": ""}

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Entry | None:
        """The entry at exactly ``path`` (no symlinks followed), or None."""
        i = self.index.get(path)
        return None if i is None else self.entries[i]

    def resolve(self, path: str, follow: bool = True) -> str | None:
        """Resolve ``path`` inside the tree, following symlinks in its parent
        directories (and in its last component when ``follow``).

        Absolute targets start again at the tree root and ``..`` never climbs above
        it, so nothing outside the tree is ever reached.  Returns the resolved path
        (the last component need not exist) or None when a parent is missing, is
        not a directory, or symlinks loop.
        """
        return self._resolve(path.strip("/"), follow, 0)

    def _resolve(self, path: str, follow: bool, depth: int) -> str | None:
        parent, _, name = path.rpartition("/")
        base = self._resolve_dir(parent, depth)
        if base is None:
            return None
        if name in ("", "."):
            return base
        if name == "..":
            return base.rpartition("/")[0]
        full = f"{base}/{name}" if base else name
        entry = self.get(full)
        if follow and entry is not None and entry.type is EntryType.SYMLINK:
            if depth >= MAX_SYMLINKS:
                return None
            return self._resolve(self._join_target(base, entry), True, depth + 1)
        return full

    def _resolve_dir(self, path: str, depth: int) -> str | None:
        cached = self._dirs.get(path, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        resolved = self._resolve(path, True, depth)
        if resolved is not None:
            entry = self.get(resolved)
            if entry is None or entry.type is not EntryType.DIR:
                resolved = None
        if depth == 0:
            self._dirs[path] = resolved
        return resolved

    def _join_target(self, base: str, link: Entry) -> str:
        target = link.target or ""
        if target.startswith("/"):
            return target.strip("/")
        joined = posixpath.normpath(posixpath.join("/", base, target)).lstrip("/")
        # normpath clamps at "/", which is the tree root; say so when that happened.
        depth = base.count("/") + 1 if base else 0
        climbs = 0
        for part in target.split("/"):
            if part == "..":
                climbs += 1
                if climbs > depth:
                    warn(
                        f"{self.description}: symlink {show(link.path)} -> {show(target)} "
                        "points outside the tree; it is resolved inside the tree root instead"
                    )
                    break
            elif part not in ("", "."):
                depth += 1
        return joined

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """The content of the regular file at ``path`` (symlinks followed inside
        the tree), or None when there is none."""
        resolved = self.resolve(path)
        entry = None if resolved is None else self.get(resolved)
        if entry is None or entry.type is not EntryType.FILE:
            return None
        try:
            with entry.open() as f:
                return f.read() if limit is None else f.read(limit)
        except OSError as e:
            hint = "check the disk holding the tree"
            raise MappingError(f"cannot read: {e.strerror}", show(path), hint) from None

    def children(self, path: str) -> Iterator[Entry]:
        """Entries directly inside directory ``path`` (no symlinks followed)."""
        i = self.index.get(path)
        if i is None:
            return
        prefix = f"{path}/" if path else ""
        for entry in self.entries[i + 1 :]:
            if not entry.path.startswith(prefix):
                break
            if "/" not in entry.path[len(prefix) :]:
                yield entry
