"""How often a package changes, from the dates in its Debian changelog.

In: the changelog of each source package found in the tree.  Out: the distinct
change dates within 365 days before a reference date, turned into a weekly
change probability ``1 - exp(-7 * rate)`` (rate = changes per day, changes as a
Poisson process).  The reference is the newest changelog date in the whole tree,
or ``SOURCE_DATE_EPOCH``; never the wall clock, so results do not depend on when
debchunk runs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math
import re
import zlib
from collections.abc import Iterable

from .errors import show, warn
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


def read_dates(tree: Tree, path: str) -> list[dt.datetime] | None:
    """Change dates of the changelog at ``path``, newest part only: reading stops
    at the first entry more than a window older than the newest one (the
    reference can only be newer, so older entries never count).  None when the
    file is missing or unreadable."""
    data = tree.read_bytes(path)
    if data is None:
        return None
    dates: list[dt.datetime] = []
    try:
        with gzip.open(io.BytesIO(data)) as f:
            for line in f:
                match = _TRAILER.match(line)
                if not match:
                    continue
                when = _parse_date(match.group(1))
                if when is None:
                    continue
                if dates and when < dates[0] - dt.timedelta(days=WINDOW_DAYS):
                    break
                if not dates or when > dates[0]:
                    dates.insert(0, when)
                else:
                    dates.append(when)
    except (OSError, EOFError, zlib.error) as e:
        warn(f"{show(path)}: unreadable changelog ({e}); default change rate used")
        return None
    return dates


# Added to every observed count: a year without a change does not mean a package
# never changes (the usual half-count prior for a Poisson rate).
CHANGES_PRIOR = 0.5


def changes_per_year(dates: Iterable[dt.datetime], reference: dt.datetime) -> float:
    """Distinct change days within the window ending at ``reference``, plus
    ``CHANGES_PRIOR``, per year."""
    start = reference - dt.timedelta(days=WINDOW_DAYS)
    days = {d.astimezone(dt.UTC).date() for d in dates if start < d <= reference}
    return (len(days) + CHANGES_PRIOR) * 365.0 / WINDOW_DAYS
