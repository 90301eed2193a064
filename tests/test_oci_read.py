"""Reading images back (``encapsulate.oci.read``): a parsed ``ImageRef`` or
its text, every local form of one image (a layout, an archive read in
place, a compressed archive unpacked) gives the same typed manifest and
config; ``local_layout`` gives the blobs and cleans up after itself."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY, parse_imgref
from encapsulate.oci.model import Digest
from encapsulate.oci.read import ArchiveBlobs, local_layout, open_image
from mapping import MappingError
from mapping.space import MiB, SpaceAccount, SpaceLimits, accounted
from tests.images import build


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> Path:
    root = tmp_path_factory.mktemp("read")
    build(RootfsOrigin(str(sample_tree)), f"oci:{root}/img:v1", max_layers=3)
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{root}/img:v1", f"oci-archive:{root}/img.tar:v1"], check=True
    )
    (root / "img.tar.gz").write_bytes(gzip.compress((root / "img.tar").read_bytes(), mtime=0))
    return root


def test_every_local_form_reads_the_same(image: Path) -> None:
    seen = []
    for text, blobs in (
        (f"oci:{image}/img:v1", False),
        (f"oci-archive:{image}/img.tar:v1", False),
        (f"oci-archive:{image}/img.tar.gz:v1", False),
        (f"oci-archive:{image}/img.tar:v1", True),
    ):
        with open_image(parse_imgref(text), DEFAULT_REGISTRY, blobs=blobs) as opened:
            assert isinstance(opened.manifest_digest, Digest) and opened.layers == opened.manifest.layers
            assert (opened.layout is not None) == (blobs or text.endswith((".gz:v1", "img:v1")))
            if "img.tar:" in text and not blobs:
                assert isinstance(opened.store, ArchiveBlobs)
            seen.append((opened.manifest, opened.config))
        with open_image(text, DEFAULT_REGISTRY, blobs=blobs) as again:
            assert (again.manifest, again.config) == seen[-1]
    assert all(s == seen[0] for s in seen)


def test_local_layout_cleans_up(image: Path) -> None:
    with local_layout(f"oci-archive:{image}/img.tar:v1") as (layout, tag):
        where = layout.path
        assert tag == "v1" and os.path.isfile(os.path.join(where, "oci-layout"))
    assert not os.path.exists(where)
    with local_layout(f"oci:{image}/img:v1") as (layout, tag):
        assert layout.path == f"{image}/img" and tag == "v1"
    with (
        pytest.raises(EncapsulateError, match="no such directory; give one as oci:DIR"),
        local_layout(f"oci:{image}/missing"),
    ):
        pass


def test_unpacking_a_compressed_archive_is_metered(tmp_path: Path) -> None:
    """A gzip'd archive of a few hundred KB holding 200 MiB of zeros (an
    archive bomb) stops at the budget of the directory it is unpacked
    under, and the partial copy is removed."""
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        info.size = 200 * MiB
        tar.addfile(info, _Zeros(info.size))
    work = tmp_path / "work"
    work.mkdir()
    account = SpaceAccount(SpaceLimits(budget=20 * MiB, budget_hint="allow more"), str(work))
    with (
        accounted(str(work), account),
        pytest.raises(MappingError, match=r"unpacking oci-archive:.*budget of 20 MiB") as raised,
        local_layout(f"oci-archive:{archive}", tmpdir=str(work)),
    ):
        pytest.fail("the archive was unpacked whole")
    assert raised.value.where == str(work) and raised.value.hint == "allow more"
    assert account.used <= 20 * MiB
    assert list(work.iterdir()) == []


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read as a file."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left)
        buffer[:n] = bytes(n)
        self._left -= n
        return n
