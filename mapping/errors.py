"""The mapping stage's error type and warning channel."""

from __future__ import annotations

import logging

log = logging.getLogger("debchunk.mapping")


class DebchunkError(Exception):
    """The base of every stage's error: ``what`` went wrong, ``where`` (the file,
    option or object at fault, when there is one) and ``hint`` (what to do).
    ``str(e)`` is ``"where: what; hint"``, the parts that are absent left out,
    and ``show``n: one printable line whatever an image put into it, so a
    caller prints it as it is."""

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        message = f"{where}: {what}" if where else what
        super().__init__(show(f"{message}; {hint}" if hint else message))


class MappingError(DebchunkError):
    """The tree cannot be mapped; the message names what is at fault and what to do."""


class MissingLibostreeError(DebchunkError):
    """libostree's Python bindings (python3-gi, gir1.2-ostree-1.0) are not
    importable: this Python cannot read or write OSTree commits (the command
    line exits 1).  Raised by ``mapping.libostree`` when imported."""


def warn(message: str) -> None:
    """Report something the mapping worked around."""
    log.warning(message)


# How control characters are written in messages (the rest as \\xNN or \\uNNNN).
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def show(path: str) -> str:
    """A path (or any string from an image) as it is printed in messages:
    non-UTF-8 bytes as ``\\xNN`` and every character that is not printable
    (newlines, escape sequences, other controls) escaped, so a message stays
    one line and writes nothing to a terminal but text; never raising."""
    try:
        text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        # A lone surrogate no byte stands for (as JSON's "\ud800" reads):
        # escaped below, as every unprintable character is.
        text = path
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escaped(c) for c in text)
    return text or "."
