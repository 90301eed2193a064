"""A tree less the base it was built on (``--keep-base``).

In: the ``Mapping`` of a whole image's tree and the ``Tree`` of its base
image's layers.  Out: the mapping of what the layers above the base add (only
the entries that are new or differ from the base stay owned, each component
sized by what it holds of them), the entries the base holds as they are (not
written again), and the base paths those layers remove, as whiteouts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .model import Mapping, component_sizes
from .tree import Entry, EntryType, Tree


@dataclass(frozen=True)
class AboveBase:
    """What the layers above a base add: their mapping, the indices of the
    tree's entries that the base holds as they are (``kept``: written in no
    layer above it, but as the parent directory of what is), and the base
    paths they remove."""

    mapping: Mapping
    whiteouts: tuple[str, ...]
    kept: frozenset[int] = frozenset()


def _same(a: Entry, b: Entry) -> bool:
    """Whether two entries would be written as the same tar entry."""
    return (a.type, a.mode, a.uid, a.gid, a.size, a.xattrs, a.target, a.content_id, a.rdev) == (
        b.type,
        b.mode,
        b.uid,
        b.gid,
        b.size,
        b.xattrs,
        b.target,
        b.content_id,
        b.rdev,
    )


def _kept(mapping: Mapping, base: Tree) -> frozenset[int]:
    """The entries the base already holds as they are, owned or not; but a
    hardlink group any of whose paths is written is written whole (its paths
    must stay one inode in the layer that holds them)."""
    assert mapping.tree is not None
    entries = mapping.tree.entries
    kept = set()
    for i, e in enumerate(entries):
        before = base.get(e.path)
        if before is not None and _same(before, e):
            kept.add(i)
    written = {e.hardlink for i, e in enumerate(entries) if i not in kept and e.hardlink}
    return frozenset(i for i in kept if entries[i].hardlink not in written)


def _whiteouts(tree: Tree, base: Tree) -> tuple[str, ...]:
    """Each topmost base path that is gone from ``tree``, or whose kind changed
    between directory and not (the new one is written above the whiteout)."""
    removed: list[str] = []
    below: set[str] = set()
    for e in base.entries:
        if not e.path:
            continue
        if e.path.rpartition("/")[0] in below:
            below.add(e.path)
            continue
        now = tree.get(e.path)
        if now is None or (now.type is EntryType.DIR) != (e.type is EntryType.DIR):
            removed.append(e.path)
            below.add(e.path)
    return tuple(removed)


def above_base(mapping: Mapping, base: Tree) -> AboveBase:
    """What the layers above ``base`` add to the tree ``mapping`` maps: the
    components that own something new, sized by what they own of it, the
    entries the base holds as they are, and the base paths to white out."""
    assert mapping.tree is not None
    tree = mapping.tree
    kept = _kept(mapping, base)
    owners = [-1 if i in kept else o for i, o in enumerate(mapping.owners)]
    sizes, files = component_sizes(tree.entries, owners, len(mapping.components))
    keep = [k for k, n in enumerate(files) if n]
    renumber = {old: new for new, old in enumerate(keep)}
    components = tuple(replace(mapping.components[k], size=sizes[k], files=files[k]) for k in keep)
    above = replace(mapping, components=components, owners=[renumber.get(o, -1) for o in owners])
    return AboveBase(above, _whiteouts(tree, base), kept)
