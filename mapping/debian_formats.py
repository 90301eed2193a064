"""Debian's own formats, read with python-apt where it is there.

``apt_pkg`` (Debian's python3-apt) is the reference implementation of version
comparison and of deb822 control files, and its parser is in C.  It is a
system package, not on PyPI, so a venv without system site-packages has no
``apt_pkg``: then python-debian's pure-Python equivalents are used, which
give the same results (tests/test_debian_formats.py; the measurements are in
docs/dependencies.md).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
from collections.abc import Iterable
from types import ModuleType

from debian import debian_support
from debian.deb822 import Deb822


@functools.cache
def apt_pkg() -> ModuleType | None:
    """The initialised ``apt_pkg`` module, or None when it is not installed."""
    try:
        module = importlib.import_module("apt_pkg")
    except ImportError:
        return None
    module.init_system()
    return module


def version_compare(a: str, b: str) -> int:
    """Compare two Debian versions (deb-version(7)): < 0, 0 or > 0."""
    apt = apt_pkg()
    if apt is not None:
        return int(apt.version_compare(a, b))
    return int(debian_support.version_compare(a, b))


def newest_version(versions: Iterable[str]) -> str | None:
    """The highest of ``versions`` by Debian's ordering (of equal ones, the
    smallest string, so the answer does not depend on iteration order)."""
    best: str | None = None
    for v in sorted(versions):
        if best is None or version_compare(v, best) > 0:
            best = v
    return best


def paragraphs(data: bytes) -> list[dict[str, str]]:
    """The paragraphs of a deb822 file (dpkg ``status``, ``Packages``), as
    field -> value with surrounding whitespace removed.  ``apt_pkg.TagFile``
    parses it when it is there and the file is well formed; otherwise (or for
    a damaged file, which apt refuses whole) python-debian's lenient parser
    reads what it can."""
    apt = apt_pkg()
    if apt is not None:
        with contextlib.suppress(apt.Error, SystemError, UnicodeDecodeError):
            return _tagfile(apt, data)
    # No apt_pkg, or a damaged file apt refuses whole: the lenient parser.
    return [
        {key: value.strip() for key, value in p.items()}
        for p in Deb822.iter_paragraphs(io.BytesIO(data), use_apt_pkg=False, encoding="utf-8")
    ]


def _tagfile(apt: ModuleType, data: bytes) -> list[dict[str, str]]:
    # TagFile reads from a file descriptor: an anonymous in-memory file holds
    # the bytes (they may come from an OSTree commit, not from disk).
    fd = os.memfd_create("deb822", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        f.write(data)
        f.seek(0)
        # A TagSection is not iterable: its keys() are the field names.
        return [{key: section[key] for key in section.keys()} for section in apt.TagFile(f)]  # noqa: SIM118
