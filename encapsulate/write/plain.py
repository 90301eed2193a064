"""The ``plain`` layer format: ordinary rootfs tar layers.

Layer 0 holds every directory (the tree's skeleton) with the image's time;
each plan layer then holds its components' files with every parent directory
they need, so that any layer order unpacks to the right modes and owners.
Entries of component layers carry ``CONTENT_MTIME``, so a layer whose
components did not change is the same blob in the next build.
"""

from __future__ import annotations

import tarfile
from collections.abc import Collection, Sequence

from chunker import Plan, layer_of_entries
from mapping import EntryType, Mapping

from ..errors import EncapsulateError
from .tar import Items, entry_items, layer_key


def plain_layers(mapping: Mapping, plan: Plan, kept: Collection[int] = frozenset()) -> list[list[int]]:
    """Entry indices of each layer: layer 0 every directory, then one per plan
    layer with its files and their parent directories.  All paths of an inode
    go with the first one, so hardlinks stay within a layer.  The entries
    ``kept`` (a kept base's, as they are) are in no layer, but as parents."""
    if mapping.tree is None:
        raise EncapsulateError("the mapping has no tree to write", hint="map the tree again")
    entries = mapping.tree.entries
    layer = layer_of_entries(plan, [c.name for c in mapping.components], mapping.owners).tolist()
    first_layer: dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.hardlink is not None and e.type is EntryType.FILE:
            layer[i] = first_layer.setdefault(e.hardlink, layer[i])
    index = mapping.tree.index
    out: list[list[int]] = [[] for _ in range(len(plan.layers) + 1)]
    with_parents: list[set[int]] = [set() for _ in plan.layers]
    for i, e in enumerate(entries):
        if i in kept:
            continue
        if e.type is EntryType.DIR or layer[i] < 0:
            if e.path:
                out[0].append(i)
            continue
        have = with_parents[layer[i]]
        parent = e.path.rpartition("/")[0]
        while parent and index[parent] not in have:
            have.add(index[parent])
            parent = parent.rpartition("/")[0]
        have.add(i)
    for k, have in enumerate(with_parents):
        out[k + 1] = sorted(have)
    return out


def _mtimes(mapping: Mapping, groups: Sequence[Sequence[int]], epoch: int) -> tuple[list[int], list[int]]:
    """Each layer's date (the image's time for the first layer), and each
    owned file's mtime (-1 for directories and unowned entries, which take
    their layer's date).

    A file keeps its own mtime, clamped to its component's date (the newest
    date of its changelog), as chunkah clamps each component's files to its
    package's build time (``src/components``).  A component without a date
    (unpackaged files, bigfiles, ``user.component`` names) takes the newest
    changelog date of the whole tree: unlike the image's time (chunkah's
    choice), it stays the same in a rebuild of the same packages.  Files from
    a package keep the dates dpkg gave them, so Python's ``.pyc`` files, which
    record their source's mtime, stay valid; files the package's scripts made
    at install time get the package's date, the same in every build until the
    package changes.  A directory in a
    component layer gets the newest date of the layer's components, not its
    own mtime, which changes whenever any package adds a file to it: so a
    layer whose components did not change is the same blob whatever the
    build's date and whatever else was installed.  In the first layer, the
    directories have the image's time."""
    entries = mapping.tree.entries if mapping.tree is not None else ()
    known = [c.date for c in mapping.components if c.date is not None]
    undated = max(known) if known else epoch
    dates = [undated if c.date is None else c.date for c in mapping.components]
    owners = mapping.owners
    layer_dates = [epoch]
    for layer in groups[1:]:
        dated = [dates[owners[i]] for i in layer if owners[i] >= 0]
        layer_dates.append(max(dated) if dated else undated)
    files = [
        max(0, min(e.mtime, dates[owner])) if owner >= 0 and e.type is not EntryType.DIR else -1
        for e, owner in zip(entries, owners, strict=True)
    ]
    return layer_dates, files


class PlainLayers:
    """The layers of a mapping and its plan in the plain format: what each
    holds (``items``) and its reuse key (``key``)."""

    def __init__(
        self,
        mapping: Mapping,
        plan: Plan,
        mtime: int,
        whiteouts: Sequence[str] = (),
        kept: Collection[int] = frozenset(),
    ) -> None:
        """``whiteouts``: paths of lower layers (a kept base) to remove, written
        in the first layer as ``.wh.NAME`` entries (OCI layer.md, "Whiteouts");
        ``kept``: the entries that base holds as they are (``plain_layers``)."""
        self.groups = plain_layers(mapping, plan, kept)
        assert mapping.tree is not None
        self.entries = mapping.tree.entries
        self.mtime = mtime
        self.whiteouts = sorted(whiteouts)
        self.layer_count = len(self.groups)
        self.layer_dates, self.file_mtimes = _mtimes(mapping, self.groups, mtime)

    def items(self, k: int) -> Items:
        """The tar items of layer ``k`` (0: the directories, and the whiteouts)."""
        date, files = self.layer_dates[k], self.file_mtimes
        yield from entry_items(
            (self.entries[i].path, self.entries[i], date if k == 0 or files[i] < 0 else files[i])
            for i in self.groups[k]
        )
        mtime = self.mtime
        if k == 0:
            for path in self.whiteouts:
                parent, _, name = path.rpartition("/")
                info = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                info.mode, info.mtime, info.uname, info.gname = 0o644, mtime, "", ""
                yield info, None

    def key(self, k: int, compression: str) -> str | None:
        """Layer ``k``'s reuse key (``tar.layer_key``)."""
        return layer_key(self.items(k), compression)

    def empty_layers(self) -> list[int]:
        """Component layers that would hold no entry (their files all hardlinks
        to files of other layers)."""
        return [k for k in range(1, self.layer_count) if not self.groups[k]]

    def first_layer_name(self) -> str:
        """The first layer's history name: it holds the tree's directories."""
        return "directories"

    def labels(self, final_diff_id: str) -> dict[str, str]:
        """No format labels: a plain image is an ordinary one."""
        return {}
