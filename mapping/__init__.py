"""Stage 1: what is in a tree, who owns each file, how often each owner changes.

In: an OSTree commit (repo + ref or checksum, read through libostree) or a root
directory.  Out: a ``Mapping``: components (package, component, bigfile,
volatile, unpackaged) with sizes and weekly change probabilities, and the owner
of every entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from .errors import DebchunkError, MappingError
from .model import Component, Mapping
from .ownership import map_tree
from .split import split_components, split_packages
from .tree import Entry, EntryType, Tree

__all__ = [
    "Component",
    "DebchunkError",
    "Entry",
    "EntryType",
    "Mapping",
    "MappingError",
    "Tree",
    "build_mapping",
    "map_tree",
    "read_tree",
    "split_components",
    "split_packages",
]


def read_tree(
    repo: str | None = None, ref: str | None = None, rootfs: str | None = None, threads: int | None = None
) -> Tree:
    """Read an OSTree commit (``repo`` + ``ref``) or a root directory (``rootfs``)."""
    if (rootfs is None) == (repo is None or ref is None):
        raise MappingError("give either a repo and a ref, or a rootfs directory")
    if rootfs is not None:
        from .rootfs import RootfsTree

        return RootfsTree(rootfs, threads=threads)
    from .commit import CommitTree

    assert repo is not None and ref is not None
    return CommitTree(repo, ref, threads=threads)


def build_mapping(
    repo: str | None = None,
    ref: str | None = None,
    rootfs: str | None = None,
    *,
    reference_date: dt.datetime | None = None,
    threads: int | None = None,
    prior: Collection[str] | None = None,
) -> Mapping:
    """Map an OSTree commit or a root directory (see ``read_tree`` and
    ``map_tree``), with its packages split below package level
    (``split_packages``; ``prior``: the component names of the previous
    build's plan, so that a package is split exactly when it was before).
    ``reference_date`` pins the date change rates are counted back from."""
    unsplit = map_tree(read_tree(repo, ref, rootfs, threads), reference_date=reference_date)
    return split_packages(unsplit, prior=prior)
