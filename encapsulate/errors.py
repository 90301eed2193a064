"""The encapsulate stage's errors."""

from __future__ import annotations


class EncapsulateError(Exception):
    """An image cannot be written or read; the message names what is at fault
    (``where``), what happened (``what``) and what to do (``hint``)."""

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.what, self.where, self.hint = what, where, hint
        super().__init__("".join((f"{where}: " if where else "", what, f"; {hint}" if hint else "")))


class ConfigError(EncapsulateError):
    """Options that do not go together, or one out of range: a usage error
    (the command line exits 2)."""
