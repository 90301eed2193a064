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
upstream version).  The packer may still put both parts in one layer when
that is cheaper; splitting only gives it the choice.  The rule is a function of
the path, so the encapsulator applies exactly the split the plan was made with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from mapping import Component, Mapping

DATA_SUFFIX = ":data"
# Below this, a data part is not worth a component of its own.
MIN_DATA_BYTES = 256 * 1024


def is_data_path(path: str) -> bool:
    """Architecture-independent data: usr/share (but not its docs, whose
    changelog changes with every upload) and translation catalogues."""
    if path.startswith("usr/share/"):
        return not path.startswith("usr/share/doc/")
    return "/locale/" in path and path.endswith(".mo")


def split_components(
    components: Sequence[Component],
    paths: Sequence[str],
    sizes: npt.ArrayLike,
    content_ids: Sequence[str | None],
    owners: npt.ArrayLike,
    min_data_bytes: int = MIN_DATA_BYTES,
) -> tuple[tuple[Component, ...], npt.NDArray[np.int64]]:
    """Split package components (see the module docstring).

    ``owners[i]`` is the index in ``components`` of the owner of ``paths[i]``
    (-1 for none).  Returns the new components (each package's data part right
    after it) and the new owners array.
    """
    owner = np.asarray(owners, dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)
    data = np.fromiter((is_data_path(p) for p in paths), dtype=bool, count=len(paths))
    splittable = np.array(
        [
            c.kind == "package"
            and c.upstream_change_probability is not None
            and c.upstream_change_probability < c.change_probability
            for c in components
        ]
        + [False],
        dtype=bool,
    )
    candidate = data & splittable[np.where(owner < 0, len(components), owner)]
    # Unique content per (component, part), as the mapping counts it.
    data_bytes = np.zeros(len(components), dtype=np.int64)
    seen: set[tuple[int, str]] = set()
    for i in np.flatnonzero(candidate).tolist():
        key = (int(owner[i]), content_ids[i] or paths[i])
        if key not in seen:
            seen.add(key)
            data_bytes[owner[i]] += size[i]
    split = data_bytes >= min_data_bytes
    if not split.any():
        return tuple(components), owner
    new: list[Component] = []
    new_index = np.empty(len(components), dtype=np.int64)
    data_index = np.full(len(components), -1, dtype=np.int64)
    moved = candidate & split[np.where(owner < 0, 0, owner)] & (owner >= 0)
    files = np.bincount(owner[moved], minlength=len(components))
    for k, c in enumerate(components):
        new_index[k] = len(new)
        if not split[k]:
            new.append(c)
            continue
        upstream = c.upstream_change_probability
        assert upstream is not None
        new.append(replace(c, size=c.size - int(data_bytes[k]), files=c.files - int(files[k])))
        data_index[k] = len(new)
        new.append(
            replace(
                c,
                name=c.name + DATA_SUFFIX,
                size=int(data_bytes[k]),
                files=int(files[k]),
                change_probability=upstream,
            )
        )
    result = np.where(owner < 0, -1, new_index[np.where(owner < 0, 0, owner)])
    result[moved] = data_index[owner[moved]]
    return tuple(new), result


def split_mapping(mapping: Mapping, min_data_bytes: int = MIN_DATA_BYTES) -> Mapping:
    """The mapping with its package components split (needs the tree)."""
    if mapping.tree is None:
        return mapping
    entries = mapping.tree.entries
    components, owners = split_components(
        mapping.components,
        [e.path for e in entries],
        [e.size for e in entries],
        [e.content_id for e in entries],
        mapping.owners,
        min_data_bytes,
    )
    return replace(mapping, components=components, owners=owners.tolist())
