"""Splitting packages below package level: which files move, sizes, stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunker import pack
from chunker.split import DATA_SUFFIX, is_data_path, split_components, split_mapping
from mapping import Component, build_mapping
from tests.sample import Pkg, SampleTree, blob, day


def test_data_paths() -> None:
    assert is_data_path("usr/share/icons/hicolor/48x48/apps/x.png")
    assert is_data_path("usr/lib/x86_64-linux-gnu/foo/locale/de/LC_MESSAGES/foo.mo")
    assert not is_data_path("usr/share/doc/foo/changelog.Debian.gz")
    assert not is_data_path("usr/lib/x86_64-linux-gnu/libfoo.so.1")
    assert not is_data_path("usr/bin/foo")


def _comps() -> list[Component]:
    return [
        Component("foo", "package", ("foo",), "1-1", 600, 3, 0.2, 0.01),
        Component("bar", "package", ("bar",), "1-1", 300, 2, 0.2, 0.2),  # upstream as often: no split
        Component("volatile:dpkg", "volatile", size=30, files=2, change_probability=1.0),
    ]


PATHS = [
    "usr/bin/foo",
    "usr/share/foo/a",
    "usr/share/foo/b",
    "usr/bin/bar",
    "usr/share/bar/x",
    "usr/share/dpkg/database/status",
    "usr/share/dpkg/database/info/foo.list",
]
SIZES = [100, 300, 200, 100, 200, 20, 10]
IDS = ["f", "a", "b", "r", "x", "s", "l"]
OWNERS = [0, 0, 0, 1, 1, 2, 2]


def test_split_moves_data_and_records() -> None:
    comps, owners = split_components(_comps(), PATHS, SIZES, IDS, OWNERS, min_data_bytes=400)
    names = [c.name for c in comps]
    assert names == ["foo", "foo:data", "bar", "volatile:dpkg"]
    by = {c.name: c for c in comps}
    assert [names[o] for o in owners] == ["foo", "foo:data", "foo:data", "bar", "bar", "volatile:dpkg", "foo"]
    # Sizes and counts are what each part now holds; the data part changes with upstream.
    assert (by["foo"].size, by["foo"].files) == (110, 2)
    assert (by["foo:data"].size, by["foo:data"].files, by["foo:data"].change_probability) == (500, 2, 0.01)
    assert (by["volatile:dpkg"].size, by["volatile:dpkg"].files) == (20, 1)
    assert sum(c.size for c in comps) == sum(SIZES)


def test_small_data_is_not_split_and_prior_wins() -> None:
    comps, _ = split_components(_comps(), PATHS, SIZES, IDS, OWNERS, min_data_bytes=10_000)
    assert "foo:data" not in [c.name for c in comps]
    # A prior plan that had foo split keeps it split, whatever the threshold says ...
    comps, _ = split_components(_comps(), PATHS, SIZES, IDS, OWNERS, 10_000, prior=["foo", "foo:data", "bar"])
    assert "foo:data" in [c.name for c in comps]
    # ... and one that had it whole keeps it whole.
    comps, owners = split_components(_comps(), PATHS, SIZES, IDS, OWNERS, 1, prior=["foo", "bar"])
    assert "foo:data" not in [c.name for c in comps]
    assert np.all(owners >= 0)


def test_split_mapping_on_a_tree(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(
        Pkg(
            "icons",
            "2.0-1+deb13u1",
            changelog=[day(0), day(20)],
            changelog_versions=["2.0-1+deb13u1", "2.0-1"],
            files={
                "/usr/bin/icon-tool": blob("tool", 50_000),
                "/usr/share/icons/big.png": blob("png", 2_000_000),
            },
        )
    )
    m = build_mapping(rootfs=str(t.finish()))
    s = split_mapping(m)
    assert s.owner("usr/share/icons/big.png").name == "icons" + DATA_SUFFIX  # type: ignore[union-attr]
    assert s.owner("usr/bin/icon-tool").name == "icons"  # type: ignore[union-attr]
    assert s.owner("usr/share/dpkg/database/info/icons.list").name == "icons"  # type: ignore[union-attr]
    data = s.component("icons" + DATA_SUFFIX)
    assert data.size == 2_000_000 and data.change_probability < s.component("icons").change_probability
    plan = pack(s.components, 8)
    assert {"icons", "icons:data"} <= set(plan.layer_index())
