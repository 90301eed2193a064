"""mapping.model: component sizes, the value types and their JSON form."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mapping import (
    Component,
    Entry,
    EntryType,
    Mapping,
    MappingError,
    RootfsOrigin,
    build_mapping,
    component_sizes,
)


def _file(path: str, size: int, content_id: str | None) -> Entry:
    return Entry(path, EntryType.FILE, 0o644, 0, 0, size, content_id=content_id)


def test_shared_content_counts_once_per_component() -> None:
    entries = [
        _file("a/one", 100, "x"),
        _file("a/two", 100, "x"),  # the same content again, in the same component
        _file("b/one", 100, "x"),  # and in another component: counted there too
        _file("b/other", 7, "y"),
        _file("b/no-id", 5, None),  # no content id: counted by path
        _file("b/no-id-2", 5, None),
        _file("c/unowned", 1000, "z"),
    ]
    owners = [0, 0, 1, 1, 1, 1, -1]
    sizes, files = component_sizes(entries, owners, 3)
    assert sizes == [100, 100 + 7 + 5 + 5, 0]
    assert files == [2, 4, 0]
    with pytest.raises(ValueError):
        component_sizes(entries, owners[:-1], 3)


def test_the_mapping_and_its_split_are_sized_by_it(sample_tree: Path) -> None:
    mapping = build_mapping(RootfsOrigin(str(sample_tree)))
    assert mapping.tree is not None
    sizes, files = component_sizes(mapping.tree.entries, mapping.owners, len(mapping.components))
    assert sizes == [c.size for c in mapping.components]
    assert files == [c.files for c in mapping.components]
    assert any(c.part_of for c in mapping.components)  # the split parts too
    # Directories belong to no component.
    assert all(o == -1 for e, o in zip(mapping.tree, mapping.owners, strict=True) if e.type is EntryType.DIR)


def test_component_json_round_trip_and_errors() -> None:
    full = Component("glibc:data", "package", ("libc6",), "2.41-12", 10, 2, 0.1, 0.05, "glibc", 1_700_000_000)
    assert Component.from_json(full.to_json()) == full
    bare = Component("unpackaged", "unpackaged", size=3, files=1, change_probability=0.5)
    # Part and date only when set.
    assert set(full.to_json()) - set(bare.to_json()) == {"part_of", "date"}
    assert Component.from_json(bare.to_json()) == bare
    for bad, message in (
        ({**bare.to_json(), "kind": "other"}, "kind 'other' is not one of"),
        ({**bare.to_json(), "change_probability": 1.5}, "not within"),
        ({"name": "x", "kind": "package"}, "'x'"),
    ):
        with pytest.raises(MappingError, match=message):
            Component.from_json(bad)


def test_mapping_json_and_lookups(sample_tree: Path) -> None:
    mapping = build_mapping(RootfsOrigin(str(sample_tree)))
    back = Mapping.from_json(mapping.to_json())
    assert back.components == mapping.components
    assert back.reference_date == mapping.reference_date and back.admindir == mapping.admindir
    assert back.tree is None and back.architecture is None
    assert set(mapping.to_json()) == {"source", "admindir", "reference_date", "components"}
    with pytest.raises(MappingError, match="needs a 'components' list"):
        Mapping.from_json({"source": "x"})
    owners = mapping.content_owners()
    assert mapping.tree is not None
    libc = mapping.tree.get("usr/lib/x86_64-linux-gnu/libc.so.6")
    assert libc is not None and libc.content_id is not None
    assert owners[libc.content_id] == "glibc"
    assert [e.path for e in mapping.files_of("app")] == ["opt/app/bin/app", "opt/app/current"]
    # Fields beyond the JSON do not make two mappings differ.
    assert dataclasses.replace(mapping, architecture="arm64") == mapping
