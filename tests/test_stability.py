"""mapping.stability: change probabilities, the reference date, and the date
alone (``newest_change_date``) read quietly without mapping the tree."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mapping import CommitOrigin, MappingError, RootfsOrigin, map_tree, newest_change_date, read_tree
from mapping.changelog import DEFAULT_CHANGE_PROBABILITY, probability
from mapping.model import Kind
from mapping.stability import (
    UNPACKAGED_CHANGE_PROBABILITY,
    VOLATILE_CHANGE_PROBABILITY,
    change_probabilities,
    changelog_paths,
    interval_probability,
    stable_release,
    update_interval_days,
)
from mapping.tree import Tree
from tests.sample import Pkg, SampleTree, commit, day


def _quirky(root: Path) -> Path:
    """A tree whose newest changelog date is one the mapping does not read
    (the second binary of a source), with a damaged ``status`` paragraph and
    an unreadable changelog, both of which the mapping warns about."""
    t = SampleTree(root)
    # Of a source's binaries, the first with a changelog (by name) is read:
    # foo-bin's (day 10), never libfoo's newer one (day 0).
    t.add(Pkg("foo-bin", source="foo", files={"/usr/bin/foo": b"f"}, changelog=[day(10), day(50)]))
    t.add(Pkg("libfoo", source="foo", files={"/usr/lib/libfoo.so": b"l"}, changelog=[day(0)]))
    t.add(Pkg("bar", files={"/usr/bin/bar": b"b"}, changelog=[day(20)]))
    t.add(Pkg("broken-log", files={"/usr/bin/broken": b"x"}, changelog=[day(1)]))
    tree = t.finish()
    (tree / "usr/share/doc/broken-log/changelog.Debian.gz").write_bytes(b"not gzip at all")
    status = tree / t.admindir / "status"
    status.write_text(status.read_text() + "\nPackage: damaged\nStatus: install ok installed\n")
    return tree


def test_newest_change_date_is_the_mappings_reference_and_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _quirky(tmp_path / "t")
    caplog.set_level(logging.DEBUG)
    mapped = map_tree(read_tree(RootfsOrigin(str(root))))
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("damaged" in m for m in warned) and any("unreadable changelog" in m for m in warned)
    assert mapped.reference_date == day(10)
    tree = read_tree(RootfsOrigin(str(root)))
    caplog.clear()
    assert newest_change_date(tree) == mapped.reference_date
    assert caplog.records == []
    # Through libostree the same.
    commit(root, tmp_path / "repo", "quirky")
    by_commit = read_tree(CommitOrigin(str(tmp_path / "repo"), "quirky"))
    assert newest_change_date(by_commit) == day(10)
    assert caplog.records == []


def test_newest_change_date_on_the_sample(sample_tree: Path, sample_repos: dict[str, Path]) -> None:
    by_commit = read_tree(CommitOrigin(str(sample_repos["archive"]), "sample"))
    for tree in (read_tree(RootfsOrigin(str(sample_tree))), by_commit):
        reference = map_tree(tree).reference_date
        assert reference == day(0)
        found = newest_change_date(tree)
        assert found == reference and found is not None
        assert found.isoformat() == reference.isoformat()  # the same offset too


def test_newest_change_date_reads_only_status_and_changelogs(
    sample_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = read_tree(RootfsOrigin(str(sample_tree)))
    read: list[str] = []
    original = tree.read_bytes

    def recording(path: str, limit: int | None = None) -> bytes | None:
        read.append(path)
        return original(path, limit)

    monkeypatch.setattr(tree, "read_bytes", recording)
    assert newest_change_date(tree) == day(0)
    assert read and all(p.endswith("/status") or "/changelog" in p for p in read), read
    assert read[0] == "usr/share/dpkg/database/status"


def test_newest_change_date_without_database_or_changelogs(tmp_path: Path) -> None:
    (tmp_path / "bare/usr/bin").mkdir(parents=True)
    (tmp_path / "bare/usr/bin/x").write_bytes(b"x")
    assert newest_change_date(read_tree(RootfsOrigin(str(tmp_path / "bare")))) is None
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("nolog", files={"/usr/bin/nolog": b"n"}))
    root = t.finish()
    assert newest_change_date(read_tree(RootfsOrigin(str(root)))) is None
    assert map_tree(read_tree(RootfsOrigin(str(root)))).reference_date is None


@dataclass
class _Owner:
    name: str
    kind: Kind
    changelogs: list[str] = field(default_factory=list)
    interval_days: int | None = None


def test_probabilities_by_kind_and_the_database(tmp_path: Path) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("alpha", files={"/usr/bin/a": b"a"}, changelog=[day(0), day(100)]))
    t.add(Pkg("beta", files={"/usr/bin/b": b"b"}, changelog=[day(30)]))
    tree = read_tree(RootfsOrigin(str(t.finish())))
    owners = [
        _Owner("alpha", "package", changelog_paths("alpha")),
        _Owner("beta", "package", changelog_paths("beta")),
        _Owner("nolog", "package", changelog_paths("nolog")),
        _Owner("volatile", "volatile"),
        _Owner("volatile:dpkg", "volatile"),
        _Owner("unpackaged", "unpackaged"),
        _Owner("fonts", "component", interval_days=14),
        # A user.update-interval wins over the changelog of a same-named source.
        _Owner("beta-ish", "component", changelog_paths("beta"), interval_days=365),
    ]
    result, reference = change_probabilities(tree, owners)
    assert reference == day(0)
    alpha, beta = result["alpha"], result["beta"]
    assert alpha.change_probability == pytest.approx(1 - math.exp(-7 * 2.5 / 365))
    assert beta.change_probability == pytest.approx(1 - math.exp(-7 * 1.5 / 365))
    assert alpha.date == int(day(0).timestamp()) and beta.date == int(day(30).timestamp())
    assert result["nolog"].change_probability == DEFAULT_CHANGE_PROBABILITY
    assert result["nolog"].date is None and result["nolog"].upstream_change_probability is None
    assert result["volatile"].change_probability == VOLATILE_CHANGE_PROBABILITY == 1.0
    assert result["unpackaged"].change_probability == UNPACKAGED_CHANGE_PROBABILITY
    assert result["fonts"].change_probability == pytest.approx(1 - math.exp(-7 / 14))
    assert result["beta-ish"].change_probability == pytest.approx(1 - math.exp(-7 / 365))
    assert result["beta-ish"].date == beta.date
    # The database changes when any package does.
    keep = (1 - alpha.change_probability) * (1 - beta.change_probability) * (1 - DEFAULT_CHANGE_PROBABILITY)
    assert result["volatile:dpkg"].change_probability == pytest.approx(1 - keep)
    # A pinned reference is used as it is.
    pinned = day(0) + dt.timedelta(days=300)
    result, reference = change_probabilities(tree, owners, pinned)
    assert reference == pinned
    assert result["alpha"].change_probability == pytest.approx(1 - math.exp(-7 * 1.5 / 365))


def test_update_intervals() -> None:
    assert update_interval_days(b"weekly", "x") == 7
    assert update_interval_days(b" 30\n", "x") == 30
    for bad in (b"often", b"0", b"-3", b"1.5", b""):
        with pytest.raises(MappingError, match="is not a number of days") as e:
            update_interval_days(bad, "opt/x")
        assert e.value.where == "opt/x"
    assert interval_probability(7) == pytest.approx(1 - math.exp(-1))
    # The same model as a changelog's: N changes a year is an update every 365/N days.
    assert interval_probability(365 // 4) == pytest.approx(probability(365 / (365 // 4)))


def test_stable_release_from_os_release(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()

    def stable() -> bool:
        tree: Tree = read_tree(RootfsOrigin(str(root)))
        return stable_release(tree)

    assert not stable()
    (root / "usr/lib/os-release").write_bytes(b'PRETTY_NAME="Debian GNU/Linux forky/sid"\n')
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    assert not stable()
    (root / "usr/lib/os-release").write_bytes(b'NAME="Debian"\nVERSION_ID="13"\n')
    assert stable()
