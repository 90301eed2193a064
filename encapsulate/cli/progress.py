"""The build's progress on stderr: what ``build_image`` reports (``Step``s)
drawn for a person.

On a terminal, one line per phase, redrawn in place (mapping, planning,
writing with layers done, MB/s and time left, delivery), left standing when
the phase ends.  Not on a terminal, nothing, unless ``CI`` is set (as CI
services set it): then a plain line every ``CI_INTERVAL`` seconds while a
phase lasts, and one when such a long phase ends, so a log shows the build
is alive.  A timer redraws between steps, so a phase that reports nothing
until it ends (mapping) still shows its time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from ..progress import Step

CI_INTERVAL = 5.0
_TTY_INTERVAL = 0.1
_TICK = 0.5
_MB = 1e6


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60):02d} s"


def describe(step: Step, elapsed: float) -> str:
    """One line saying where ``step``'s phase is, ``elapsed`` seconds into it."""
    if step.phase == "mapping":
        if not step.finished:
            return f"mapping: reading the tree ({_seconds(elapsed)})"
        size = f"{step.bytes_done / _MB:,.1f} MB"
        return f"mapping: {step.done:,} entries, {size} of content ({_seconds(elapsed)})"
    if step.phase == "planning":
        if not step.finished:
            return f"planning ({_seconds(elapsed)})"
        return f"planning: {step.done} layers ({_seconds(elapsed)})"
    if step.phase == "writing":
        total = step.total if step.total is not None else "?"
        text = f"writing: {step.done}/{total} layers"
        if step.taken:
            text += f" ({step.taken} taken)"
        rate = step.bytes_done / elapsed if elapsed > 0 else 0.0
        text += f", {step.bytes_done / _MB:,.0f}"
        if step.bytes_total:
            text += f"/{step.bytes_total / _MB:,.0f}"
        text += f" MB, {rate / _MB:,.0f} MB/s"
        if step.finished:
            return f"{text} ({_seconds(elapsed)})"
        if step.bytes_total and rate > 0:
            left = max(0, step.bytes_total - step.bytes_done) / rate
            text += f", ETA {_seconds(left)}"
        return text
    if step.phase == "delivery":
        state = "done" if step.finished else "copying"
        return f"delivery: {state} ({_seconds(elapsed)})"
    return f"{step.phase} ({_seconds(elapsed)})"


class ProgressLine:
    """Draws the steps of a build on ``stream`` (see the module docstring):
    ``tty`` redraws one line per phase; otherwise a line every ``interval``
    seconds.  Call it with each ``Step``; ``close`` when the build ends."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        interval: float = CI_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        tick: float | None = _TICK,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.interval = _TTY_INTERVAL if tty else interval
        self.clock = clock
        self.lock = threading.Lock()
        self.step: Step | None = None
        self.started = 0.0
        self.drawn = 0.0
        self.printed = False
        self.stopped = threading.Event()
        self.timer = None if tick is None else threading.Thread(target=self._tick, args=(tick,), daemon=True)
        if self.timer is not None:
            self.timer.start()

    def __call__(self, step: Step) -> None:
        with self.lock:
            now = self.clock()
            if self.step is None or self.step.phase != step.phase:
                self._end_line()
                # A terminal shows a new phase at once; a log waits an interval.
                self.started, self.printed = now, False
                self.drawn = now - self.interval if self.tty else now
            self.step = step
            if step.finished:
                if self.tty or self.printed:
                    self._draw(now, final=True)
                self.step = None
            elif now - self.drawn >= self.interval:
                self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        assert self.step is not None
        text = describe(self.step, now - self.started)
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.drawn, self.printed = now, not final

    def _end_line(self) -> None:
        """A phase that ended without its finished step keeps its last line."""
        if self.tty and self.step is not None:
            self.stream.write("\n")
            self.step = None

    def _tick(self, every: float) -> None:
        while not self.stopped.wait(every):
            with self.lock:
                now = self.clock()
                if self.step is not None and now - self.drawn >= max(self.interval, every):
                    self._draw(now)

    def close(self) -> None:
        """Stop the timer and end an unfinished line."""
        self.stopped.set()
        if self.timer is not None:
            self.timer.join()
        with self.lock:
            self._end_line()


def progress_line(
    stream: TextIO, *, quiet: bool, environ: Mapping[str, str] | None = None
) -> ProgressLine | None:
    """The progress drawn for a build on ``stream``: on a terminal, or a CI
    log (``CI`` set to ``true`` or ``1``); None when ``quiet`` or neither."""
    env = os.environ if environ is None else environ
    if quiet:
        return None
    if stream.isatty():
        return ProgressLine(stream, tty=True)
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        return ProgressLine(stream, tty=False)
    return None
