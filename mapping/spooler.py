"""Fill a spool file in a child process, and read it back as it grows.

Reading a layer is three kinds of work: inflating and hashing its bytes
(C code that releases the GIL), and reading its tar headers and building
the tree (Python, holding it).  In threads of one process, each hand-over
of a piece between them waits for the GIL while the Python side holds it,
and mapping a 333 MB single-layer image took ~1.55 s.  With the byte work
in a process of its own (its own GIL) the same took ~1.3 s
(``benches.rechunk_speed``).

``spooled(fill, path)`` forks: the child runs ``fill()``, which writes the
spool at ``path`` and yields each piece once it is written, and tells the
parent over a pipe how many bytes are in the file so far.  The parent
yields the file's bytes up to there, read back from the page cache.  A
``DebchunkError`` raised in the child is raised again in the parent, with
its parts (``what``, ``where``, ``hint``); so is one for a child that dies.

The child meters the space it writes (``space.Meter``, on its copy of the
run's account, whose locks are made new after the fork); the parent charges
the same bytes to the run's account as they are reported.  Stopping early
(an error here, an interrupt) kills the child and removes the spool.  The
child takes the default action of SIGINT, SIGTERM and SIGHUP, so a signal
to the process group ends it at once; the parent cleans up after it.  A
parent that dies leaves a child that stops at its next report (EPIPE) and
removes its spool.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import signal
import warnings
from collections.abc import Callable, Generator, Iterable
from typing import NoReturn, cast

from .errors import DebchunkError, MappingError
from .space import account_for

# The signals the child leaves to their default action (it ends).
_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def spooled(fill: Callable[[], Iterable[bytes]], path: str, what: str) -> Generator[bytes, None, None]:
    """The bytes ``fill()`` writes to the file at ``path``, in order, as a
    child process writes them; ``what`` names the work in messages (for
    example "spooling layer sha256:...").  ``fill`` must create ``path``
    and write each piece to it, flushed, before it yields the piece."""
    # Opened before the child writes it: the child removes a spool it fails
    # to fill, maybe before the parent has read what it reported.
    try:
        spool = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise MappingError(
            f"{what}: cannot make the spool: {e.strerror}", path, account_for(path).limits.hint
        ) from None
    read_end, write_end = os.pipe()
    # The ending signals wait until the fork is done: a Python handler that
    # raises inside fork()'s hooks (logging's) would be lost, and the child
    # must not run the parent's handlers.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
    pid = -1
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns of fork() while other threads run (a lock one of
            # them holds stays held in the child).  The child takes no lock the
            # parent's threads use: it runs ``fill`` and reports through the pipe.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover (the child; its work is checked through the parent)
            os.close(read_end)
            _child(fill, write_end, blocked)
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(write_end)
    finished = False
    try:
        with os.fdopen(read_end, "rb") as reports:
            yield from _follow(reports, spool, path, what, pid)
        finished = True
    finally:
        os.close(spool)
        if not finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
        if not finished:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _follow(
    reports: Iterable[bytes], spool: int, path: str, what: str, pid: int
) -> Generator[bytes, None, None]:
    """The spool's bytes (``spool``, open) as the child's reports say they
    are written: one line each, the bytes written so far, then ``done N``
    or ``error JSON``."""
    account = account_for(path)
    read = charged = 0
    for report in reports:
        kind, _, rest = report.rstrip(b"\n").partition(b" ")
        if kind == b"error":
            raise _error_of(rest, what)
        written = int(rest if kind == b"done" else kind)
        account.charge(written - charged, what)
        charged = written
        # Whole pages, but for the end: what is mapped stays as it is (the
        # child only appends) and is read without a copy.
        end = written if kind == b"done" else written - written % mmap.PAGESIZE
        if end > read:
            # An mmap reads as bytes do (length, slices, memoryview).
            yield cast(bytes, mmap.mmap(spool, end - read, access=mmap.ACCESS_READ, offset=read))
            read = end
        if kind == b"done":
            return
    raise MappingError(f"{what}: the process writing the spool {_ended(pid)}", path, _RERUN)


_RERUN = "run again; if it happens again, report it"


def _error_of(payload: bytes, what: str) -> DebchunkError:
    """The child's error, made again from its parts."""
    try:
        parts = json.loads(payload)
        return MappingError(parts["what"], parts["where"], parts["hint"])
    except (ValueError, KeyError, TypeError):
        return MappingError(f"{what}: the process writing the spool failed", hint=_RERUN)


def _ended(pid: int) -> str:
    """How the child ended, waited for: "was killed by signal 9", "exited with status 1"."""
    status = _reap(pid)
    if status is not None and os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    if status is not None and os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return "ended"


def _reap(pid: int) -> int | None:
    """Wait for the child; its wait status, or None once it was waited for."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _child(fill: Callable[[], Iterable[bytes]], reports: int, mask: Iterable[int]) -> NoReturn:
    """The child's work: ``fill()``, reported to the parent; never returns.
    ``mask`` is the signal mask to restore once the ending signals end it."""
    code = 1
    try:
        for number in _ENDING:
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        written = 0
        for piece in fill():
            written += len(piece)
            _write_all(reports, b"%d\n" % written)
        _write_all(reports, b"done %d\n" % written)
        code = 0
    except DebchunkError as e:
        parts = {"what": e.what, "where": e.where, "hint": e.hint}
        with contextlib.suppress(OSError):
            _write_all(reports, b"error " + json.dumps(parts).encode() + b"\n")
    except BaseException as e:
        parts = {"what": f"internal error: {type(e).__name__}: {e}", "where": None, "hint": _RERUN}
        with contextlib.suppress(OSError):
            _write_all(reports, b"error " + json.dumps(parts).encode() + b"\n")
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
