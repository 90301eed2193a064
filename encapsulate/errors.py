"""The encapsulate stage's error type."""

from __future__ import annotations


class EncapsulateError(Exception):
    """An image cannot be written or read; the message names what is at fault
    and what to do."""
