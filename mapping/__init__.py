"""Stage 1: what is in a tree, who owns each file, how often each owner changes.

In: an OSTree commit (repo + ref or checksum, read through libostree), a root
directory, or a container image's layer blobs (applied in order, never
extracted).  Out: a ``Mapping``: components (package, component, bigfile,
volatile, unpackaged) with sizes and weekly change probabilities, and the owner
of every entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from .errors import DebchunkError, MappingError
from .layers import LayerArchive, LayerMember, LayerStream
from .model import Component, Mapping
from .ownership import map_tree
from .split import split_components, split_packages
from .tree import Entry, EntryType, Tree

__all__ = [
    "Component",
    "DebchunkError",
    "Entry",
    "EntryType",
    "LayerArchive",
    "LayerMember",
    "LayerStream",
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
    repo: str | None = None,
    ref: str | None = None,
    rootfs: str | None = None,
    threads: int | None = None,
    *,
    layers: Sequence[LayerArchive] | None = None,
    workdir: str | None = None,
    description: str | None = None,
) -> Tree:
    """Read an OSTree commit (``repo`` + ``ref``), a root directory
    (``rootfs``) or an image's layer blobs (``layers``, lowest first, spooled
    under ``workdir``; ``description`` names the image in messages)."""
    origins = (repo is not None or ref is not None, rootfs is not None, layers is not None)
    if sum(origins) != 1 or (origins[0] and (repo is None or ref is None)):
        raise MappingError("give exactly one of: a repo and a ref, a rootfs directory, or an image's layers")
    if layers is not None:
        from .layers import LayersTree

        if workdir is None:
            raise MappingError("reading an image's layers needs a work directory to spool them in")
        return LayersTree(description or "image layers", layers, workdir, threads=threads)
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
    layers: Sequence[LayerArchive] | None = None,
    workdir: str | None = None,
    description: str | None = None,
) -> Mapping:
    """Map an OSTree commit, a root directory or an image's layers (see
    ``read_tree`` and ``map_tree``), with its packages split below package level
    (``split_packages``; ``prior``: the component names of the previous
    build's plan, so that a package is split exactly when it was before).
    ``reference_date`` pins the date change rates are counted back from."""
    tree = read_tree(repo, ref, rootfs, threads, layers=layers, workdir=workdir, description=description)
    unsplit = map_tree(tree, reference_date=reference_date)
    return split_packages(unsplit, prior=prior)
