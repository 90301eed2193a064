"""dpkg's path filters, read from a tree's own dpkg configuration.

Slim images drop documentation, man pages and translations with
``path-exclude`` lines in ``/etc/dpkg/dpkg.cfg.d/*`` (re-including some
with ``path-include``): dpkg then never unpacks those files, though its
database still lists them.  Such files are expected to be missing; only
others are worth a warning.

What is read, as dpkg reads it (dpkg(1) "FILES" and "--path-exclude",
dpkg.cfg(5); the facts are from dpkg's manual pages, the code is this
project's):

- ``/etc/dpkg/dpkg.cfg``, then each file of ``/etc/dpkg/dpkg.cfg.d`` whose
  name is letters, digits, ``-`` and ``_`` only, in the byte order of names;
- one option per line, as on the command line without the dashes, its value
  after a space or ``=``, quotes around it dropped; ``#`` starts a comment;
- ``path-exclude`` and ``path-include`` patterns are fnmatch(3) globs without
  flags (``*`` also matches ``/``, a backslash quotes the next character)
  matched against the absolute path; the last pattern that matches decides.

The configuration comes from the image, so from anyone: a file over
``MAX_CONFIG`` bytes is left out, and patterns are matched without
backtracking (``Glob``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import show, warn
from .tree import Tree

# The most debchunk reads of one dpkg configuration file.
MAX_CONFIG = 1 << 20
_CONFIG = "etc/dpkg/dpkg.cfg"
_CONFIG_DIR = "etc/dpkg/dpkg.cfg.d"
# Where an OSTree-laid-out tree keeps /etc.
_ROOTS = ("", "usr/")
_NAME = re.compile(r"[0-9A-Za-z_-]+")
_OPTIONS = {"path-exclude": False, "path-include": True}


class Glob:
    """An fnmatch(3) pattern without flags: ``*`` any string (``/`` too),
    ``?`` any character, ``[...]`` a set (``!`` or ``^`` first negates it,
    ``]`` first is a member), a backslash quotes the next character; an
    unclosed ``[`` is itself.

    Matched without backtracking over stars, in time linear in the pattern
    times the path: the parts between stars each match one character per
    token, the first at the start, the last at the end, each other at its
    leftmost place after the one before (a star takes anything, so the
    leftmost place is never worse).  A regular expression of the whole
    pattern would backtrack exponentially on ``*a*a*a*...b``."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # A pattern fnmatch refuses (a trailing backslash) matches nothing;
        # so does one with a POSIX class, collating symbol or equivalence
        # class in a set ([:alpha:], [.a.], [=a=]), which is not read here.
        self._never = False
        parts: list[list[str]] = [[]]
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            i += 1
            if c == "*":
                parts.append([])
            elif c == "?":
                parts[-1].append(".")
            elif c == "\\":
                if i == n:
                    self._never = True
                    break
                parts[-1].append(re.escape(pattern[i]))
                i += 1
            elif c == "[" and (closed := _set_end(pattern, i)) is not None:
                body = pattern[i:closed]
                if any(f"[{k}" in body for k in ":.="):
                    self._never = True
                    break
                parts[-1].append(_set_regex(body))
                i = closed + 1
            else:
                parts[-1].append(re.escape(c))
        self._widths = [len(p) for p in parts]
        self._parts = [re.compile("".join(p), re.DOTALL) for p in parts]

    def matches(self, path: str) -> bool:
        """Whether ``path`` matches the whole pattern."""
        parts, widths = self._parts, self._widths
        if self._never:
            return False
        if len(parts) == 1:
            return len(path) == widths[0] and parts[0].fullmatch(path) is not None
        head, tail = widths[0], widths[-1]
        if len(path) < head + tail or parts[0].match(path) is None:
            return False
        end = len(path) - tail
        if parts[-1].fullmatch(path, end) is None:
            return False
        at = head
        for part, width in zip(parts[1:-1], widths[1:-1], strict=True):
            if width == 0:
                continue
            found = part.search(path, at, end)
            if found is None:
                return False
            at = found.end()
        return True


def _set_end(pattern: str, i: int) -> int | None:
    """Where the set starting at ``pattern[i]`` (after its ``[``) closes: at
    the first ``]`` that is not its first member nor quoted; None if none."""
    n = len(pattern)
    if i < n and pattern[i] in "!^":
        i += 1
    if i < n and pattern[i] == "]":
        i += 1
    while i < n and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i if i < n else None


def _set_regex(body: str) -> str:
    """A set's body (between its brackets) as a regular expression set:
    members and ranges (``a-z``; a reversed one holds nothing), each
    character quoted."""
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    chars: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 1
        chars.append(body[i])
        i += 1
    members: list[str] = []
    k = 0
    while k < len(chars):
        if k + 2 < len(chars) and chars[k + 1] == "-":
            lo, hi = chars[k], chars[k + 2]
            if lo <= hi:
                members.append(f"{re.escape(lo)}-{re.escape(hi)}")
            k += 3
        else:
            members.append(re.escape(chars[k]))
            k += 1
    if not members:
        return "[^\\s\\S]" if not negate else "[\\s\\S]"
    return f"[{'^' if negate else ''}{''.join(members)}]"


@dataclass(frozen=True)
class PathFilters:
    """dpkg's ``path-exclude``/``path-include`` patterns, in order: (whether
    the pattern includes, the pattern)."""

    filters: tuple[tuple[bool, Glob], ...] = ()

    def excluded(self, path: str) -> bool:
        """Whether dpkg leaves the absolute ``path`` out when it unpacks: the
        last pattern that matches decides."""
        for include, glob in reversed(self.filters):
            if glob.matches(path):
                return not include
        return False

    def __bool__(self) -> bool:
        return bool(self.filters)


def _options(text: str) -> list[tuple[str, str]]:
    """(option, value) of each line of a dpkg configuration file."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([^\s=]+)\s*(?:[=\s]\s*(.*))?$", line)
        if match is None:
            continue
        name, value = match[1], (match[2] or "").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found.append((name, value))
    return found


def _read(tree: Tree, path: str) -> str | None:
    data = tree.read_bytes(path, MAX_CONFIG + 1)
    if data is None:
        return None
    if len(data) > MAX_CONFIG:
        warn(f"{tree.description}: {show(path)} is over {MAX_CONFIG} bytes; its dpkg options are ignored")
        return None
    return data.decode("utf-8", "replace")


def path_filters(tree: Tree) -> PathFilters:
    """The path filters dpkg applied when it unpacked the packages of ``tree``
    (none when it has no dpkg configuration)."""
    filters: list[tuple[bool, Glob]] = []
    for root in _ROOTS:
        config_dir = tree.resolve(root + _CONFIG_DIR)
        files = [root + _CONFIG]
        if config_dir is not None and config_dir in tree.index:
            names = sorted(
                (e.path.rpartition("/")[2] for e in tree.children(config_dir)),
                key=lambda name: name.encode("utf-8", "surrogateescape"),
            )
            files += [f"{config_dir}/{name}" for name in names if _NAME.fullmatch(name)]
        for path in files:
            text = _read(tree, path)
            if text is None:
                continue
            for name, value in _options(text):
                if name in _OPTIONS and value:
                    filters.append((_OPTIONS[name], Glob(value)))
        if filters:
            break
    return PathFilters(tuple(filters))
