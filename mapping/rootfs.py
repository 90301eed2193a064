"""Read a root directory into a ``Tree``.

In: a directory on disk.  Out: its entries from an lstat walk that never follows
symlinks; hardlinks found by (st_dev, st_ino); the content id of a regular file is
the sha256 of its content, hashed in threads (hashlib releases the GIL).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import replace
from typing import BinaryIO

from ._threads import map_in_threads
from .errors import MappingError, show, warn
from .tree import Entry, EntryType, Tree

_BLOCK = 1 << 20
_READABLE = "make the whole tree readable (or run as root)"


def _xattrs(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """Extended attributes of ``path`` itself (a symlink's own, never its
    target's), sorted by name; names are bytes, as stored (not necessarily
    UTF-8).  The standard library reads them: docs/dependencies.md has the
    measurement against the ``xattr`` package."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise MappingError(f"cannot list extended attributes: {e.strerror}", show(path), _READABLE) from None
    if not names:
        return ()
    pairs = []
    # os.listxattr decodes names with surrogateescape: fsencode gives the bytes back.
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENODATA:
                continue
            raise MappingError(
                f"cannot read extended attribute {os.fsencode(name)!r}: {e.strerror}", show(path), _READABLE
            ) from None
        pairs.append((os.fsencode(name), value))
    return tuple(pairs)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        while block := os.read(fd, _BLOCK):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


class RootfsTree(Tree):
    """A root directory, read with lstat; content opened with O_NOFOLLOW."""

    def __init__(self, root: str, threads: int | None = None) -> None:
        self.root = os.path.abspath(root)
        try:
            st = os.lstat(self.root)
        except OSError as e:
            raise MappingError(f"{root}: {e.strerror}; pass --rootfs an existing directory") from None
        if not stat.S_ISDIR(st.st_mode):
            raise MappingError(f"{root}: not a directory; pass --rootfs a root tree directory")
        entries: list[Entry] = []
        first_of_inode: dict[str, int] = {}
        self._walk(st, entries, first_of_inode)
        # Hash each inode once; further hardlinks to it share its id.
        firsts = [
            i for i, e in enumerate(entries) if e.type is EntryType.FILE and _first(first_of_inode, e, i) == i
        ]
        ids = dict(zip(firsts, self._hash([entries[i].path for i in firsts], threads), strict=True))
        for i, entry in enumerate(entries):
            if entry.type is EntryType.FILE:
                entries[i] = replace(entry, content_id=ids[_first(first_of_inode, entry, i)])
        super().__init__(self.root, entries)

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _walk(self, st: os.stat_result, entries: list[Entry], first_of_inode: dict[str, int]) -> None:
        stack: list[tuple[str, os.stat_result]] = [("", st)]
        while stack:
            path, st = stack.pop()
            entry = self._entry(path, st)
            if entry is None:
                continue
            if entry.hardlink is not None:
                first_of_inode.setdefault(entry.hardlink, len(entries))
            entries.append(entry)
            if entry.type is EntryType.DIR:
                try:
                    with os.scandir(self._abs(path)) as it:
                        children = sorted(
                            ((os.fsencode(d.name), d.name, d.stat(follow_symlinks=False)) for d in it),
                            reverse=True,
                        )
                except OSError as e:
                    raise MappingError(
                        f"{show(self._abs(path))}: cannot list directory: {e.strerror}; "
                        "make the whole tree readable"
                    ) from None
                prefix = f"{path}/" if path else ""
                stack.extend((prefix + name, cst) for _, name, cst in children)

    def _entry(self, path: str, st: os.stat_result) -> Entry | None:
        kind = EntryType.from_mode(st.st_mode)
        if kind is None:
            warn(f"{show(self._abs(path))}: sockets and unknown file types cannot be stored; skipped")
            return None
        is_file = kind is EntryType.FILE
        return Entry(
            path,
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_size if is_file else 0,
            _xattrs(self._abs(path)),
            self._readlink(path) if kind is EntryType.SYMLINK else None,
            None,
            st.st_rdev if kind in (EntryType.CHAR, EntryType.BLOCK) else 0,
            f"{st.st_dev}:{st.st_ino}" if is_file and st.st_nlink > 1 else None,
            self,
            int(st.st_mtime),
        )

    def _readlink(self, path: str) -> str:
        try:
            return os.readlink(self._abs(path))
        except OSError as e:
            where = show(self._abs(path))
            raise MappingError(f"cannot read symlink: {e.strerror}", where, _READABLE) from None

    def _hash(self, paths: list[str], threads: int | None) -> list[str]:
        def one(rel: str) -> str:
            try:
                return _sha256(self._abs(rel))
            except OSError as e:
                raise MappingError(
                    f"{show(self._abs(rel))}: cannot read: {e.strerror}; fix its permissions or run as root"
                ) from None

        return map_in_threads(one, paths, threads)

    def open(self, entry: Entry) -> BinaryIO:
        """Open a regular file without following a symlink in its last component."""
        try:
            fd = os.open(self._abs(entry.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise MappingError(f"{show(self._abs(entry.path))}: cannot read: {e.strerror}") from None
        return os.fdopen(fd, "rb")


def _first(first_of_inode: dict[str, int], entry: Entry, index: int) -> int:
    """Index of the first entry sharing ``entry``'s inode."""
    return index if entry.hardlink is None else first_of_inode[entry.hardlink]
