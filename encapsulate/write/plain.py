"""The ``plain`` layer format: ordinary rootfs tar layers.

Layer 0 holds every directory (the tree's skeleton) with the image's time;
each plan layer then holds its components' files with every parent directory
they need, so that any layer order unpacks to the right modes and owners.
Entries of component layers carry ``CONTENT_MTIME``, so a layer whose
components did not change is the same blob in the next build.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence

from chunker import Plan, layer_of_entries
from mapping import EntryType, Mapping

from ..errors import EncapsulateError
from .tar import CONTENT_MTIME, Items, entry_items, layer_key


def plain_layers(mapping: Mapping, plan: Plan) -> list[list[int]]:
    """Entry indices of each layer: layer 0 every directory, then one per plan
    layer with its files and their parent directories.  All paths of an inode
    go with the first one, so hardlinks stay within a layer."""
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


class PlainLayers:
    """The layers of a mapping and its plan in the plain format: what each
    holds (``items``) and its reuse key (``key``)."""

    def __init__(self, mapping: Mapping, plan: Plan, mtime: int, whiteouts: Sequence[str] = ()) -> None:
        """``whiteouts``: paths of lower layers (a kept base) to remove, written
        in the first layer as ``.wh.NAME`` entries (OCI layer.md, "Whiteouts")."""
        self.groups = plain_layers(mapping, plan)
        assert mapping.tree is not None
        self.entries = mapping.tree.entries
        self.mtime = mtime
        self.whiteouts = sorted(whiteouts)
        self.layer_count = len(self.groups)

    def items(self, k: int) -> Items:
        """The tar items of layer ``k`` (0: the directories, and the whiteouts)."""
        mtime = self.mtime if k == 0 else CONTENT_MTIME
        yield from entry_items(((self.entries[i].path, self.entries[i]) for i in self.groups[k]), mtime)
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
