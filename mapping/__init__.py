"""Stage 1: what is in a tree, who owns each file, how often each owner changes.

In: an OSTree commit (repo + ref or checksum, read through libostree), a root
directory, or a container image's layer blobs (applied in order, never
extracted).  Out: a ``Mapping``: components (package, component, bigfile,
volatile, unpackaged) with sizes and weekly change probabilities, and the owner
of every entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from .base import AboveBase, above_base
from .errors import DebchunkError, MappingError, MissingLibostreeError
from .layers import LayerArchive, LayerMember, LayerStream, verify_layer
from .model import Component, Mapping, component_sizes
from .origin import CommitOrigin, LayersOrigin, Origin, RootfsOrigin, read_tree
from .ownership import map_tree
from .split import split_components, split_packages
from .stability import newest_change_date
from .tree import Entry, EntryType, Tree

__all__ = [
    "AboveBase",
    "CommitOrigin",
    "Component",
    "DebchunkError",
    "Entry",
    "EntryType",
    "LayerArchive",
    "LayerMember",
    "LayerStream",
    "LayersOrigin",
    "Mapping",
    "MappingError",
    "MissingLibostreeError",
    "Origin",
    "RootfsOrigin",
    "Tree",
    "above_base",
    "build_mapping",
    "component_sizes",
    "map_tree",
    "newest_change_date",
    "read_tree",
    "split_components",
    "split_packages",
    "verify_layer",
]


def build_mapping(
    origin: Origin,
    *,
    reference_date: dt.datetime | None = None,
    threads: int | None = None,
    prior: Collection[str] | None = None,
) -> Mapping:
    """Map the tree ``origin`` holds (see ``read_tree`` and ``map_tree``), with
    its packages split below package level (``split_packages``; ``prior``: the
    component names of the previous build's plan, so that a package is split
    exactly when it was before).  ``reference_date`` pins the date change rates
    are counted back from."""
    unsplit = map_tree(read_tree(origin, threads), reference_date=reference_date)
    return split_packages(unsplit, prior=prior)
