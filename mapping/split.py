"""Split package components below package level where the cost model says it pays.

A Debian upload that only changes the packaging or backports a fix (a new
Debian revision, a security update) rebuilds the binaries but leaves the
architecture-independent data as it was: ``usr/share`` (icons, help, themes,
data files) and translations.  Measured on trixie -> trixie + updates, 64-100% of
those bytes in updated packages were identical, against 6% of binaries.  That
data changes when the *upstream* version changes, which the mapping records as
``upstream_change_probability``.

So a package component ``NAME`` whose upstream version changes less often than
the package does, and whose data is worth a layer's bookkeeping
(``MIN_DATA_BYTES``), becomes ``NAME`` (binaries, libraries, configuration,
documentation: changed by every upload) and ``NAME:data`` (changed with the
upstream version), whose ``part_of`` names ``NAME``: the chunker's cost model
reads that link, never the name.  The packer may still put both parts in one
layer when that is cheaper; splitting only gives it the choice.  The split is
made once, here: ``build_mapping`` returns the split mapping, and the plan and
the image are made from its components and owners as they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .model import Component, Mapping, component_sizes

DATA_SUFFIX = ":data"
# Below this, a data part is not worth a component of its own.
MIN_DATA_BYTES = 256 * 1024


# Under usr/share but changed by a new Debian revision alone, so not data:
# documentation (its changelog changes with every upload); manual pages, which
# most packages generate at build time with the version and date in them
# (pod2man, help2man: of the data parts that changed in the corpus's
# revision-only updates, shadow's, pam's, openssl's and perl's changed there);
# and Perl's modules, which are code: perl's security updates patch them
# (bookworm's 5.36.0-7+deb12u2 changed 35 files there).
_NOT_DATA = ("usr/share/doc/", "usr/share/man/", "usr/share/perl/", "usr/share/perl5/")


def is_data_path(path: str) -> bool:
    """Architecture-independent data: usr/share (but not its documentation,
    manual pages and Perl modules, which change with Debian revisions) and
    translation catalogues."""
    if path.startswith("usr/share/"):
        return not path.startswith(_NOT_DATA)
    return "/locale/" in path and path.endswith(".mo")


def split_components(
    components: Sequence[Component],
    paths: Sequence[str],
    sizes: npt.ArrayLike,
    content_ids: Sequence[str | None],
    owners: npt.ArrayLike,
    min_data_bytes: int = MIN_DATA_BYTES,
    prior: Collection[str] | None = None,
) -> tuple[tuple[Component, ...], npt.NDArray[np.int64]]:
    """Split package components (see the module docstring).

    ``owners[i]`` is the index in ``components`` of the owner of ``paths[i]``
    (-1 for none).  With ``prior`` (the component names of the previous plan),
    a package is split exactly when it was split before, so that a small shift
    in its change rates does not move its files between layers; packages new
    since then are decided afresh.  Returns the new components (each package's
    data part right after it), with sizes and file counts of what they now
    hold, and the new owners array.
    """
    owner = np.array(owners, dtype=np.int64)
    # What each component holds is counted as the mapping counts it.
    rows = [
        _Row(*row) for row in zip(paths, np.asarray(sizes, dtype=np.int64).tolist(), content_ids, strict=True)
    ]
    records = _attach_package_records(components, paths, owner)
    n = len(components)
    data = np.fromiter((is_data_path(p) for p in paths), dtype=bool, count=len(paths))
    was_split = {name.removesuffix(DATA_SUFFIX) for name in prior or () if name.endswith(DATA_SUFFIX)}
    splittable = np.array(
        [
            c.kind == "package"
            and c.part_of is None
            and c.upstream_change_probability is not None
            and (c.upstream_change_probability < c.change_probability or c.name in was_split)
            for c in components
        ]
        + [False],
        dtype=bool,
    )
    safe_owner = np.where(owner < 0, n, owner)
    candidate = data & ~records & splittable[safe_owner]
    data_bytes, _ = component_sizes(rows, np.where(candidate, owner, -1).tolist(), n)
    split = np.array(data_bytes, dtype=np.int64) >= min_data_bytes
    if prior is not None:
        before = set(prior)
        for k, c in enumerate(components):
            if c.name in before and data_bytes[k] > 0:
                split[k] = c.name + DATA_SUFFIX in before
    parts: list[Component] = []
    new_index = np.empty(n + 1, dtype=np.int64)
    new_index[n] = -1
    data_index = np.full(n + 1, -1, dtype=np.int64)
    for k, c in enumerate(components):
        new_index[k] = len(parts)
        parts.append(c)
        if split[k]:
            data_index[k] = len(parts)
            upstream = min(c.upstream_change_probability or 0.0, c.change_probability)
            parts.append(replace(c, name=c.name + DATA_SUFFIX, change_probability=upstream, part_of=c.name))
    result = new_index[safe_owner]
    moved = candidate & (data_index[safe_owner] >= 0)
    result[moved] = data_index[safe_owner[moved]]
    unique, files = component_sizes(rows, result.tolist(), len(parts))
    final = tuple(
        replace(c, size=unique[k], files=files[k]) if (c.size, c.files) != (unique[k], files[k]) else c
        for k, c in enumerate(parts)
    )
    return final, result


class _Row(NamedTuple):
    """One entry, as ``component_sizes`` reads it."""

    path: str
    size: int
    content_id: str | None


# dpkg's per-package records: <admindir>/info/NAME[:ARCH].{list,md5sums,...}.
_INFO = re.compile(r"^(.*)/info/([^/:]+)(?::[^/.]+)?\.[^/.]+$")


def _attach_package_records(
    components: Sequence[Component], paths: Sequence[str], owner: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Give a package's own dpkg records (file list, checksums, maintainer
    scripts) to the package's component, in place: they change exactly when the
    package does, while the rest of the database (``status``) changes whenever
    any package does.  Returns which rows moved."""
    moved = np.zeros(len(paths), dtype=bool)
    dpkg = next((k for k, c in enumerate(components) if c.name == "volatile:dpkg"), None)
    if dpkg is None:
        return moved
    by_package: dict[str, int] = {}
    for k, c in enumerate(components):
        if c.kind == "package":
            for binary in c.packages:
                by_package.setdefault(binary.partition(":")[0], k)
    for i in np.flatnonzero(owner == dpkg).tolist():
        match = _INFO.match(paths[i])
        found = by_package.get(match.group(2)) if match else None
        if found is not None:
            owner[i] = found
            moved[i] = True
    return moved


def split_packages(
    mapping: Mapping, *, prior: Collection[str] | None = None, min_data_bytes: int = MIN_DATA_BYTES
) -> Mapping:
    """The mapping with its package components split (see ``split_components``
    for ``prior``).  A mapping without a tree (read from JSON) or already split
    is returned as it is."""
    if mapping.tree is None or any(c.part_of is not None for c in mapping.components):
        return mapping
    entries = mapping.tree.entries
    components, owners = split_components(
        mapping.components,
        [e.path for e in entries],
        [e.size for e in entries],
        [e.content_id for e in entries],
        mapping.owners,
        min_data_bytes=min_data_bytes,
        prior=prior,
    )
    # The mapping's own order: largest first (as ``map_tree`` sorts).
    order = sorted(range(len(components)), key=lambda k: (-components[k].size, components[k].name))
    position = np.empty(len(components) + 1, dtype=np.int64)
    position[order] = np.arange(len(components))
    position[-1] = -1
    return replace(
        mapping,
        components=tuple(components[k] for k in order),
        owners=position[owners].tolist(),
    )
