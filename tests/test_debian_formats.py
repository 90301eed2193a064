"""python-apt where it is there, python-debian where it is not: same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mapping import RootfsOrigin, build_mapping, debian_formats
from tests.sample import build_sample

STATUS = b"""Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: zlib (1:1.3.dfsg-3.1)
Version: 1:1.3.dfsg-3.1+b1
Conffiles:
 /etc/zlib.conf 0123456789abcdef0123456789abcdef
Description: compression library - runtime
 zlib is a library implementing the deflate compression method.
 .
 Second paragraph.

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.41-12

"""

VERSIONS = [
    "1.0",
    "1.0-1",
    "1.0~rc1-1",
    "1:0.9",
    "1.0+b1",
    "1.0-1+deb13u1",
    "1.0-1~bpo12+1",
    "2.41-12",
    "2.41-9",
]


@pytest.fixture
def without_apt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in a venv without system site-packages: no apt_pkg."""
    debian_formats.apt_pkg.cache_clear()
    monkeypatch.setitem(sys.modules, "apt_pkg", None)  # import apt_pkg now raises ImportError
    assert debian_formats.apt_pkg() is None
    yield
    debian_formats.apt_pkg.cache_clear()


def _answers() -> tuple[list[dict[str, str]], list[int], str | None]:
    compared = [debian_formats.version_compare(a, b) for a in VERSIONS for b in VERSIONS]
    signs = [(c > 0) - (c < 0) for c in compared]
    return debian_formats.paragraphs(STATUS), signs, debian_formats.newest_version(VERSIONS)


def test_apt_pkg_is_used_when_there() -> None:
    debian_formats.apt_pkg.cache_clear()
    assert debian_formats.apt_pkg() is not None, "python3-apt is a test dependency (DESIGN.md)"


def test_both_paths_give_the_same_answers(without_apt: None) -> None:
    fallback = _answers()
    debian_formats.apt_pkg.cache_clear()
    sys.modules.pop("apt_pkg", None)
    assert debian_formats.apt_pkg() is not None
    assert _answers() == fallback
    paragraphs, signs, newest = fallback
    assert signs[VERSIONS.index("2.41-9") * len(VERSIONS) + VERSIONS.index("2.41-12")] == -1
    assert paragraphs[0]["Source"] == "zlib (1:1.3.dfsg-3.1)" and paragraphs[1]["Version"] == "2.41-12"
    assert paragraphs[0]["Conffiles"] == "/etc/zlib.conf 0123456789abcdef0123456789abcdef"
    assert newest == "1:0.9"  # the epoch wins
    assert debian_formats.version_compare("1.0~rc1-1", "1.0-1") < 0


def test_damaged_status_is_read_leniently_either_way(without_apt: None) -> None:
    cut = STATUS[: STATUS.index(b"Status:", STATUS.index(b"libc6")) + 4]
    fallback = debian_formats.paragraphs(cut)
    debian_formats.apt_pkg.cache_clear()
    sys.modules.pop("apt_pkg", None)
    # apt refuses the whole file: the lenient parser reads what it can.
    assert debian_formats.paragraphs(cut) == fallback
    assert [p.get("Package") for p in fallback] == ["zlib1g", "libc6"]


def test_mapping_is_the_same_without_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = build_sample(tmp_path / "t")
    with_apt = build_mapping(RootfsOrigin(str(root)))
    debian_formats.apt_pkg.cache_clear()
    monkeypatch.setitem(sys.modules, "apt_pkg", None)
    try:
        assert build_mapping(RootfsOrigin(str(root))).to_json() == with_apt.to_json()
    finally:
        debian_formats.apt_pkg.cache_clear()


def test_map_rootfs_runs_without_apt_and_gi(tmp_path: Path) -> None:
    # What a venv without system site-packages sees: neither apt_pkg nor gi.
    root = build_sample(tmp_path / "t")
    code = (
        "import sys\n"
        "sys.modules['apt_pkg'] = None\n"
        "sys.modules['gi'] = None\n"
        "from encapsulate.cli.main import debchunk_main\n"
        "sys.argv = ['debchunk', 'map', '--rootfs', sys.argv[1], '--json']\n"
        "sys.exit(debchunk_main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads(proc.stdout)["components"]
        == build_mapping(RootfsOrigin(str(root))).to_json()["components"]
    )


# Status files as a stranger's image may hold them: python3-apt 2.6 crashed
# (SIGSEGV) on a field name that is not UTF-8, and raised KeyError on a name
# holding a NUL byte.
_HOSTILE_STATUS = [
    b"\x80:b\n",
    b"\xff: x\n",
    b"P\x00: x\n",
    b"A: \xff\n",
    b"Package: a\n\x00\n\nPackage: \xfe\n",
]
_READ_ALL = """
import random, sys
from mapping import debian_formats
cases = [bytes.fromhex(h) for h in sys.argv[1:]]
rng = random.Random(7)
base = b"Package: foo\\nStatus: install ok installed\\nVersion: 1.0\\n\\nPackage: bar\\nVersion: 2\\n"
for _ in range(300):
    data = bytearray(base * rng.randint(1, 4))
    for _ in range(rng.randint(1, 12)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    cases.append(bytes(data))
cases += [rng.randbytes(rng.randint(1, 3000)) for _ in range(100)]
for data in cases:
    for paragraph in debian_formats.paragraphs(data):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in paragraph.items())
print(len(cases))
"""


def test_a_status_file_from_a_stranger_is_read_without_crashing() -> None:
    """Hand-written and 400 random or mutated status files, in a child (a
    crash would take pytest down): read, never a signal or an exception."""
    proc = subprocess.run(
        [sys.executable, "-c", _READ_ALL, *(data.hex() for data in _HOSTILE_STATUS)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == str(len(_HOSTILE_STATUS) + 400)
    assert debian_formats.paragraphs(b"\x80: b\n") == [{"\ufffd": "b"}]
