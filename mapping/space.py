"""Temporary space: how much a run may write, and how much it leaves free.

Images come from strangers: a layer of a few megabytes of gzip can inflate
to many gigabytes (gzip expands up to 1032 times), and a spool, a copy or an
unpacked archive of it would fill the disk.  Whatever writes temporary data
goes through a ``Meter``: it checks the free space of the file system it
writes on before it starts and every ``CHECK_EVERY`` bytes after (one
``statvfs``, cheap), and stops with one ``MappingError`` naming the place
once less than the reserve would stay free, or once the run has written
its budget.  The caller then removes what it wrote.

A run says what it allows by registering a ``SpaceAccount`` for its work
directory (``accounted``); a ``Meter`` for a path under it charges that
account.  Writers under no registered directory keep the default reserve
and have no budget.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import MappingError

MiB = 1 << 20
GiB = 1 << 30
# The default reserve: the larger of 1 GiB and 5% of the file system.  A
# full disk breaks more than this run (logs, package managers, other
# builds); 5% is what ext4 keeps back for root by default (mke2fs -m 5),
# and 1 GiB keeps a small file system usable.
RESERVE_MIN = GiB
RESERVE_FRACTION = 0.05
# Free space is looked at again after this many bytes: at disk speed
# (~1 GB/s) that is a statvfs every ~10 ms, and a run overshoots its
# reserve by at most this much.
CHECK_EVERY = 8 * MiB
DEFAULT_HINT = "free space there, or choose another work directory"

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}


def parse_size(text: str) -> int:
    """A size in bytes from ``123``, ``50M``, ``2G``, ``512MiB``... (units
    are powers of 1024); ``ValueError`` when ``text`` is none of these."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (give bytes, or a number with K, M, G or T)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def show_size(n: int) -> str:
    """A size as people read it: ``1.5 GiB``, ``20 MiB``, ``512 bytes``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 100 or value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class SpaceLimits:
    """What a run allows: ``reserve`` bytes kept free on every file system
    it writes temporary data on (None: the larger of ``RESERVE_MIN`` and
    ``RESERVE_FRACTION`` of the file system), at most ``budget`` bytes of
    temporary data written in all (None: no limit).  ``hint`` says how to
    choose another place; ``budget_hint`` how to allow more."""

    reserve: int | None = None
    budget: int | None = None
    hint: str = DEFAULT_HINT
    budget_hint: str = "allow a larger budget"


class SpaceAccount:
    """The temporary bytes one run has written, against its ``limits``;
    ``place`` is the directory messages name (where the run writes)."""

    def __init__(self, limits: SpaceLimits, place: str) -> None:
        self.limits = limits
        self.place = place
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, st: os.statvfs_result) -> int:
        """The bytes to keep free on the file system ``st`` describes."""
        if self.limits.reserve is not None:
            return self.limits.reserve
        return max(RESERVE_MIN, int(st.f_blocks * st.f_frsize * RESERVE_FRACTION))

    def check_free(self, path: str, what: str) -> None:
        """Refuse to go on when the file system holding ``path`` has less
        free than the reserve; ``what`` is what was being written."""
        try:
            st = os.statvfs(path if os.path.exists(path) else os.path.dirname(path) or ".")
        except OSError:
            return  # the write itself reports a place that is not there
        free, keep = st.f_bavail * st.f_frsize, self.reserve(st)
        if free < keep:
            raise MappingError(
                f"{what}: stopped with {show_size(free)} free on its file system, "
                f"{show_size(keep)} being kept free (the run wrote {show_size(self.used)} of temporary data)",
                self.place,
                self.limits.hint,
            )

    def charge(self, n: int, what: str) -> None:
        """Count ``n`` more bytes about to be written; refuse them past the budget."""
        with self._lock:
            budget = self.limits.budget
            if budget is not None and self.used + n > budget:
                raise MappingError(
                    f"{what}: stopped at the run's temporary space budget of {show_size(budget)} "
                    f"({show_size(self.used)} written)",
                    self.place,
                    self.limits.budget_hint,
                )
            self.used += n


class Meter:
    """One file of temporary data being written at ``path``: free space
    checked now, then ``wrote`` before each write (see the module docstring)."""

    def __init__(self, path: str, what: str, account: SpaceAccount | None = None) -> None:
        self.path = path
        self.what = what
        self.account = account if account is not None else account_for(path)
        self._since_check = 0
        self.account.check_free(path, what)

    def wrote(self, n: int) -> None:
        """``n`` more bytes are about to be written."""
        self.account.charge(n, self.what)
        self._since_check += n
        if self._since_check >= CHECK_EVERY:
            self._since_check = 0
            self.account.check_free(self.path, self.what)


_accounts: dict[str, SpaceAccount] = {}
_accounts_lock = threading.Lock()


def _new_locks() -> None:
    """In a forked child (``spooler``), locks that no thread holds: a lock
    another thread of the parent held at the fork would stay held."""
    global _accounts_lock
    _accounts_lock = threading.Lock()
    for account in _accounts.values():
        account._lock = threading.Lock()


os.register_at_fork(after_in_child=_new_locks)


def _key(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def registered_account(path: str) -> SpaceAccount | None:
    """The account of the innermost registered directory holding ``path``, or None."""
    key = _key(path)
    with _accounts_lock:
        roots = sorted(_accounts, key=len, reverse=True)
        for root in roots:
            if key == root or key.startswith(root.rstrip("/") + "/"):
                return _accounts[root]
    return None


def account_for(path: str) -> SpaceAccount:
    """The account ``path`` is charged to (``registered_account``); outside
    every registered directory, a new account with the default limits."""
    account = registered_account(path)
    if account is None:
        return SpaceAccount(SpaceLimits(), os.path.dirname(_key(path)))
    return account


@contextlib.contextmanager
def accounted(root: str, account: SpaceAccount) -> Iterator[SpaceAccount]:
    """Within the block, temporary data written under ``root`` is charged to ``account``."""
    key = _key(root)
    with _accounts_lock:
        _accounts[key] = account
    try:
        yield account
    finally:
        with _accounts_lock:
            if _accounts.get(key) is account:
                del _accounts[key]
