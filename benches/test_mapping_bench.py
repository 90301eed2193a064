"""pytest-benchmark timings of Stage 1 (``mapping.build_mapping``) on the small
generated Debian-like sample of ``tests.sample``: once read from an OSTree commit
(bare-user repo, through libostree) and once from its root directory (lstat walk
and sha256 of every file).  Each benchmark also checks what the mapping found, so
a fast wrong answer fails.

Run with ``python -m pytest benches/test_mapping_bench.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mapping import CommitOrigin, Mapping, RootfsOrigin, build_mapping
from tests.sample import KVER, build_sample, commit

REF = "debian/sample"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample root tree and a bare-user repo holding it as ``REF``."""
    base = tmp_path_factory.mktemp("mapping-bench")
    tree = build_sample(base / "tree")
    commit(tree, base / "repo", REF)
    return tree, base / "repo"


def check_sample_mapping(m: Mapping) -> None:
    """What the sample must map to, whichever way it was read."""
    glibc = m.component("glibc")
    assert glibc.kind == "package"
    assert set(glibc.packages) == {"libc6:amd64", "libc-bin", "locales"}
    assert glibc.version == "2.41-12"
    assert m.admindir == "usr/share/dpkg/database"
    assert m.reference_date is not None and m.reference_date.date().isoformat() == "2026-06-01"
    owners = {
        "usr/lib/x86_64-linux-gnu/libc.so.6": "glibc",
        "usr/sbin/ldconfig": "glibc",
        f"usr/lib/modules/{KVER}/vmlinuz": "linux-signed-amd64",
        "usr/lib/x86_64-linux-gnu/libsystemd.so.0": "systemd",
        "usr/etc/machine-id": "volatile",
        f"usr/lib/modules/{KVER}/initramfs.img": "volatile:initramfs",
        "usr/lib/firmware/blob.bin": "bigfile:usr/lib/firmware/blob.bin",
        "opt/app/bin/app": "app",
        "opt/app/plugins/extra.so": "app-extra",
        "usr/etc/hostname": "unpackaged",
    }
    for path, name in owners.items():
        owner = m.owner(path)
        assert owner is not None and owner.name == name, f"{path}: owned by {owner}, not {name}"
    kinds = {c.kind for c in m.components}
    assert kinds == {"package", "component", "bigfile", "volatile", "unpackaged"}


def test_build_mapping_commit(benchmark: Any, sample: tuple[Path, Path]) -> None:
    """Map the sample commit through libostree."""
    _, repo = sample
    m = benchmark(build_mapping, CommitOrigin(str(repo), REF))
    check_sample_mapping(m)
    assert m.tree is not None
    libc = m.tree.get("usr/lib/x86_64-linux-gnu/libc.so.6")
    # A commit's content ids are OSTree content checksums (64 hex digits).
    assert libc is not None and libc.content_id is not None and len(libc.content_id) == 64


def test_build_mapping_rootfs(benchmark: Any, sample: tuple[Path, Path]) -> None:
    """Map the sample's root directory (lstat walk, sha256 of each file)."""
    tree, repo = sample
    m = benchmark(build_mapping, RootfsOrigin(str(tree)))
    check_sample_mapping(m)
    # Both readers must agree on every component.
    assert m.components == build_mapping(CommitOrigin(str(repo), REF)).components
