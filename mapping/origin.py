"""Where a tree comes from, and reading it.

In: an ``Origin``: an OSTree commit (``CommitOrigin``), a root directory
(``RootfsOrigin``) or a container image's layer blobs (``LayersOrigin``).
Out: the ``Tree`` it holds (``read_tree``), every entry with a way to open its
content.  Only the commit reader imports libostree (gi), and only when a
commit is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MappingError
from .layers import LayerArchive
from .tree import Tree


@dataclass(frozen=True)
class CommitOrigin:
    """An OSTree commit: ``ref`` (a ref or a checksum) in the repository ``repo``."""

    repo: str
    ref: str


@dataclass(frozen=True)
class RootfsOrigin:
    """A root directory, read with lstat (symlinks never followed)."""

    path: str


@dataclass(frozen=True)
class LayersOrigin:
    """A container image's layer blobs, lowest first, applied in order
    (whiteouts, opaque directories, hardlinks across layers) and spooled under
    ``workdir``; never extracted.  ``description`` names the image in messages."""

    layers: tuple[LayerArchive, ...]
    workdir: str
    description: str = "image layers"

    def below(self, count: int, workdir: str, description: str) -> LayersOrigin:
        """The tree of the lowest ``count`` layers alone (a base image's), spooled under ``workdir``."""
        return LayersOrigin(self.layers[:count], workdir, description)


Origin = CommitOrigin | RootfsOrigin | LayersOrigin


def read_tree(origin: Origin, threads: int | None = None) -> Tree:
    """The tree ``origin`` holds; ``threads`` hash or read content in parallel."""
    if isinstance(origin, LayersOrigin):
        from .layers import LayersTree

        if not origin.layers:
            raise MappingError("an image origin needs at least one layer", where=origin.description)
        return LayersTree(origin.description, list(origin.layers), origin.workdir, threads=threads)
    if isinstance(origin, RootfsOrigin):
        from .rootfs import RootfsTree

        if not origin.path:
            raise MappingError("a root directory origin needs a path")
        return RootfsTree(origin.path, threads=threads)
    if isinstance(origin, CommitOrigin):
        from .commit import CommitTree

        if not origin.repo or not origin.ref:
            raise MappingError("a commit origin needs a repository and a ref")
        return CommitTree(origin.repo, origin.ref, threads=threads)
    raise MappingError(f"origin {origin!r}: give a CommitOrigin, a RootfsOrigin or a LayersOrigin")
