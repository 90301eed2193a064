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
import os
from collections.abc import Iterable
from types import ModuleType

from debian import debian_support


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
    parses it when it is there and the file is UTF-8 without NUL bytes;
    otherwise (or for a damaged file, which apt refuses whole) python-debian's
    lenient parser reads what it can, bytes that are not UTF-8 read as U+FFFD.

    The file comes from an image, so from anyone: python3-apt 2.6's TagSection
    dereferences a null pointer for a field name that is not UTF-8 (``\\x80:
    b``), and gives a name cut at a NUL byte that it then cannot look up."""
    apt = apt_pkg()
    if apt is not None and _plain_utf8(data):
        with contextlib.suppress(apt.Error, SystemError, UnicodeDecodeError, KeyError):
            return _tagfile(apt, data)
    # No apt_pkg, or a file apt cannot be given or refuses whole: the lenient parser.
    return _lenient(data.decode("utf-8", "replace"))


def _lenient(text: str) -> list[dict[str, str]]:
    """deb822 as dpkg writes it, read without refusing anything (python-debian's
    parser raised ValueError on some damaged files): paragraphs apart by blank
    lines; ``Name: value`` lines, continued by lines that start with a space
    or a tab; comment lines and lines with no colon skipped; of a field given
    twice, the last."""
    found: list[dict[str, str]] = []
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        if not line.strip():
            if fields:
                found.append({k: "\n".join(v).strip() for k, v in fields.items()})
            fields, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                current.append(line)
        elif not line.startswith("#") and ":" in line:
            name, _, value = line.partition(":")
            current = fields[name.strip()] = [value]
        else:
            current = None
    if fields:
        found.append({k: "\n".join(v).strip() for k, v in fields.items()})
    return found


def _plain_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 and holds no NUL byte: what apt_pkg reads safely."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _tagfile(apt: ModuleType, data: bytes) -> list[dict[str, str]]:
    # TagFile reads from a file descriptor: an anonymous in-memory file holds
    # the bytes (they may come from an OSTree commit, not from disk).
    fd = os.memfd_create("deb822", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        f.write(data)
        f.seek(0)
        # A TagSection is not iterable: its keys() are the field names.
        return [{key: section[key] for key in section.keys()} for section in apt.TagFile(f)]  # noqa: SIM118
