"""The mapping stage's error type and warning channel."""

from __future__ import annotations

import logging

log = logging.getLogger("debchunk.mapping")


class MappingError(Exception):
    """The tree cannot be mapped; the message names what is at fault and what to do."""


def warn(message: str) -> None:
    """Report something the mapping worked around."""
    log.warning(message)


def show(path: str) -> str:
    """A path as it is printed in messages: non-UTF-8 bytes escaped, never raising."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") or "."
