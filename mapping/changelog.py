"""How often a package changes, from the dates in its Debian changelog.

In: the changelog of each source package found in the tree.  Out: the distinct
change dates within 365 days before a reference date, turned into a weekly
change probability ``1 - exp(-7 * rate)`` (rate = changes per day, changes as a
Poisson process).  The reference is the newest changelog date in the whole tree,
or the ``reference_date`` the caller gives (the CLI passes ``SOURCE_DATE_EPOCH``);
never the wall clock, so results do not depend on when debchunk runs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import show, warn
from .layers import DECOMPRESSION_ERRORS, Inflater
from .tree import Tree

WINDOW_DAYS = 365

# With no changelog we assume a package changes this often.  Four uploads a year
# is a typical stable-release package's cadence (point releases plus security).
DEFAULT_CHANGES_PER_YEAR = 4.0

# A changelog trailer line (deb-changelog(5)): " -- name <email>  date".
_TRAILER = re.compile(rb"^ -- .*?>  ?(.+?)\s*$")


def probability(changes_per_year: float) -> float:
    """Probability of at least one change in a week."""
    return 1.0 - math.exp(-7.0 * changes_per_year / WINDOW_DAYS)


DEFAULT_CHANGE_PROBABILITY = probability(DEFAULT_CHANGES_PER_YEAR)


def _parse_date(text: bytes) -> dt.datetime | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text.decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when


# A changelog entry's first line (deb-changelog(5)): "source (version) distributions; ...".
_HEADER = re.compile(rb"^[a-z0-9][a-z0-9+.-]* \(([^)\s]+)\)")


@dataclass(frozen=True, slots=True)
class Change:
    """One changelog entry: when, and whether it changed the upstream version
    (an entry that only bumps the Debian revision, like a security fix
    ``2.41-12`` -> ``2.41-12+deb13u1``, does not)."""

    date: dt.datetime
    upstream: bool


def upstream_version(version: str) -> str:
    """The upstream part of a Debian version: no epoch, no Debian revision
    (deb-version(7))."""
    version = version.partition(":")[2] or version if ":" in version else version
    return version.rpartition("-")[0] if "-" in version else version


# Bounds on one changelog, whatever the tree holds: the gzip'd bytes read, the
# bytes inflated and the length of one line (Debian's largest changelogs are
# a few MB inflated).  Past them a changelog reads as if damaged there.
MAX_CHANGELOG_BYTES = 16 << 20
MAX_INFLATED_BYTES = 64 << 20
MAX_LINE_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class Raw:
    """A changelog as read from the tree: its gzip'd ``data`` and, when asked
    for and readable, the whole ``text`` inflated (None otherwise)."""

    data: bytes
    text: bytes | None


def fetch(tree: Tree, path: str, inflate: bool) -> Raw | None:
    """The changelog at ``path`` (None when missing), inflated whole if
    ``inflate``: the part of reading a changelog that releases the GIL (file
    or libostree reads, zlib), for threads."""
    data = tree.read_bytes(path, MAX_CHANGELOG_BYTES)
    if data is None:
        return None
    if not inflate:
        return Raw(data, None)
    try:
        return Raw(data, _inflate(data))
    except _UNREADABLE:
        return Raw(data, None)


def history_and_cves(path: str, raw: Raw) -> tuple[list[Change] | None, int]:
    """``read_history`` and, when ``raw`` has the whole text, ``count_cves``
    (else 0) of a fetched changelog."""
    if raw.text is not None:
        return _history_of_lines(io.BytesIO(raw.text)), len(set(_CVE.findall(raw.text)))
    try:
        return _parse_history(raw.data), 0
    except _UNREADABLE as e:
        warn(f"{show(path)}: unreadable changelog ({e}); default change rate used")
        return None, 0


def read_history(tree: Tree, path: str) -> list[Change] | None:
    """The changes recorded in the changelog at ``path``, newest first, newest
    part only: reading stops at the first entry more than a window older than
    the newest one (the reference can only be newer, so older entries never
    count; that entry's version is still read, to tell whether the last one in
    the window changed the upstream version).  None when the file is missing,
    or unreadable (with a warning)."""
    raw = fetch(tree, path, inflate=False)
    return None if raw is None else history_and_cves(path, raw)[0]


def newest_change(tree: Tree, path: str) -> dt.datetime | None:
    """The date of the newest change ``read_history`` finds in the changelog
    at ``path``; None when it is missing, has no dated entry or is unreadable
    (silently: mapping the tree gives that warning)."""
    data = tree.read_bytes(path, MAX_CHANGELOG_BYTES)
    if data is None:
        return None
    try:
        history = _parse_history(data)
    except _UNREADABLE:
        return None
    return history[0].date if history else None


# What a damaged gzip stream raises.
_UNREADABLE = (OSError, EOFError, zlib.error, *DECOMPRESSION_ERRORS)


def _parse_history(data: bytes) -> list[Change]:
    """``read_history`` of a changelog's gzip'd bytes, inflated only as far as
    needed; raises ``_UNREADABLE``."""
    with gzip.open(io.BytesIO(data)) as f:
        return _history_of_lines(_bounded_lines(f))


def _bounded_lines(f: io.BufferedIOBase) -> Iterator[bytes]:
    """The lines of ``f``, none longer than ``MAX_LINE_BYTES`` (a longer one
    comes in pieces), up to ``MAX_INFLATED_BYTES`` in all."""
    left = MAX_INFLATED_BYTES
    while left > 0 and (line := f.readline(min(MAX_LINE_BYTES, left))):
        left -= len(line)
        yield line


def _inflate(data: bytes) -> bytes:
    """A gzip file's content (every member), at most ``MAX_INFLATED_BYTES`` of
    it, inflated by the layers' decompressor; raises ``_UNREADABLE``."""
    inflater = Inflater("gzip")
    out = bytearray()
    for piece in inflater.feed(data):
        out += piece
        if len(out) >= MAX_INFLATED_BYTES:
            return bytes(out[:MAX_INFLATED_BYTES])
    rest = inflater.finish()
    if rest is None:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    out += rest
    return bytes(out[:MAX_INFLATED_BYTES])


def _history_of_lines(lines: Iterable[bytes]) -> list[Change]:
    """``read_history`` of a changelog's lines, read only as far as needed."""
    entries: list[tuple[dt.datetime, str]] = []
    version: str | None = None
    older: str | None = None
    for line in lines:
        header = _HEADER.match(line)
        if header:
            version = header.group(1).decode("ascii", "replace")
            if entries and entries[0][0] - entries[-1][0] > dt.timedelta(days=WINDOW_DAYS):
                older = version
                break
            continue
        match = _TRAILER.match(line)
        if not match or version is None:
            continue
        when = _parse_date(match.group(1))
        if when is not None:
            entries.append((when, version))
        version = None
    entries.sort(key=lambda e: e[0], reverse=True)
    versions = [upstream_version(v) for _, v in entries] + [upstream_version(older) if older else ""]
    return [Change(when, versions[k] != versions[k + 1]) for k, (when, _) in enumerate(entries)]


# A CVE identifier (cve.org: "CVE-YYYY-NNNN", four or more digits).
_CVE = re.compile(rb"CVE-\d{4}-\d{4,}")

# How much a package's security history raises its change rate in a stable
# release, where updates are security and bug fixes only: the rate is
# multiplied by 1 + CVE_WEIGHT * ln(1 + distinct CVEs named in its changelog),
# divided by that factor's mean over the tree's packages.
# Measured on the update pairs (benches/update_cost.py): a stable point update's
# changed packages are told from the others with an AUC of 0.86 this way, 0.81
# by the change dates alone.
CVE_WEIGHT = 2.0


def read_history_and_cves(tree: Tree, path: str) -> tuple[list[Change] | None, int]:
    """``read_history`` and ``count_cves`` of one changelog, read and
    inflated once (a changelog damaged past the entries the history needs
    still gives them, and no CVEs)."""
    raw = fetch(tree, path, inflate=True)
    return (None, 0) if raw is None else history_and_cves(path, raw)


def count_cves(tree: Tree, path: str) -> int:
    """Distinct CVE identifiers named anywhere in the changelog at ``path``
    (0 when it is missing or unreadable)."""
    raw = fetch(tree, path, inflate=True)
    return 0 if raw is None or raw.text is None else len(set(_CVE.findall(raw.text)))


def security_factor(cves: int) -> float:
    """How much ``cves`` CVEs raise a stable package's change rate (``CVE_WEIGHT``)."""
    return 1.0 + CVE_WEIGHT * math.log1p(cves)


def security_weighted(probability_: float, cves: int, mean_factor: float = 1.0) -> float:
    """A weekly change probability with its rate scaled by ``security_factor``
    over ``mean_factor`` (the tree's average, so that the rates are shared out
    differently but add up as before): ``1 - (1 - p) ** factor``, the same
    Poisson model."""
    factor = security_factor(cves) / mean_factor
    return 1.0 - float((1.0 - probability_) ** factor)


# Added to every observed count: a year without a change does not mean a package
# never changes (the usual half-count prior for a Poisson rate).
CHANGES_PRIOR = 0.5


def changes_per_year(dates: Iterable[dt.datetime], reference: dt.datetime) -> float:
    """Distinct change days within the window ending at ``reference``, plus
    ``CHANGES_PRIOR``, per year."""
    start = reference - dt.timedelta(days=WINDOW_DAYS)
    days = {d.astimezone(dt.UTC).date() for d in dates if start < d <= reference}
    return (len(days) + CHANGES_PRIOR) * 365.0 / WINDOW_DAYS
