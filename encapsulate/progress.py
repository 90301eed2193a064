"""What a build reports as it goes: one ``Step`` per change, given to the
callback ``build_image(config, progress=...)`` takes (the command line draws
them; the library says nothing without one).

Phases, in order: ``mapping`` (entries read, bytes of their content),
``planning``, ``writing`` (layers done of all, uncompressed bytes done of
all, layers taken instead of written) and ``delivery`` (the archive or
``skopeo copy``).  Each phase ends with a step whose ``finished`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Where a build is: its phase and, when known, how far it is."""

    phase: str
    done: int = 0
    total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    taken: int = 0
    finished: bool = False


Progress = Callable[[Step], None]
