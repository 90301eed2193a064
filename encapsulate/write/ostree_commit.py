"""An image's flattened tree as an OSTree commit (``--from IMGREF --format ostree``).

In: the ``mapping.Tree`` an image's layers make (nothing extracted: content
is read back through ``Tree`` entries).  Out: the tree laid out as an OSTree
image builder lays a Debian tree out (``ostree_layout``, DESIGN.md "Real
Debian commits"), committed with libostree into a scratch ``bare-user``
repository (``commit_tree``), content objects written from streams, rootless.
The build then reads that commit like any ``--repo REPO REF``.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import BinaryIO

from mapping import DebchunkError, Entry, EntryType, Tree
from mapping.errors import show, warn
from mapping.libostree import Gio, GLib, OSTree

from ..errors import EncapsulateError

# Top-level API filesystems and scratch space: mounted or created at boot, so a
# commit holds the directories and nothing in them.  ostree-ext drops the same
# children when it imports a non-ostree layer (EXCLUDED_TOPLEVEL_PATHS in
# crates/ostree-ext/src/tar/write.rs of bootc).
EMPTIED = ("dev", "proc", "sys", "run", "tmp")
# Where the dpkg database goes (the first place mapping.dpkg looks after
# usr/lib/sysimage/dpkg); either of them already present means the tree has one.
ADMINDIR = "usr/share/dpkg/database"
_ADMINDIRS = ("usr/lib/sysimage/dpkg", ADMINDIR)
# ostree's convention for the kernel (ostree-prepare-root and bootc look there).
MODULES = "usr/lib/modules"
# Content at most this large is handed to libostree from memory; larger
# content is streamed through a pipe, so memory stays flat.
_IN_MEMORY = 1 << 20
_BLOCK = 1 << 20


def _sort_key(path: str) -> tuple[bytes, ...]:
    # Depth first, children by the bytes of their names: the order Tree readers give.
    return tuple(path.encode("utf-8", "surrogateescape").split(b"/"))


def _directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, EntryType.DIR, mode, 0, 0)


def _check_names(tree: Tree) -> None:
    """Every name and symlink target is UTF-8: an OSTree commit holds nothing else."""
    for e in tree.entries:
        for what, text in (("name", e.path), ("symlink target", e.target or "")):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise EncapsulateError(
                    f"{show(e.path)}: its {what} is not UTF-8, and an OSTree commit holds only UTF-8",
                    where=tree.description,
                    hint="rename it in the image, or write it --format plain",
                ) from None


def ostree_layout(tree: Tree) -> Tree:
    """``tree`` laid out as an OSTree image builder lays out a Debian tree
    before ``ostree commit`` (DESIGN.md, "Real Debian commits", steps 1-5):

    1. ``dev proc sys run tmp`` are kept (made if missing) but emptied;
       device nodes and fifos anywhere else are dropped with a warning
       (a commit holds regular files, symlinks and directories only);
    2. ``etc`` moves to ``usr/etc``; where both exist they are merged, ``etc``
       winning, as ostree-ext's import of a container layer writes
       ``etc/...`` at ``usr/etc/...`` (``normalize_validate_path`` in bootc's
       crates/ostree-ext/src/tar/write.rs);
    3. a ``var/lib/dpkg`` directory moves to ``usr/share/dpkg/database``,
       leaving a relative symlink, unless the tree has a database under
       ``usr`` already;
    4. ``boot/vmlinuz-K`` and ``boot/initrd.img-K`` move to
       ``usr/lib/modules/K/vmlinuz`` and ``initramfs.img`` (unless there is
       one there already), ``boot`` is emptied, and the top-level
       ``vmlinuz*``/``initrd.img*`` symlinks are dropped;
    5. ``var`` is emptied but for ``var/tmp`` (1777) and that symlink.

    Each step moves what is not yet where it goes, so a tree already laid
    out (a bootc-style image: ``usr/etc``, the kernel beside its modules, an
    empty ``var``) passes unchanged.  A name or symlink target that is not
    UTF-8 is an ``EncapsulateError`` naming it."""
    _check_names(tree)
    out: dict[str, Entry] = {}
    dropped: list[str] = []
    for e in tree.entries:
        top = e.path.partition("/")[0]
        if top in EMPTIED and e.path != top:
            continue
        if e.type in (EntryType.CHAR, EntryType.BLOCK, EntryType.FIFO):
            dropped.append(e.path)
            continue
        out[e.path] = e
    if dropped:
        shown = ", ".join(show(p) for p in dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        warn(
            f"{tree.description}: {len(dropped)} device node(s) or fifo(s) dropped, "
            f"an OSTree commit holds none: {shown}"
        )
    for name in EMPTIED:
        if name not in out:
            out[name] = _directory(name, 0o1777 if name == "tmp" else 0o755)
    _move_etc(out)
    symlink = _move_dpkg(out)
    _move_kernels(out)
    for path in [p for p in out if p.startswith("var/")]:
        if path not in ("var/tmp", "var/lib", symlink):
            del out[path]
    var_tmp = out.get("var/tmp")
    if var_tmp is None or var_tmp.type is not EntryType.DIR:
        out["var/tmp"] = _directory("var/tmp", 0o1777)
    if symlink is None:
        out.pop("var/lib", None)
    _ensure_dirs(out, ["var/tmp"])
    entries = sorted(out.values(), key=lambda e: _sort_key(e.path))
    return Tree(tree.description, entries)


def _move(out: dict[str, Entry], source: str, destination: str) -> None:
    """Move ``source`` and everything under it to ``destination``, replacing
    what is there (all of it, when a directory gives way to something else)."""
    moving = [p for p in out if p == source or p.startswith(source + "/")]
    new = {
        destination + p[len(source) :]: replace(out.pop(p), path=destination + p[len(source) :])
        for p in moving
    }
    for path, entry in new.items():
        before = out.get(path)
        if before is not None and before.type is EntryType.DIR and entry.type is not EntryType.DIR:
            for below in [p for p in out if p.startswith(path + "/")]:
                del out[below]
        out[path] = entry
    _ensure_dirs(out, [destination])


def _ensure_dirs(out: dict[str, Entry], paths: Iterable[str]) -> None:
    """Every parent of ``paths`` is a directory (0755, root's, when made)."""
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in out:
                out[parent] = _directory(parent)


def _move_etc(out: dict[str, Entry]) -> None:
    etc = out.get("etc")
    if etc is not None and etc.type is EntryType.DIR:
        _move(out, "etc", "usr/etc")


def _move_dpkg(out: dict[str, Entry]) -> str | None:
    """Step 3; the path of the dpkg symlink kept in ``var``, if there is one."""
    dpkg = out.get("var/lib/dpkg")
    if dpkg is None:
        return None
    if dpkg.type is EntryType.SYMLINK:
        return dpkg.path
    if dpkg.type is not EntryType.DIR or any(p in out for p in _ADMINDIRS):
        return None
    _move(out, "var/lib/dpkg", ADMINDIR)
    out["var/lib/dpkg"] = Entry(
        "var/lib/dpkg", EntryType.SYMLINK, 0o777, 0, 0, target=os.path.relpath(ADMINDIR, "var/lib")
    )
    if out.get("var/lib") is None or out["var/lib"].type is not EntryType.DIR:
        out["var/lib"] = _directory("var/lib")
    return "var/lib/dpkg"


def _move_kernels(out: dict[str, Entry]) -> None:
    for path in sorted(p for p in out if p.startswith("boot/vmlinuz-") and "/" not in p[5:]):
        version = path[len("boot/vmlinuz-") :]
        if out[path].type is not EntryType.FILE:
            continue
        for name, installed in (
            (f"vmlinuz-{version}", "vmlinuz"),
            (f"initrd.img-{version}", "initramfs.img"),
        ):
            source, destination = f"boot/{name}", f"{MODULES}/{version}/{installed}"
            found = out.get(source)
            if found is not None and found.type is EntryType.FILE and destination not in out:
                out[destination] = replace(out.pop(source), path=destination)
                _ensure_dirs(out, [destination])
    for path in [p for p in out if p.startswith("boot/")]:
        del out[path]
    for path in [p for p, e in out.items() if "/" not in p and e.type is EntryType.SYMLINK]:
        if path.startswith(("vmlinuz", "initrd.img")):
            del out[path]


def kernels(tree: Tree) -> list[str]:
    """The kernel versions a laid-out tree holds (``usr/lib/modules/K/vmlinuz``)."""
    return sorted(
        e.path.split("/")[3]
        for e in tree.entries
        if e.type is EntryType.FILE
        and e.path.startswith(MODULES + "/")
        and e.path.count("/") == 4
        and e.path.endswith("/vmlinuz")
    )


def commit_tree(
    tree: Tree,
    repo_path: str,
    ref: str,
    *,
    timestamp: int,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> str:
    """Commit ``tree`` (laid out by ``ostree_layout``) as ``ref`` in a new
    ``bare-user`` repository at ``repo_path``; its checksum.  The commit's
    time is ``timestamp`` and it has no parent, so the same tree gives the
    same checksum on every run.  A tree with a kernel gets the metadata
    ``ostree commit --bootable`` gives (``ostree.bootable``, ``ostree.linux``).
    Owners, modes and xattrs are recorded as the tree says, without root."""
    repo = OSTree.Repo.new(Gio.File.new_for_path(repo_path))
    try:
        os.makedirs(repo_path, exist_ok=True)
        repo.create(OSTree.RepoMode.BARE_USER, None)
        # A scratch repository, thrown away with the build: nothing to fsync for.
        repo.set_disable_fsync(True)
        repo.prepare_transaction(None)
        writer = _Writer(repo, tree.description)
        root = writer.mtree(tree, threads)
        _, root_file = repo.write_mtree(root, None)
        meta = GLib.VariantDict.new(None)
        for key, value in sorted((metadata or {}).items()):
            meta.insert_value(key, GLib.Variant("s", value))
        if kernels(tree):
            OSTree.commit_metadata_for_bootable(root_file, meta, None)
        _, checksum = repo.write_commit_with_time(None, None, None, meta.end(), root_file, timestamp, None)
        repo.transaction_set_ref(None, ref, checksum)
        repo.commit_transaction(None)
    except GLib.Error as e:
        raise EncapsulateError(
            f"cannot commit the image's tree to OSTree: {e.message}",
            where=repo_path,
            hint="check the disk holding the work directory",
        ) from None
    except OSError as e:
        raise EncapsulateError(
            f"cannot commit the image's tree to OSTree: {e.strerror}",
            where=repo_path,
            hint="check the disk holding the work directory",
        ) from None
    return str(checksum)


def _xattrs(entry: Entry) -> GLib.Variant:
    # ostree stores each name with its trailing NUL, as llistxattr(2) gives it.
    return GLib.Variant("a(ayay)", [(name + b"\0", value) for name, value in sorted(entry.xattrs)])


def _file_info(entry: Entry, kind: int, file_type: Gio.FileType) -> Gio.FileInfo:
    info = Gio.FileInfo.new()
    info.set_file_type(file_type)
    info.set_attribute_uint32("unix::uid", entry.uid)
    info.set_attribute_uint32("unix::gid", entry.gid)
    info.set_attribute_uint32("unix::mode", kind | (entry.mode & 0o7777))
    return info


def _object_key(e: Entry) -> tuple[object, ...]:
    # What makes a content object: hardlinks and identical files are one, written once.
    return (e.type, e.content_id, e.target, e.mode, e.uid, e.gid, e.xattrs)


class _Writer:
    """Writes a tree's objects into a repository in a transaction."""

    def __init__(self, repo: OSTree.Repo, description: str) -> None:
        self.repo = repo
        self.description = description
        self.objects: dict[tuple[object, ...], str] = {}
        self.dirmeta: dict[tuple[object, ...], str] = {}

    def mtree(self, tree: Tree, threads: int | None = None) -> OSTree.MutableTree:
        """The tree as a ``MutableTree`` whose content and dirmeta objects are written.
        Content objects are written in ``threads`` threads (libostree writes
        objects from many threads in one transaction, as its pulls do, and
        drops the GIL while it hashes and writes)."""
        unique: dict[tuple[object, ...], Entry] = {}
        for e in tree.entries:
            if e.type in (EntryType.FILE, EntryType.SYMLINK):
                unique.setdefault(_object_key(e), e)
        workers = max(1, threads or os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            written = pool.map(self._content, unique.values())
            self.objects = dict(zip(unique, written, strict=True))
        root = OSTree.MutableTree.new()
        dirs: dict[str, OSTree.MutableTree] = {}
        for e in tree.entries:
            parent_path, _, name = e.path.rpartition("/")
            if e.type is EntryType.DIR:
                node = root if not e.path else dirs[parent_path].ensure_dir(name)[1]
                node.set_metadata_checksum(self._dirmeta(e))
                dirs[e.path] = node
            elif e.type in (EntryType.FILE, EntryType.SYMLINK):
                dirs[parent_path].replace_file(name, self.objects[_object_key(e)])
        return root

    def _dirmeta(self, e: Entry) -> str:
        key = (e.mode, e.uid, e.gid, e.xattrs)
        checksum = self.dirmeta.get(key)
        if checksum is None:
            info = _file_info(e, stat.S_IFDIR, Gio.FileType.DIRECTORY)
            variant = OSTree.create_directory_metadata(info, _xattrs(e))
            _, raw = self.repo.write_metadata(OSTree.ObjectType.DIR_META, None, variant, None)
            checksum = self.dirmeta[key] = OSTree.checksum_from_bytes(raw)
        return checksum

    def _content(self, e: Entry) -> str:
        """Write one content object; its checksum."""
        if e.type is EntryType.SYMLINK:
            info = _file_info(e, stat.S_IFLNK, Gio.FileType.SYMBOLIC_LINK)
            info.set_symlink_target(e.target or "")
            # The binding takes no None for the content; a symlink has none to read.
            empty = Gio.MemoryInputStream.new()
            _, stream, length = OSTree.raw_file_to_content_stream(empty, info, _xattrs(e), None)
            _, raw = self.repo.write_content(None, stream, length, None)
        else:
            info = _file_info(e, stat.S_IFREG, Gio.FileType.REGULAR)
            info.set_size(e.size)
            raw = self._write_file(e, info)
        return str(OSTree.checksum_from_bytes(raw))

    def _write_file(self, e: Entry, info: Gio.FileInfo) -> bytes:
        try:
            source = e.open()
        except OSError as error:
            raise EncapsulateError(
                f"{show(e.path)}: cannot read: {error.strerror}", where=self.description
            ) from None
        with source:
            if e.size <= _IN_MEMORY:
                data = source.read()
                self._check_size(e, len(data))
                content = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
                _, stream, length = OSTree.raw_file_to_content_stream(content, info, _xattrs(e), None)
                _, raw = self.repo.write_content(None, stream, length, None)
                return bytes(raw)
            return self._write_streamed(e, info, source)

    def _write_streamed(self, e: Entry, info: Gio.FileInfo, source: BinaryIO) -> bytes:
        """Large content through a pipe: a thread feeds it while libostree,
        which drops the GIL, reads and hashes it."""
        read_fd, write_fd = os.pipe()
        fed: list[int] = []
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                with os.fdopen(write_fd, "wb", buffering=0) as pipe:
                    total = 0
                    while block := source.read(_BLOCK):
                        pipe.write(block)
                        total += len(block)
                    fed.append(total)
            except BaseException as error:  # reported by the writer below
                failure.append(error)

        feeder = threading.Thread(target=feed, name="ostree-feed", daemon=True)
        content = Gio.UnixInputStream.new(read_fd, True)
        feeder.start()
        try:
            _, stream, length = OSTree.raw_file_to_content_stream(content, info, _xattrs(e), None)
            _, written = self.repo.write_content(None, stream, length, None)
        finally:
            content.close(None)
            feeder.join()
        if failure and not isinstance(failure[0], BrokenPipeError):
            error = failure[0]
            if isinstance(error, DebchunkError):
                raise error
            what = error.strerror if isinstance(error, OSError) else str(error)
            raise EncapsulateError(f"{show(e.path)}: cannot read: {what}", where=self.description)
        self._check_size(e, fed[0] if fed else -1)
        return bytes(written)

    def _check_size(self, e: Entry, size: int) -> None:
        if size != e.size:
            raise EncapsulateError(
                f"{show(e.path)}: {size} bytes read of the {e.size} its entry says",
                where=self.description,
                hint="keep the work directory until the image is written",
            )
