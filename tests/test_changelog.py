"""mapping.changelog: change dates and upstream versions read from Debian
changelogs, and the rate and probability model built on them."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import math
from pathlib import Path

import pytest

from mapping import RootfsOrigin, changelog, read_tree
from mapping.changelog import (
    CHANGES_PRIOR,
    CVE_WEIGHT,
    WINDOW_DAYS,
    changes_per_year,
    count_cves,
    newest_change,
    probability,
    read_history,
    read_history_and_cves,
    security_factor,
    security_weighted,
    upstream_version,
)
from mapping.tree import Tree
from tests.sample import changelog_text, day

PATH = "usr/share/doc/foo/changelog.Debian.gz"


def _tree(tmp_path: Path, data: bytes) -> Tree:
    doc = tmp_path / "t/usr/share/doc/foo"
    doc.mkdir(parents=True)
    (doc / "changelog.Debian.gz").write_bytes(data)
    return read_tree(RootfsOrigin(str(tmp_path / "t")))


def test_history_newest_first_with_upstream_changes(tmp_path: Path) -> None:
    # Written out of order (a backport's entry dated later), and past the window.
    entries = [
        ("1:2.0-1", day(10)),
        ("1:1.9-3", day(0)),
        ("1:1.9-2+deb13u1", day(60)),
        ("1:1.9-2", day(300)),
        ("1:1.8-1", day(400)),
        ("1:1.7-1", day(800)),
    ]
    tree = _tree(tmp_path, gzip.compress(changelog_text("foo", entries)))
    history = read_history(tree, PATH)
    assert history is not None
    assert [c.date for c in history] == [day(0), day(10), day(60), day(300), day(400)]
    # Each entry against the one below it in date order: only 2.0-1 and 1.9-2
    # (after 1.8-1, the first entry past the window, whose version is still read)
    # bring a new upstream version.
    assert [c.upstream for c in history] == [True, True, False, True, True]
    assert newest_change(tree, PATH) == day(0)
    assert read_history(tree, "usr/share/doc/none/changelog.gz") is None
    assert newest_change(tree, "usr/share/doc/none/changelog.gz") is None


def test_unreadable_changelog_warns_only_when_read_for_the_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = _tree(tmp_path, gzip.compress(changelog_text("foo", [("1.0-1", day(0))]))[:30])
    caplog.set_level(logging.DEBUG)
    assert newest_change(tree, PATH) is None
    assert count_cves(tree, PATH) == 0
    assert caplog.records == []
    assert read_history(tree, PATH) is None
    (record,) = caplog.records
    assert PATH in record.getMessage() and "unreadable changelog" in record.getMessage()


def test_history_and_cves_read_once_are_what_each_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = [(f"1.{k}-1", day(30 * k)) for k in range(20)]
    text = changelog_text("foo", entries).replace(
        b"  * Change.", b"  * Fix CVE-2026-1234 and CVE-2026-12345.", 3
    )
    text += b"foo (0.1-1) unstable; urgency=low\n\n  * CVE-2001-0001 (old, past the window).\n\n"
    whole = gzip.compress(text)
    tree = _tree(tmp_path / "whole", whole)
    assert read_history_and_cves(tree, PATH) == (read_history(tree, PATH), count_cves(tree, PATH))
    assert read_history_and_cves(tree, PATH)[1] == 3
    # Damaged past the entries the history needs: the history as read_history
    # reads it, no CVEs (count_cves reads the whole file), and no warning.
    cut = _tree(tmp_path / "cut", whole[: len(whole) - 40])
    caplog.set_level(logging.DEBUG)
    history, cves = read_history_and_cves(cut, PATH)
    assert history is not None and history == read_history(tree, PATH)
    assert cves == count_cves(cut, PATH) == 0
    assert caplog.records == []
    assert read_history_and_cves(tree, "usr/share/doc/none/changelog.gz") == (None, 0)


def test_a_changelog_is_read_only_as_far_as_its_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changelog comes from the tree, maybe a hostile one: what it inflates
    to, one line of it and its gzip'd size are bounded, and past a bound it
    reads as if damaged there."""
    monkeypatch.setattr(changelog, "MAX_INFLATED_BYTES", 1 << 20)
    head = changelog_text("foo", [("1.0-1", day(0))]).replace(b"Change.", b"Fix CVE-2026-0001.")
    bomb = gzip.compress(head + b"x" * (64 << 20) + b"\n  * Fix CVE-2026-0002.\n")
    assert len(bomb) < 100_000
    tree = _tree(tmp_path / "bomb", bomb)
    history, cves = read_history_and_cves(tree, PATH)
    assert history is not None and [c.date for c in history] == [day(0)]
    assert cves == 1  # the second CVE is past the bound
    # One line of 64 MB: read in pieces up to the bound, never whole; the
    # entry after it is past the bound.
    line = gzip.compress(b"x" * (64 << 20) + b"\n" + head)
    assert read_history(_tree(tmp_path / "line", line), PATH) == []
    # The gzip'd bytes: only so many are read; the history at the head still
    # comes, the CVEs (counted over the whole file) do not.
    entries = [(f"1.{k}-1", day(7 * k)) for k in range(2000)]
    long = gzip.compress(changelog_text("foo", entries).replace(b"Change.", b"Fix CVE-2026-0003."))
    monkeypatch.setattr(changelog, "MAX_CHANGELOG_BYTES", len(long) // 2)
    history, cves = read_history_and_cves(_tree(tmp_path / "long", long), PATH)
    assert history is not None and history[0].date == day(0)
    assert cves == 0


def test_entries_without_a_date_are_skipped(tmp_path: Path) -> None:
    text = b"foo (2.0-1) unstable; urgency=medium\n\n  * x\n\n -- A <a@b>  not a date\n\n" + changelog_text(
        "foo", [("1.0-1", day(5))]
    )
    tree = _tree(tmp_path, gzip.compress(text))
    history = read_history(tree, PATH)
    assert history is not None and [c.date for c in history] == [day(5)]
    assert newest_change(tree, PATH) == day(5)


def test_upstream_version() -> None:
    assert upstream_version("1:2.41-12+deb13u1") == "2.41"
    assert upstream_version("13.8") == "13.8"
    assert upstream_version("2:1.0-rc1-3") == "1.0-rc1"


def test_rates_and_probabilities() -> None:
    reference = day(0)
    # Two changes on one day count once; the window is (reference - 365 days, reference].
    dates = [day(0), day(0) + dt.timedelta(hours=-1), day(100), day(WINDOW_DAYS), day(WINDOW_DAYS - 1)]
    assert changes_per_year(dates, reference) == pytest.approx(3 + CHANGES_PRIOR)
    assert changes_per_year([day(-1)], reference) == CHANGES_PRIOR  # after the reference
    assert probability(52.0) == pytest.approx(1 - math.exp(-7 * 52 / 365))
    assert probability(0.0) == 0.0


def test_security_weighting(tmp_path: Path) -> None:
    text = changelog_text("foo", [("1.0-2", day(0))]).replace(
        b"  * Change.", b"  * CVE-2025-1234, CVE-2025-12345 and CVE-2025-1234 again; not CVE-25-1"
    )
    tree = _tree(tmp_path, gzip.compress(text))
    assert count_cves(tree, PATH) == 2
    assert security_factor(0) == 1.0
    assert security_factor(2) == pytest.approx(1 + CVE_WEIGHT * math.log(3))
    p = 0.1
    assert security_weighted(p, 0) == pytest.approx(p)
    # The rate is scaled: -log(1 - p) by factor / mean.
    weighted = security_weighted(p, 2, mean_factor=2.0)
    assert -math.log(1 - weighted) == pytest.approx(-math.log(1 - p) * security_factor(2) / 2.0)
