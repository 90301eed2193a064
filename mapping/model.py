"""The mapping's value types: ``Component`` and ``Mapping``, with their JSON
form, and ``component_sizes``, the one way components are sized."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .errors import MappingError, show
from .tree import Entry, Tree

Kind = Literal["package", "component", "bigfile", "volatile", "unpackaged"]
KINDS: tuple[Kind, ...] = ("package", "component", "bigfile", "volatile", "unpackaged")

# Component names of the catch-all kinds.
VOLATILE = "volatile"
UNPACKAGED = "unpackaged"
BIGFILE_PREFIX = "bigfile:"


class Counted(Protocol):
    """What ``component_sizes`` reads of an entry (an ``Entry`` has it)."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def content_id(self) -> str | None: ...


def component_sizes(
    entries: Sequence[Counted], owners: Sequence[int], count: int
) -> tuple[list[int], list[int]]:
    """The size in bytes and the file count of each of ``count`` components,
    ``owners[i]`` being the index of the component owning ``entries[i]`` (-1
    for none, as for directories).  A component's size counts each distinct
    content once (by content id, by path for an entry without one: identical
    files cost one blob in a layer); its file count counts every entry."""
    sizes = [0] * count
    files = [0] * count
    seen: set[tuple[int, str]] = set()
    for entry, owner in zip(entries, owners, strict=True):
        if owner < 0:
            continue
        files[owner] += 1
        key = (owner, entry.content_id or entry.path)
        if key not in seen:
            seen.add(key)
            sizes[owner] += entry.size
    return sizes, files


@dataclass(frozen=True, slots=True)
class Component:
    """A set of files that change together.

    ``size`` counts each distinct content once; ``files`` counts non-directory
    entries; ``change_probability`` is the chance it changes in a week, and
    ``upstream_change_probability`` (packages with a changelog) the chance its
    upstream version changes in a week, which is when its architecture-neutral
    data (``usr/share``, translations) tends to change too.  ``part_of``: set on
    the data part of a split package (``mapping.split``), the name of the
    package component it was split from, whose changes include all of its own.
    ``date``: the newest date in its changelog (seconds since 1970), None
    without one; files the package's scripts made at install time are younger,
    and the plain format clamps their mtimes to it.
    """

    name: str
    kind: Kind
    packages: tuple[str, ...] = ()
    version: str | None = None
    size: int = 0
    files: int = 0
    change_probability: float = 0.0
    upstream_change_probability: float | None = None
    part_of: str | None = None
    date: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The component as in ``debchunk map --json`` (``part_of`` only when set)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "packages": list(self.packages),
            "version": self.version,
            "size": self.size,
            "files": self.files,
            "change_probability": self.change_probability,
            "upstream_change_probability": self.upstream_change_probability,
        }
        if self.part_of is not None:
            out["part_of"] = self.part_of
        if self.date is not None:
            out["date"] = self.date
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Component:
        """Read one component of ``debchunk map --json``."""
        try:
            kind = data["kind"]
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
            p = float(data["change_probability"])
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"change_probability {p} is not within [0, 1]")
            upstream = data.get("upstream_change_probability")
            part_of = data.get("part_of")
            date = data.get("date")
            return cls(
                str(data["name"]),
                kind,
                tuple(str(x) for x in data.get("packages", ())),
                data.get("version"),
                int(data["size"]),
                int(data.get("files", 0)),
                p,
                None if upstream is None else float(upstream),
                None if part_of is None else str(part_of),
                None if date is None else int(date),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise MappingError(f"component {data.get('name', '?')!r}: {e}") from None


@dataclass(frozen=True)
class Mapping:
    """Who owns every file of a tree, and how stable each owner is.

    ``owners[i]`` is the index in ``components`` of the owner of
    ``tree.entries[i]``, or -1 for directories, which belong to no component.
    ``architecture`` is the tree's native architecture as its dpkg database
    records it (``mapping.dpkg.Database.architecture``).  A mapping read back
    from JSON has neither tree nor architecture.
    """

    source: str
    admindir: str | None
    reference_date: dt.datetime | None
    components: tuple[Component, ...]
    tree: Tree | None = field(default=None, repr=False, compare=False)
    owners: Sequence[int] = field(default=(), repr=False, compare=False)
    architecture: str | None = field(default=None, compare=False)

    def _index_of(self, name: str) -> int:
        for i, c in enumerate(self.components):
            if c.name == name:
                return i
        raise MappingError(
            f"no component {name!r}", self.source or None, "see 'debchunk map' for the components"
        )

    def component(self, name: str) -> Component:
        """The component called ``name``; MappingError when there is none."""
        return self.components[self._index_of(name)]

    def owner(self, path: str) -> Component | None:
        """The component owning the entry at ``path`` (None for directories);
        MappingError when the mapping has no tree or the tree no such entry."""
        if self.tree is None:
            raise MappingError(
                "the mapping has no tree (it was read from JSON)", self.source or None, "map the tree again"
            )
        where = self.tree.index.get(path)
        if where is None:
            raise MappingError(f"no entry {show(path)!r} in the tree", self.source or None)
        i = self.owners[where]
        return None if i < 0 else self.components[i]

    def files_of(self, name: str) -> list[Entry]:
        """Entries owned by the component called ``name`` (none without a
        tree); MappingError when there is no such component."""
        want = self._index_of(name)
        if self.tree is None:
            return []
        return [e for e, o in zip(self.tree.entries, self.owners, strict=True) if o == want]

    def content_owners(self) -> dict[str, str]:
        """Content id -> owning component name; identical content owned by
        several components goes to the first entry's owner in tree order."""
        result: dict[str, str] = {}
        if self.tree is None:
            return result
        for e, o in zip(self.tree.entries, self.owners, strict=True):
            if o >= 0 and e.content_id is not None:
                result.setdefault(e.content_id, self.components[o].name)
        return result

    def to_json(self) -> dict[str, Any]:
        """The shape of ``debchunk map --json`` (DESIGN.md)."""
        return {
            "source": self.source,
            "admindir": self.admindir,
            "reference_date": self.reference_date.isoformat() if self.reference_date else None,
            "components": [c.to_json() for c in self.components],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mapping:
        """Read ``debchunk map --json`` output back (components only, no tree)."""
        if not isinstance(data, dict) or not isinstance(data.get("components"), list):
            raise MappingError("not a debchunk mapping: it needs a 'components' list")
        ref = data.get("reference_date")
        return cls(
            str(data.get("source", "")),
            data.get("admindir"),
            dt.datetime.fromisoformat(ref) if ref else None,
            tuple(Component.from_json(c) for c in data["components"]),
        )
