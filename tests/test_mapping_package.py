"""mapping/__init__.py: ``build_mapping`` reads an origin once and splits
its packages as the previous build did; the stage's public names."""

from __future__ import annotations

from pathlib import Path

import mapping
from mapping import RootfsOrigin, build_mapping, map_tree, read_tree, split_packages


def test_build_mapping_is_read_map_and_split(sample_tree: Path) -> None:
    origin = RootfsOrigin(str(sample_tree))
    whole = build_mapping(origin)
    step_by_step = split_packages(map_tree(read_tree(origin)))
    assert whole.to_json() == step_by_step.to_json()
    assert whole.content_owners() == step_by_step.content_owners()
    assert any(c.part_of for c in whole.components), "the sample has a split package"


def test_a_prior_keeps_packages_whole_as_they_were(sample_tree: Path) -> None:
    origin = RootfsOrigin(str(sample_tree))
    split = build_mapping(origin)
    parts = {c.part_of for c in split.components if c.part_of}
    # A previous build that had the packages whole keeps them whole.
    whole = build_mapping(origin, prior=[c.name for c in split.components if not c.part_of])
    assert not any(c.part_of for c in whole.components)
    assert parts <= {c.name for c in whole.components}


def test_public_names() -> None:
    for name in mapping.__all__:
        assert getattr(mapping, name) is not None, name
    assert {"Origin", "read_tree", "build_mapping", "above_base", "newest_change_date"} <= set(
        mapping.__all__
    )
