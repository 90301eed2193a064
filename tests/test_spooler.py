"""mapping.spooler: a spool filled by a child process, read back as it grows."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mapping import space
from mapping.errors import MappingError
from mapping.space import SpaceAccount, SpaceLimits, accounted
from mapping.spooler import spooled


def _writer(path: Path, pieces: list[bytes]) -> Iterator[bytes]:
    """A fill as ``_Spool.fill`` is one: each piece written, flushed, then given."""
    with path.open("wb") as out:
        for piece in pieces:
            out.write(piece)
            out.flush()
            yield piece


def _children() -> set[int]:
    """This process's child processes, zombies included."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.add(int(entry))
    return found


def test_the_bytes_come_back_in_order_as_the_child_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    # Pieces of odd sizes, so the pages the parent maps do not fall on piece boundaries.
    pieces = [bytes([i]) * (1000 + 4099 * i) for i in range(40)]
    before = _children()
    got = b"".join(bytes(memoryview(p)) for p in spooled(lambda: _writer(path, pieces), str(path), "test"))
    assert got == b"".join(pieces)
    assert path.read_bytes() == got
    assert _children() == before  # the child was waited for


def test_an_empty_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    assert list(spooled(lambda: _writer(path, []), str(path), "test")) == []
    assert path.read_bytes() == b""


def test_the_childs_error_is_raised_with_its_parts_and_the_spool_removed(tmp_path: Path) -> None:
    path = tmp_path / "spool"

    def fill() -> Iterator[bytes]:
        yield from _writer(path, [b"x" * 10000])
        raise MappingError("the blob is bad \x1b[31m", "/some/where", "pull it again")

    with pytest.raises(MappingError) as e:
        list(spooled(fill, str(path), "test"))
    assert (e.value.what, e.value.where, e.value.hint) == (
        "the blob is bad \x1b[31m",
        "/some/where",
        "pull it again",
    )
    assert "\x1b" not in str(e.value)
    assert not path.exists()


def test_an_unexpected_exception_in_the_child_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "spool"

    def fill() -> Iterator[bytes]:
        yield from _writer(path, [b"x"])
        raise ZeroDivisionError("nope\nsecond line")

    with pytest.raises(MappingError, match="internal error: ZeroDivisionError") as e:
        list(spooled(fill, str(path), "test"))
    assert "\n" not in str(e.value)
    assert not path.exists()


def test_a_child_that_dies_is_named_and_its_spool_removed(tmp_path: Path) -> None:
    path = tmp_path / "spool"

    def fill() -> Iterator[bytes]:
        yield from _writer(path, [b"y" * 5000])
        os.kill(os.getpid(), signal.SIGKILL)
        yield b""

    with pytest.raises(
        MappingError, match="spooling test: the process writing the spool was killed by signal 9"
    ):
        list(spooled(fill, str(path), "spooling test"))
    assert not path.exists()


def test_stopping_early_kills_the_child_and_removes_the_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool"

    def fill() -> Iterator[bytes]:
        with path.open("wb") as out:
            while True:  # never ends on its own
                out.write(b"z" * 65536)
                out.flush()
                yield b"z" * 65536
                time.sleep(0.001)

    before = _children()
    stream = spooled(fill, str(path), "test")
    next(stream)
    assert len(_children() - before) == 1
    stream.close()
    assert _children() == before
    assert not path.exists()


def test_the_bytes_are_charged_to_the_runs_account(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    account = SpaceAccount(SpaceLimits(), str(tmp_path))
    with accounted(str(tmp_path), account):
        list(spooled(lambda: _writer(path, [b"a" * 3000, b"b" * 5000]), str(path), "test"))
    assert account.used == 8000


def test_a_fork_while_another_thread_holds_the_accounts_locks(tmp_path: Path) -> None:
    """The child makes its locks anew: a lock another thread of the parent
    held at the fork would never be released in the child."""
    path = tmp_path / "spool"
    account = SpaceAccount(SpaceLimits(), str(tmp_path))
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with space._accounts_lock, account._lock:
            held.set()
            done.wait(0.5)

    def fill() -> Iterator[bytes]:
        for lock in (space._accounts_lock, account._lock):
            if not lock.acquire(timeout=5):
                raise MappingError("a lock held at the fork is still held in the child")
            lock.release()
        yield from _writer(path, [b"c" * 100])

    with accounted(str(tmp_path), account):
        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        try:
            got = list(spooled(fill, str(path), "test"))
        finally:
            done.set()
            holder.join()
    assert b"".join(bytes(memoryview(p)) for p in got) == b"c" * 100
