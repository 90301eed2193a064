"""What the ``debchunk`` subcommands and ``container-encapsulate`` share on
the command line: ``--quiet``/``--debug``, the boolean ``--tls-verify`` (and
``--dest-tls-verify``) option, and JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def common_options(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--debug``, which every command takes."""
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug messages")


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


def tls_verify_option(parser: argparse.ArgumentParser, flag: str = "--tls-verify") -> None:
    """``--tls-verify BOOL`` (``--dest-tls-verify`` for a destination): None
    when not given, so skopeo keeps its default."""
    parser.add_argument(
        flag,
        type=boolean,
        metavar="BOOL",
        help="verify the registry's TLS certificate: true or false (passed to skopeo; default true)",
    )


def print_json(value: Any) -> None:
    """``value`` on stdout as indented JSON, with a final newline."""
    json.dump(value, sys.stdout, indent=1)
    sys.stdout.write("\n")
