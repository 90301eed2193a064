"""The encapsulate stage's errors (``mapping.DebchunkError`` is their base)."""

from __future__ import annotations

from mapping import DebchunkError


class EncapsulateError(DebchunkError):
    """An image cannot be written or read; the message names what is at fault
    (``where``), what happened (``what``) and what to do (``hint``)."""


class ConfigError(EncapsulateError):
    """Options that do not go together, or one out of range: a usage error
    (the command line exits 2)."""
