"""Converters the settings table shares: the BOOL of ``--tls-verify`` and
``--dest-tls-verify``."""

from __future__ import annotations

import argparse

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def boolean(value: str) -> bool:
    """A BOOL argument: ``true``, ``1`` or ``yes`` is true and ``false``, ``0``
    or ``no`` false (any case); anything else is a usage error, never a
    silent false (``--dest-tls-verify maybe`` must not turn TLS off)."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean: give true or false")
