"""The ``ostree`` layer format: ostree-ext's "chunked" (version 1) images.

In: a mapping of an OSTree commit and a plan.  Out: tar items for each layer,
laid out as ostree-ext exports them (facts from ostree-ext's tar/export.rs and
container/encapsulate.rs), so ``ostree container image pull``, ``bootc`` and
``rpm-ostree`` can import the image object by object:

- layer 1, the ostree layer: the root directory, a repository skeleton under
  ``sysroot/ostree/repo`` (``objects/00``..``ff``, ``refs/{heads,mirrors,
  remotes}``, ``extensions``, ``state``, ``tmp/cache`` and a ``config`` of mode
  ``bare-split-xattrs``), the commit (and its detached metadata), every dirtree
  and dirmeta object, each directory at its checkout path, ``var/tmp``, and any
  content no plan layer holds;
- then one layer per plan layer: the skeleton again, then for each content
  object its ``.file-xattrs-link`` (the serialized ``a(ayay)``; written first so
  an importer has the xattrs when the object arrives), the ``.file`` object (its
  xattrs also as PAX ``SCHILY.xattr.*``, but never ``security.selinux``), and
  each checkout path of it as a hardlink to the object (``usr/etc`` written as
  ``etc``; empty regular files as empty files, not links).

Labels: ``ostree.commit``, ``ostree.final-diffid`` (the diff_id of the last
layer), ``ostree.bootable`` and ``containers.bootc`` for bootable commits, the
commit's ``version``.
"""

from __future__ import annotations

import hashlib
import stat
import tarfile

from chunker import Plan, layer_of_entries
from mapping import EntryType, Mapping
from mapping.commit import CommitTree
from mapping.libostree import GLib, OSTree

from ..errors import EncapsulateError
from ..oci.labels import (
    BOOTC_LABEL,
    OCI_VERSION_LABEL,
    OSTREE_BOOTABLE_LABEL,
    OSTREE_COMMIT_LABEL,
    OSTREE_FINAL_DIFFID_LABEL,
    OSTREE_LINUX_LABEL,
    VERSION_LABEL,
)
from ..oci.model import Digest
from .tar import CONTENT_MTIME, WRITER_VERSION, Content, Items, Opener

REPO = "sysroot/ostree/repo"
REPO_CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
_SUBDIRS = ("extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache")
_SELINUX = "security.selinux"


def object_path(checksum: str, suffix: str) -> str:
    """Where an object lives in the exported repository."""
    return f"{REPO}/objects/{checksum[:2]}/{checksum[2:]}.{suffix}"


def checkout_name(path: str) -> str:
    """The tar name of a commit path: ``usr/etc`` is shipped as ``etc``."""
    if path == "usr/etc" or path.startswith("usr/etc/"):
        return path[4:]
    return path


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode & 0o7777
    info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
    info.size = size
    return info


# Bumped whenever the items this module writes for the same commit and plan change.
LAYOUT_VERSION = 1


class OstreeLayers:
    """Tar items of every layer of a commit's image, given a plan."""

    def __init__(self, split: Mapping, plan: Plan, mtime: int, format_version: int = 1) -> None:
        """``split``: the mapping with its components split as ``plan`` has them.
        ``format_version`` 2 writes, in every component layer, each parent
        directory of the checkout paths it holds, with its mode, owner and
        xattrs, as ostree-ext does when asked to create parent directories
        (``tar/export.rs``, ``write_parents_of``; rpm-ostree's
        ``build-chunked-oci --format-version 2``): without them, podman and
        composefs views make a missing parent with default metadata."""
        tree = split.tree
        if not isinstance(tree, CommitTree):
            raise EncapsulateError(
                "the ostree layer format needs an OSTree commit; use --format plain for --rootfs"
            )
        self.tree = tree
        self.repo = tree.repo
        self.mtime = mtime
        self.format_version = format_version
        layer = layer_of_entries(plan, [c.name for c in split.components], split.owners).tolist()
        # Each content object goes where its first path's owner is; all its paths follow it.
        self.object_layer: dict[str, int] = {}
        self.paths_of: dict[str, list[str]] = {}
        for i, e in enumerate(tree.entries):
            if e.type in (EntryType.FILE, EntryType.SYMLINK) and e.content_id is not None:
                self.object_layer.setdefault(e.content_id, layer[i] + 1)
                self.paths_of.setdefault(e.content_id, []).append(e.path)
        self.layer_count = len(plan.layers) + 1
        # The objects of each layer, in the order written (unplanned ones in the ostree layer).
        self.objects_of: list[list[str]] = [[] for _ in range(self.layer_count)]
        for checksum, where in self.object_layer.items():
            self.objects_of[max(where, 0)].append(checksum)
        for objects in self.objects_of:
            objects.sort()

    def key(self, k: int, compression: str) -> str:
        """Layer ``k``'s key (``tarlayer.layer_key``'s role) from what decides its
        bytes without reading any object: an object's checksum covers its content,
        mode, owner and xattrs, the commit's covers every dirtree and dirmeta, and
        the rest of a layer is fixed by this module (``LAYOUT_VERSION``)."""
        h = hashlib.sha256(
            f"{WRITER_VERSION} {compression} ostree {LAYOUT_VERSION} v{self.format_version}\n".encode()
        )
        if k == 0:
            h.update(f"commit {self.tree.checksum} {self.mtime}\n".encode())
        for checksum in self.objects_of[k]:
            paths = "\0".join(self.paths_of[checksum])
            h.update(f"{checksum}\0{paths}\n".encode("utf-8", "surrogateescape"))
        return Digest.of_hash(h)

    def empty_layers(self) -> list[int]:
        """Component layers that would hold no object (every object of their
        components is the same as one of another layer's)."""
        return [k for k in range(1, self.layer_count) if not self.objects_of[k]]

    def first_layer_name(self) -> str:
        """The commit layer's history name: the commit's subject, as ostree-ext
        names it (``container/encapsulate.rs``, ``build_oci``)."""
        subject: str = self.tree.subject
        return subject or f"ostree export of commit {self.tree.checksum}"

    def labels(self, final_diff_id: str) -> dict[str, str]:
        """The config labels ostree-ext sets."""
        metadata = self.tree.metadata
        labels = {OSTREE_COMMIT_LABEL: self.tree.checksum, OSTREE_FINAL_DIFFID_LABEL: final_diff_id}
        # The commit metadata keys are named as the labels they become.
        if metadata.get(OSTREE_BOOTABLE_LABEL):
            labels[OSTREE_BOOTABLE_LABEL] = "true"
            labels[BOOTC_LABEL] = "1"
        # ostree-ext copies the kernel version key as a label when the commit has it.
        linux = metadata.get(OSTREE_LINUX_LABEL)
        if isinstance(linux, str) and linux:
            labels[OSTREE_LINUX_LABEL] = linux
        version = metadata.get(VERSION_LABEL)
        if isinstance(version, str) and version:
            labels[OCI_VERSION_LABEL] = version
            labels[VERSION_LABEL] = version
        return labels

    def items(self, k: int) -> Items:
        """The tar items of layer ``k`` (0 is the ostree layer)."""
        if k == 0:
            yield from self._commit_layer()
        else:
            yield from self._skeleton(CONTENT_MTIME)
        # The commit layer holds every directory already.
        parents: set[str] | None = set() if self.format_version >= 2 and k > 0 else None
        for checksum in self.objects_of[k]:
            yield from self._content(checksum, parents)

    def _dir(
        self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int | None = None
    ) -> tuple[tarfile.TarInfo, Content]:
        info = _info(name, tarfile.DIRTYPE, mode, uid, gid)
        info.mtime = self.mtime if mtime is None else mtime
        return info, None

    def _data(self, name: str, data: bytes, mtime: int | None = None) -> tuple[tarfile.TarInfo, Content]:
        info = _info(name, tarfile.REGTYPE, 0o644, size=len(data))
        info.mtime = self.mtime if mtime is None else mtime
        return info, data

    def _skeleton(self, mtime: int) -> Items:
        for name in ("sysroot", "sysroot/ostree", REPO, f"{REPO}/objects"):
            yield self._dir(name, mtime=mtime)
        for d in range(256):
            yield self._dir(f"{REPO}/objects/{d:02x}", mtime=mtime)
        for sub in _SUBDIRS:
            yield self._dir(f"{REPO}/{sub}", mtime=mtime)
        yield self._data(f"{REPO}/config", REPO_CONFIG, mtime)

    def _variant_bytes(self, kind: OSTree.ObjectType, checksum: str) -> bytes:
        try:
            _, variant = self.repo.load_variant(kind, checksum)
        except GLib.Error as e:
            raise EncapsulateError(f"{self.tree.description}: object {checksum}: {e.message}") from None
        return bytes(variant.get_data_as_bytes().get_data() or b"")

    def _commit_layer(self) -> Items:
        tree, checksum = self.tree, self.tree.checksum
        root = tree.entries[0]
        yield self._dir(".", root.mode, root.uid, root.gid)
        yield from self._skeleton(self.mtime)
        yield self._data(
            object_path(checksum, "commit"), self._variant_bytes(OSTree.ObjectType.COMMIT, checksum)
        )
        try:
            _, detached = self.repo.read_commit_detached_metadata(checksum, None)
        except GLib.Error as e:
            raise EncapsulateError(f"{tree.description}: detached metadata: {e.message}") from None
        if detached is not None:
            yield self._data(
                object_path(checksum, "commitmeta"), bytes(detached.get_data_as_bytes().get_data())
            )
        _, commit = self.repo.load_variant(OSTree.ObjectType.COMMIT, checksum)
        root_tree = OSTree.checksum_from_bytes_v(commit.get_child_value(6))
        root_meta = OSTree.checksum_from_bytes_v(commit.get_child_value(7))
        written: set[str] = set()
        yield self._data(
            object_path(root_meta, "dirmeta"), self._variant_bytes(OSTree.ObjectType.DIR_META, root_meta)
        )
        written.add(root_meta)
        has_vartmp = False
        stack = [("", root_tree)]
        while stack:
            path, dirtree = stack.pop()
            if dirtree not in written:
                written.add(dirtree)
                yield self._data(
                    object_path(dirtree, "dirtree"), self._variant_bytes(OSTree.ObjectType.DIR_TREE, dirtree)
                )
            _, variant = self.repo.load_variant(OSTree.ObjectType.DIR_TREE, dirtree)
            dirs = variant.get_child_value(1)
            children = []
            for i in range(dirs.n_children()):
                child = dirs.get_child_value(i)
                name = child.get_child_value(0).get_string()
                sub_tree = OSTree.checksum_from_bytes_v(child.get_child_value(1))
                sub_meta = OSTree.checksum_from_bytes_v(child.get_child_value(2))
                children.append((name, sub_tree, sub_meta))
            for name, _sub_tree, sub_meta in children:
                if sub_meta not in written:
                    written.add(sub_meta)
                    yield self._data(
                        object_path(sub_meta, "dirmeta"),
                        self._variant_bytes(OSTree.ObjectType.DIR_META, sub_meta),
                    )
                child_path = f"{path}/{name}" if path else name
                has_vartmp = has_vartmp or child_path == "var/tmp"
                # The skeleton already wrote sysroot/; its commit content is objects only.
                if child_path != "sysroot" and not child_path.startswith("sysroot/"):
                    entry = tree.get(child_path)
                    assert entry is not None
                    yield self._dir(checkout_name(child_path), entry.mode, entry.uid, entry.gid)
            stack.extend((f"{path}/{n}" if path else n, t) for n, t, _ in reversed(children))
        if not has_vartmp:
            yield self._dir("var/tmp", 0o1777)

    def _parents(self, path: str, written: set[str]) -> Items:
        """The parent directories of commit path ``path`` not yet in ``written``,
        outermost first, at their checkout names."""
        missing = []
        parent = path.rpartition("/")[0]
        while parent and parent not in written:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for directory in reversed(missing):
            written.add(directory)
            entry = self.tree.get(directory)
            assert entry is not None
            info, _ = self._dir(checkout_name(directory), entry.mode, entry.uid, entry.gid, CONTENT_MTIME)
            info.pax_headers = {
                "SCHILY.xattr." + name.decode("utf-8", "surrogateescape"): value.decode(
                    "utf-8", "surrogateescape"
                )
                for name, value in entry.xattrs
                if name.decode("utf-8", "surrogateescape") != _SELINUX
            }
            yield info, None

    def _content(self, checksum: str, parents: set[str] | None = None) -> Items:
        try:
            _, stream, info, xattrs = self.repo.load_file(checksum, None)
        except GLib.Error as e:
            raise EncapsulateError(
                f"{self.tree.description}: content object {checksum} cannot be read ({e.message}); "
                f"run 'ostree fsck --repo={self.tree.repo_path}'"
            ) from None
        if stream is not None:
            stream.close(None)
        raw_xattrs = bytes(xattrs.get_data_as_bytes().get_data() or b"") if xattrs is not None else b""
        yield self._data(object_path(checksum, "file-xattrs-link"), raw_xattrs, CONTENT_MTIME)
        mode = info.get_attribute_uint32("unix::mode")
        uid, gid = info.get_attribute_uint32("unix::uid"), info.get_attribute_uint32("unix::gid")
        path = object_path(checksum, "file")
        pax = {}
        if xattrs is not None:
            for i in range(xattrs.n_children()):
                pair = xattrs.get_child_value(i)
                key = bytes(pair.get_child_value(0).get_data_as_bytes().get_data() or b"").rstrip(b"\0")
                name = key.decode("utf-8", "surrogateescape")
                if name != _SELINUX:
                    value = bytes(pair.get_child_value(1).get_data_as_bytes().get_data() or b"")
                    pax["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
        if stat.S_ISLNK(mode):
            obj = _info(path, tarfile.SYMTYPE, mode, uid, gid)
            obj.linkname = info.get_symlink_target() or ""
            content: Content = None
        else:
            size = info.get_size()
            obj = _info(path, tarfile.REGTYPE, mode, uid, gid, size)
            entry = self.tree.get(self.paths_of[checksum][0])
            assert entry is not None
            content = Opener(entry.open, checksum)
        obj.mtime = CONTENT_MTIME
        obj.pax_headers = pax
        yield obj, content
        empty_file = obj.type == tarfile.REGTYPE and obj.size == 0
        for checkout in self.paths_of[checksum]:
            if parents is not None:
                yield from self._parents(checkout, parents)
            link = _info(
                checkout_name(checkout), tarfile.REGTYPE if empty_file else tarfile.LNKTYPE, mode, uid, gid
            )
            link.mtime = CONTENT_MTIME
            if not empty_file:
                link.linkname = path
            yield link, (b"" if empty_file else None)
