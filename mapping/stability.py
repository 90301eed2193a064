"""How often each owner of a tree's files changes (DESIGN.md, stage 1, "Stability").

In: a ``Tree`` and its owners (name, kind, the changelog paths of its
packages, the days between updates a ``user.update-interval`` xattr gives).
Out: per owner, the weekly probability of any change and of an upstream
version change, and its newest changelog date; and the reference date the
rates count back from: the one the caller pins, else the newest changelog date
in the tree (``newest_change_date``), never the wall clock.  In a stable
release (``stable_release``) a package's rate is weighted by its security
history (``mapping.changelog.security_weighted``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from . import changelog
from ._threads import map_in_threads
from .dpkg import Database
from .errors import MappingError
from .model import VOLATILE, Kind
from .tree import Tree

# Change probabilities of the kinds that have no changelog.  Volatile content is
# rewritten by every build.  Unpackaged files are written by maintainer scripts
# and image builders, so they change about as often as the packages do; a
# bigfile or an xattr component has no history to go on.
VOLATILE_CHANGE_PROBABILITY = 1.0
UNPACKAGED_CHANGE_PROBABILITY = changelog.probability(12.0)

# chunkah's named update intervals, in days (coreos/chunkah, README and
# src/components/xattr.rs), so trees labelled for chunkah keep their meaning.
NAMED_INTERVALS = {"daily": 1, "weekly": 7, "biweekly": 14, "monthly": 30, "quarterly": 90, "yearly": 365}

# os-release(5) is a few short lines: only so much of it is read.
_OS_RELEASE_LIMIT = 64 << 10
# Changelogs read at once in threads: a bound on the memory they hold.
_FETCH_BATCH = 64

# The component holding the dpkg database's shared files (``status``, ...).
_DPKG_DATABASE = VOLATILE + ":dpkg"


class Owner(Protocol):
    """What the probabilities are computed from, for one owner."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Kind: ...

    @property
    def changelogs(self) -> Sequence[str]: ...

    @property
    def interval_days(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Stability:
    """One owner's weekly change probabilities (``upstream_change_probability``
    only for an owner with a changelog) and its newest changelog date, in
    seconds since 1970 (None without a changelog)."""

    change_probability: float
    upstream_change_probability: float | None = None
    date: int | None = None


def update_interval_days(value: bytes, where: str) -> int:
    """A ``user.update-interval`` value as days: a named interval or a
    positive whole number of days; MappingError naming ``where`` otherwise."""
    text = value.decode("utf-8", "replace").strip()
    days = NAMED_INTERVALS.get(text)
    if days is None:
        days = int(text) if text.isdigit() else 0
    if days <= 0:
        raise MappingError(
            f"user.update-interval {text!r} is not a number of days or one of {', '.join(NAMED_INTERVALS)}",
            where,
            "fix the xattr",
        )
    return days


def interval_probability(days: int) -> float:
    """The weekly change probability of an update every ``days`` days on
    average (a Poisson process, as for changelogs): ``1 - exp(-7 / days)``."""
    return -math.expm1(-7.0 / days)


def changelog_paths(package: str) -> list[str]:
    """Where binary package ``package`` keeps its changelog, in the order
    looked at: ``changelog.Debian.gz``, else a native package's ``changelog.gz``
    (the doc directory may be a symlink to a sibling of the same source)."""
    doc = f"usr/share/doc/{package}"
    return [f"{doc}/changelog.Debian.gz", f"{doc}/changelog.gz"]


def stable_release(tree: Tree) -> bool:
    """Whether the tree is a stable release (os-release(5) gives a VERSION_ID:
    Debian 13, Ubuntu 24.04; Debian testing and unstable have none), whose
    packages change by security and bug-fix updates only."""
    for path in ("etc/os-release", "usr/lib/os-release", "usr/etc/os-release"):
        data = tree.read_bytes(path, _OS_RELEASE_LIMIT)  # follows symlinks inside the tree
        if data is not None:
            return any(line.startswith(b"VERSION_ID=") for line in data.splitlines())
    return False


def newest_change_date(tree: Tree) -> dt.datetime | None:
    """The date ``change_probabilities`` counts back from when none is pinned:
    the newest date of the installed source packages' changelogs (of each
    source, the first changelog found, as its owner reads it).  Reads only the
    dpkg ``status`` and those changelogs, and logs nothing: a caller needing
    only the date need not map the tree.  None without a database or a
    changelog."""
    db = Database.find(tree)
    if db is None:
        return None
    packages, _ = db.read_status()
    paths: dict[str, list[str]] = {}
    for package in packages:
        paths.setdefault(package.source, []).extend(changelog_paths(package.name))
    newest = (_first_date(tree, candidates) for candidates in paths.values())
    return max((date for date in newest if date is not None), default=None)


def _first_date(tree: Tree, paths: Iterable[str]) -> dt.datetime | None:
    """The newest change of the first of ``paths`` holding a dated changelog."""
    for path in paths:
        date = changelog.newest_change(tree, path)
        if date is not None:
            return date
    return None


def change_probabilities(
    tree: Tree, owners: Sequence[Owner], reference: dt.datetime | None = None
) -> tuple[dict[str, Stability], dt.datetime | None]:
    """Each owner's ``Stability`` by name, and the reference date used:
    ``reference``, else the newest changelog date of the owners (the
    ``newest_change_date`` of a mapped tree), else None."""
    histories, cves = _read_histories(tree, owners, stable_release(tree))
    if reference is None and histories:
        reference = max(h[0].date for h in histories.values())
    factors = [changelog.security_factor(n) for n in cves.values()]
    mean_factor = sum(factors) / len(factors) if factors else 1.0
    result: dict[str, Stability] = {}
    for owner in owners:
        history = histories.get(owner.name)
        date = None if history is None else int(history[0].date.timestamp())
        if history is not None and _history_decides(owner):
            assert reference is not None  # a history gives one when none is pinned
            p, upstream = _from_history(history, reference, cves.get(owner.name), mean_factor)
            result[owner.name] = Stability(p, upstream, date)
        else:
            result[owner.name] = Stability(_without_history(owner), None, date)
    _database_follows_packages(result, owners)
    return result, reference


def _read_histories(
    tree: Tree, owners: Iterable[Owner], stable: bool
) -> tuple[dict[str, list[changelog.Change]], dict[str, int]]:
    """Each owner's history from the first of its changelogs that has one,
    and, in a stable release, the CVEs that changelog names."""
    histories: dict[str, list[changelog.Change]] = {}
    cves: dict[str, int] = {}
    listed = [o for o in owners if o.changelogs]
    for start in range(0, len(listed), _FETCH_BATCH):
        batch = listed[start : start + _FETCH_BATCH]
        # Each owner's first changelog read (and in a stable release inflated)
        # in threads; parsed here, in order, so any warning comes in order.
        first = map_in_threads(lambda o: changelog.fetch(tree, o.changelogs[0], stable), batch)
        for owner, raw in zip(batch, first, strict=True):
            for k, path in enumerate(owner.changelogs):
                if k:
                    raw = changelog.fetch(tree, path, stable)
                found, named = (None, 0) if raw is None else changelog.history_and_cves(path, raw)
                if found:
                    histories[owner.name] = found
                    if stable:
                        cves[owner.name] = named
                    break
    return histories, cves


def _history_decides(owner: Owner) -> bool:
    """Whether an owner's changelog decides its rate: not for the catch-all
    kinds, whose content is not the package's, nor against a
    ``user.update-interval`` its maker gave."""
    return owner.kind not in ("volatile", "unpackaged") and owner.interval_days is None


def _without_history(owner: Owner) -> float:
    """The weekly change probability of an owner no changelog decides."""
    if owner.kind == "volatile":
        return VOLATILE_CHANGE_PROBABILITY
    if owner.kind == "unpackaged":
        return UNPACKAGED_CHANGE_PROBABILITY
    if owner.interval_days is not None:
        return interval_probability(owner.interval_days)
    return changelog.DEFAULT_CHANGE_PROBABILITY


def _from_history(
    history: list[changelog.Change], reference: dt.datetime, cves: int | None, mean_factor: float
) -> tuple[float, float]:
    """Weekly probabilities of any change and of an upstream change, from
    the change dates in the window before ``reference``; weighted by
    ``cves`` in a stable release (None elsewhere)."""
    p = changelog.probability(changelog.changes_per_year((c.date for c in history), reference))
    upstream = changelog.probability(
        changelog.changes_per_year((c.date for c in history if c.upstream), reference)
    )
    if cves is not None:
        p = changelog.security_weighted(p, cves, mean_factor)
        upstream = changelog.security_weighted(upstream, cves, mean_factor)
    return p, upstream


def _database_follows_packages(result: dict[str, Stability], owners: Iterable[Owner]) -> None:
    """The dpkg database changes when any package does, and only then."""
    if _DPKG_DATABASE not in result:
        return
    packages = {o.name for o in owners if o.kind == "package"}
    keep = math.prod(1.0 - s.change_probability for name, s in result.items() if name in packages)
    result[_DPKG_DATABASE] = replace(
        result[_DPKG_DATABASE], change_probability=1.0 - keep, upstream_change_probability=None
    )
