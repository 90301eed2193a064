"""Debian version ordering without python-apt gives apt's answers on real versions.

A pip install has no ``apt_pkg``; ``mapping.debian_formats.version_compare``
then uses python-debian's pure-Python comparison.  Here both are asked about
every version in the frozen update-pair corpora (benches/data: the component
versions of seven image sets over their builds) and in this machine's dpkg
database, plus the corner cases of deb-version(7): every adjacent pair in
apt's order, every equal pair, and many random pairs must get the same sign.
"""

from __future__ import annotations

import functools
import itertools
import lzma
import random
import re
import sys
from pathlib import Path

import pytest
from debian import debian_support

from mapping import debian_formats

DATA = Path(__file__).resolve().parent.parent / "benches" / "data"

# deb-version(7)'s corners: epochs, '~' before everything (even the end),
# digits compared as numbers, letters before non-letters, revisions.
CORNERS = [
    "0",
    "0:0",
    "00",
    "1",
    "1.0",
    "1.00",
    "1.0-0",
    "1.0-1",
    "1.0-01",
    "1.0~",
    "1.0~~",
    "1.0~~a",
    "1.0~a",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0+",
    "1.0+b1",
    "1.0.",
    "1.0a",
    "1.0A",
    "1.0-1ubuntu1",
    "1.0-1+deb13u1",
    "1.0-1~bpo12+1",
    "1.0-1.1",
    "1:0.9",
    "2:0",
    "10:1",
    "1.10",
    "1.9",
    "1.0-a",
    "1.0-+",
    "1.0-~",
    "1.0+dfsg-1",
    "1.0+really0.9-1",
    "20260101",
    "2026.01.01-1",
]


@functools.cache
def corpus_versions() -> list[str]:
    """Every component version in benches/data's update-pair corpora."""
    found: set[str] = set()
    for path in sorted(DATA.glob("*.pairs.json.xz")):
        with lzma.open(path) as f:
            found.update(m.decode() for m in re.findall(rb'"version":"([^"\\]+)"', f.read()))
    return sorted(found)


def installed_versions() -> list[str]:
    """The versions in this machine's dpkg database."""
    try:
        data = Path("/var/lib/dpkg/status").read_bytes()
    except OSError:
        return []
    return sorted({m.decode() for m in re.findall(rb"(?m)^Version: (\S+)$", data)})


def sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.fixture(scope="module")
def apt_pkg() -> object:
    debian_formats.apt_pkg.cache_clear()
    module = debian_formats.apt_pkg()
    assert module is not None, "python3-apt is a test dependency (DESIGN.md)"
    return module


def test_the_corpus_is_large() -> None:
    versions = corpus_versions()
    assert len(versions) > 2000, len(versions)
    assert any(":" in v for v in versions) and any("~" in v for v in versions)
    assert any("+b" in v for v in versions) and any("deb12u" in v for v in versions)


def test_python_debian_orders_versions_as_apt_does(apt_pkg: object) -> None:
    apt_compare = apt_pkg.version_compare  # type: ignore[attr-defined]
    versions = sorted(set(corpus_versions() + installed_versions() + CORNERS))
    ordered = sorted(versions, key=functools.cmp_to_key(apt_compare))
    pairs = list(itertools.pairwise(ordered))
    pairs += [(v, v) for v in versions]
    rng = random.Random(20261207)
    pairs += [(rng.choice(versions), rng.choice(versions)) for _ in range(30_000)]
    pairs += [(a, b) for a in CORNERS for b in CORNERS]
    disagree = [
        (a, b) for a, b in pairs if sign(apt_compare(a, b)) != sign(debian_support.version_compare(a, b))
    ]
    assert disagree == []
    # And an order, not a coincidence: the corpus holds versions apt sorts apart.
    assert sum(sign(apt_compare(a, b)) < 0 for a, b in pairs[: len(ordered) - 1]) > 2000


def test_newest_version_is_the_same_without_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = corpus_versions() + CORNERS
    by_source: dict[str, list[str]] = {}
    rng = random.Random(7)
    for v in versions:
        by_source.setdefault(str(rng.randrange(300)), []).append(v)
    debian_formats.apt_pkg.cache_clear()
    with_apt = {k: debian_formats.newest_version(vs) for k, vs in by_source.items()}
    monkeypatch.setitem(sys.modules, "apt_pkg", None)  # as without python3-apt
    debian_formats.apt_pkg.cache_clear()
    try:
        assert debian_formats.apt_pkg() is None
        without = {k: debian_formats.newest_version(vs) for k, vs in by_source.items()}
    finally:
        monkeypatch.undo()
        debian_formats.apt_pkg.cache_clear()
    assert with_apt == without
