"""Splitting packages below package level: which files move, sizes, stability."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from chunker import layer_of_entries, pack
from chunker.cost import Events
from mapping import Component, Mapping, RootfsOrigin, build_mapping, map_tree, read_tree, split_packages
from mapping.split import DATA_SUFFIX, is_data_path, split_components
from tests.sample import Pkg, SampleTree, blob, build_sample, day


def test_data_paths() -> None:
    assert is_data_path("usr/share/icons/hicolor/48x48/apps/x.png")
    assert is_data_path("usr/lib/x86_64-linux-gnu/foo/locale/de/LC_MESSAGES/foo.mo")
    assert not is_data_path("usr/share/doc/foo/changelog.Debian.gz")
    assert not is_data_path("usr/lib/x86_64-linux-gnu/libfoo.so.1")
    assert not is_data_path("usr/bin/foo")
    # Changed by Debian revisions alone in the corpus (docs/layers.md): manual
    # pages carry the build's version and date, Perl modules are code.
    assert not is_data_path("usr/share/man/man1/shadow.1.gz")
    assert not is_data_path("usr/share/man/de/man8/pam.8.gz")
    assert not is_data_path("usr/share/perl/5.36.0/Config_heavy.pl")
    assert not is_data_path("usr/share/perl5/Debconf/Config.pm")
    assert is_data_path("usr/share/perl-openssl-defaults/x")  # a name that only starts the same
    assert is_data_path("usr/share/mandoc/x")


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
    # The data part names its package; nothing else is part of another.
    assert {c.name: c.part_of for c in comps if c.part_of} == {"foo:data": "foo"}
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
    root = t.finish()
    s = build_mapping(RootfsOrigin(str(root)))
    assert s.owner("usr/share/icons/big.png").name == "icons" + DATA_SUFFIX  # type: ignore[union-attr]
    assert s.owner("usr/bin/icon-tool").name == "icons"  # type: ignore[union-attr]
    assert s.owner("usr/share/dpkg/database/info/icons.list").name == "icons"  # type: ignore[union-attr]
    data = s.component("icons" + DATA_SUFFIX)
    assert data.part_of == "icons"
    assert data.size == 2_000_000 and data.change_probability < s.component("icons").change_probability
    plan = pack(s.components, 8)
    assert {"icons", "icons:data"} <= set(plan.layer_index())
    # The unsplit mapping (map_tree) split by split_packages is build_mapping's.
    unsplit = map_tree(read_tree(RootfsOrigin(str(root))))
    assert "icons:data" not in [c.name for c in unsplit.components]
    again = split_packages(unsplit)
    assert again.components == s.components and list(again.owners) == list(s.owners)
    # Splitting a split mapping changes nothing.
    assert split_packages(s) is s
    # A prior plan that had icons whole keeps it whole.
    whole = build_mapping(RootfsOrigin(str(root)), prior=["icons", "volatile:dpkg"])
    assert "icons:data" not in [c.name for c in whole.components]
    assert whole.owner("usr/share/icons/big.png").name == "icons"  # type: ignore[union-attr]


def test_map_json_carries_the_split(tmp_path: Path) -> None:
    m = build_mapping(RootfsOrigin(str(build_sample(tmp_path / "t"))))
    links = {c.name: c.part_of for c in m.components if c.part_of is not None}
    assert links == {"glibc:data": "glibc"}
    back = Mapping.from_json(m.to_json())
    assert back.components == m.components
    assert back.component("glibc:data").part_of == "glibc"
    for n in (2, 4, 8, 64):
        assert pack(back.components, n) == pack(m.components, n)
    # Without the link, the cost model treats the parts as independent: the
    # shared upstream change is then counted twice in a layer holding both.
    names = {c.name: i for i, c in enumerate(m.components)}
    both = [names["glibc"], names["glibc:data"]]
    linked = Events.for_components(m.components).log_keep(both)
    independent = Events.for_components([replace(c, part_of=None) for c in m.components]).log_keep(both)
    assert linked > independent


def test_owners_point_at_the_split_components(tmp_path: Path) -> None:
    # The image writer takes the mapping's owners as they are: the data part
    # must own the package's usr/share files, and every owner must be a
    # component of the plan made from the mapping.
    m = build_mapping(RootfsOrigin(str(build_sample(tmp_path / "t"))))
    assert m.tree is not None
    data = [i for i, c in enumerate(m.components) if c.name == "glibc:data"]
    assert len(data) == 1
    owned = [e for e, o in zip(m.tree.entries, m.owners, strict=True) if o == data[0]]
    assert owned and all(is_data_path(e.path) for e in owned)
    assert sum(e.size for e in owned) == m.component("glibc:data").size
    assert len(m.files_of("glibc:data")) == m.component("glibc:data").files == len(owned)
    plan = pack(m.components, 6)
    layers = layer_of_entries(plan, [c.name for c in m.components], m.owners)
    for e, o, k in zip(m.tree.entries, m.owners, layers.tolist(), strict=True):
        assert (o < 0) == (k < 0), e.path
    # Files and sizes add up per component, as the mapping counts them.
    for k, c in enumerate(m.components):
        assert sum(1 for o in m.owners if o == k) == c.files, c.name
