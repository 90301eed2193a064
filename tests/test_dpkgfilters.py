"""dpkg's path filters from a tree's dpkg configuration (``mapping.dpkgfilters``):
the glob matcher against the C library's fnmatch, how the configuration is
read, and the missing-files warning of a slim image."""

from __future__ import annotations

import ctypes
import logging
import random
import time
from pathlib import Path

import pytest

from mapping import RootfsOrigin, build_mapping, read_tree
from mapping.dpkgfilters import Glob, path_filters
from tests.sample import Pkg, SampleTree, day


def test_glob_matches_as_the_c_librarys_fnmatch() -> None:
    """Random patterns and paths over the characters that mean something to
    fnmatch(3), flags 0 as dpkg calls it: the same answer every time.
    Classes, collating symbols and equivalence classes in sets ([:alpha:],
    [.a.], [=a=]) are left out: debchunk matches nothing with them."""
    libc = ctypes.CDLL("libc.so.6")
    libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    rng = random.Random(20261207)
    alphabet = "ab/*?[]!^\\-."
    cases = 0
    while cases < 30_000:
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if any(f"[{k}" in pattern for k in ":.="):
            continue
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        expected = libc.fnmatch(pattern.encode(), path.encode(), 0) == 0
        assert Glob(pattern).matches(path) == expected, (pattern, path)
        cases += 1
    for pattern, path in [
        ("/usr/share/doc/*", "/usr/share/doc/apt/examples/x"),
        ("/usr/share/locale/*/LC_MESSAGES/*.mo", "/usr/share/locale/de/LC_MESSAGES/apt.mo"),
        ("/usr/share/man/[a-z][a-z]/*", "/usr/share/man/de/man1/ls.1.gz"),
    ]:
        assert Glob(pattern).matches(path) and libc.fnmatch(pattern.encode(), path.encode(), 0) == 0


def test_glob_never_backtracks() -> None:
    """A pattern from a stranger's image cannot stall the mapping: many stars
    over a long path cost time in proportion to their product."""
    started = time.perf_counter()
    path = "a" * 4000 + "c"
    cases = (("*a" * 40 + "*b", False), ("*a" * 40 + "*", True), ("*[!b]" * 40 + "*c?", False))
    for pattern, expected in cases:
        assert Glob(pattern).matches(path) is expected
    assert time.perf_counter() - started < 1.0


def _tree_with_config(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_configuration_is_read_as_dpkg_reads_it(tmp_path: Path) -> None:
    """dpkg.cfg first, then dpkg.cfg.d's files whose names dpkg reads, in
    order; options after a space or '=', quotes dropped; the last pattern
    that matches decides."""
    root = _tree_with_config(
        tmp_path / "t",
        {
            "etc/dpkg/dpkg.cfg": "# defaults\npath-exclude /usr/share/man/*\n",
            "etc/dpkg/dpkg.cfg.d/10-docs": 'path-exclude="/usr/share/doc/*"\nforce-unsafe-io\n',
            "etc/dpkg/dpkg.cfg.d/20_keep": "  path-include = /usr/share/doc/*/copyright  \n",
            # Names dpkg skips: a dot in them (backups, packaging leftovers).
            "etc/dpkg/dpkg.cfg.d/30-keep.dpkg-old": "path-include /usr/share/man/*\n",
            "etc/dpkg/dpkg.cfg.d/.hidden": "path-include /usr/share/man/*\n",
        },
    )
    filters = path_filters(read_tree(RootfsOrigin(str(root))))
    assert [(include, glob.pattern) for include, glob in filters.filters] == [
        (False, "/usr/share/man/*"),
        (False, "/usr/share/doc/*"),
        (True, "/usr/share/doc/*/copyright"),
    ]
    assert filters.excluded("/usr/share/man/man1/ls.1.gz")
    assert filters.excluded("/usr/share/doc/apt/changelog.gz")
    assert not filters.excluded("/usr/share/doc/apt/copyright")
    assert not filters.excluded("/usr/bin/apt")
    assert not path_filters(read_tree(RootfsOrigin(str(_tree_with_config(tmp_path / "none", {})))))


def test_a_slim_image_has_no_missing_files_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A package whose documentation and translations dpkg's own
    path-exclude lines kept out: no warning.  A file that really went
    missing is still reported, alone, in one warning."""
    t = SampleTree(tmp_path / "t")
    pkg = t.add(
        Pkg(
            "tool",
            files={
                "/usr/bin/tool": b"tool",
                "/usr/share/doc/tool/README": b"readme",
                "/usr/share/doc/tool/copyright": b"copyright",
                "/usr/share/locale/de/LC_MESSAGES/tool.mo": b"mo",
                "/usr/lib/tool/data": b"data",
            },
            changelog=[day(1)],
        )
    )
    assert pkg.files
    excludes = (
        "path-exclude=/usr/share/doc/*\n"
        "path-include=/usr/share/doc/*/copyright\n"
        "path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo\n"
    )
    t.write("/etc/dpkg/dpkg.cfg.d/excludes", excludes.encode())
    root = t.finish()
    for gone in ("usr/share/doc/tool/README", "usr/share/locale/de/LC_MESSAGES/tool.mo"):
        (root / gone).unlink()
    (root / "usr/share/doc/tool/changelog.Debian.gz").unlink()
    with caplog.at_level(logging.WARNING):
        build_mapping(RootfsOrigin(str(root)))
    assert "absent" not in caplog.text
    (root / "usr/lib/tool/data").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_mapping(RootfsOrigin(str(root)))
    warnings = [r.getMessage() for r in caplog.records if "absent" in r.getMessage()]
    assert len(warnings) == 1 and "1 file(s)" in warnings[0] and "/usr/lib/tool/data" in warnings[0]
