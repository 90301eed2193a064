"""Plain-format mtimes keep Python fast: on a real trixie tree with python3,
every ``.pyc`` Debian compiled at install time still matches its source after
the image is unpacked, and a rebuild at a later date writes the same component
layers."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from benches.debtrees import MINIMAL_PACKAGES, TreeSpec, build_tree
from encapsulate import RootfsOrigin
from tests.images import EPOCH, build, digests, umoci_unpack

pytestmark = pytest.mark.realtree


def stale_pycs(root: Path) -> tuple[int, list[str]]:
    """The number of timestamp-checked ``.pyc`` files below ``root``, and those
    whose recorded source mtime or size (PEP 552 header: magic, flags, mtime,
    size) is not their source's: Python would recompile those at every start."""
    checked, stale = 0, []
    for top, _, files in os.walk(root):
        if not top.endswith("/__pycache__"):
            continue
        for name in files:
            if not name.endswith(".pyc"):
                continue
            with open(os.path.join(top, name), "rb") as f:
                header = f.read(16)
            _, flags, mtime, size = struct.unpack("<4sIII", header)
            if flags != 0:  # hash-based: no mtime to check
                continue
            source = Path(top).parent / (name.split(".", 1)[0] + ".py")
            if not source.exists():
                continue
            st = source.stat()
            checked += 1
            if (mtime, size) != (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF):
                stale.append(str(source.relative_to(root)))
    return checked, stale


def test_pyc_files_stay_valid_and_a_later_date_keeps_the_layers(tmp_path: Path) -> None:
    tree = build_tree(TreeSpec("trixie", include=(*MINIMAL_PACKAGES, "python3")))
    checked, stale = stale_pycs(tree)
    assert checked > 500 and stale == []  # Debian's own tree, as installed
    origin = RootfsOrigin(str(tree))
    first = build(origin, f"oci:{tmp_path}/img:1", max_layers=32)
    rootfs = umoci_unpack(tmp_path / "img", "1", tmp_path / "unpacked")
    unpacked_checked, unpacked_stale = stale_pycs(rootfs)
    assert unpacked_checked == checked and unpacked_stale == []
    # A build a month later of the same tree, planned with the first as its
    # prior (as an update is): only the first layer (directories, at the
    # image's time) differs.
    later = build(
        origin,
        f"oci:{tmp_path}/img:2",
        max_layers=32,
        epoch=EPOCH + 30 * 86_400,
        prior=f"oci:{tmp_path}/img:1",
    )
    assert later.layer_components == first.layer_components
    before, after = digests(first), digests(later)
    assert len(before) == len(after) > 10
    assert before[0] != after[0] and before[1:] == after[1:]
