"""What a client downloads when the same packages are built again, and when
one package changes, read from the images themselves (``debchunk diff`` and
the new layers' tar entries).

Every build rewrites the initramfs and a few state files; the dpkg database
changes only when a package does.  So a rebuild must pull the initramfs's
layer and nothing else, and a package update must pull the database without
dragging other packages with it (docs/layers.md, where the database goes)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from encapsulate import BuildConfig, RootfsOrigin, build_image
from encapsulate.tools.diff import ImageDiff, diff_images
from mapping.ownership import is_volatile_path
from tests.images import EPOCH, layer_entries
from tests.sample import ADMINDIR, KVER, blob, build_sample

INITRAMFS = f"usr/lib/modules/{KVER}/initramfs.img"
STATUS = f"{ADMINDIR}/status"
DIRECTORY = b"5"


def _builds(tmp_path: Path, max_layers: int) -> tuple[Path, ImageDiff, ImageDiff]:
    """Three images of the sample tree, each planned with the one before as
    prior: v2 rebuilds v1's packages (only what every build writes differs),
    v3 updates nano.  The diffs v1 -> v2 and v2 -> v3."""
    layout = tmp_path / "images"
    prior = None
    for name, build, nano_updated in (("v1", 1, False), ("v2", 2, False), ("v3", 3, True)):
        root = build_sample(tmp_path / name)
        (root / INITRAMFS).write_bytes(blob(f"initramfs/{build}", 4_000_000))
        if nano_updated:
            (root / "usr/bin/nano").write_bytes(blob("nano/8.4-2", 300_000))
            status = root / STATUS
            status.write_text(status.read_text().replace("Version: 8.4-1\n", "Version: 8.4-2\n"))
        build_image(
            BuildConfig(
                RootfsOrigin(str(root)),
                f"oci:{layout}:{name}",
                max_layers=max_layers,
                epoch=EPOCH,
                prior=prior,
            )
        )
        prior = f"oci:{layout}:{name}"
    return (
        layout,
        diff_images(f"oci:{layout}:v1", f"oci:{layout}:v2"),
        diff_images(f"oci:{layout}:v2", f"oci:{layout}:v3"),
    )


def _pulled(layout: Path, d: ImageDiff) -> list[set[str]]:
    """The paths (not directories) of each layer a client of the old image pulls."""
    return [
        {path for path, entry in layer_entries(layout, layer.digest).items() if entry[0] != DIRECTORY}
        for layer, reused in zip(d.new.layers, d.reused, strict=True)
        if not reused
    ]


@pytest.mark.parametrize("max_layers", [8, 64])
def test_a_rebuild_pulls_only_what_every_build_rewrites(tmp_path: Path, max_layers: int) -> None:
    layout, rebuild, update = _builds(tmp_path, max_layers)
    # The rebuild: one layer, the initramfs and the state files; not the database.
    pulled = _pulled(layout, rebuild)
    assert len(pulled) == 1, pulled
    assert INITRAMFS in pulled[0]
    assert STATUS not in pulled[0]
    assert all(is_volatile_path(p) or p == "usr/bin/editor" for p in pulled[0]), sorted(pulled[0])
    # The bytes pulled are the initramfs and the state files, which every
    # build writes (here as they were): the layer holds nothing else.
    rebuilt = tmp_path / "v2"
    assert rebuild.ideal_bytes == 4_000_000
    assert rebuild.download_content_bytes == sum(
        (rebuilt / p).stat().st_size
        for p in pulled[0]
        if (rebuilt / p).is_file() and not (rebuilt / p).is_symlink()
    )
    # The update: the database comes in a layer of its own, nano in its layer,
    # and the initramfs again; nothing else.
    pulled = _pulled(layout, update)
    database = [paths for paths in pulled if STATUS in paths]
    assert len(database) == 1
    assert all(p.startswith(ADMINDIR + "/") or p == "var/lib/dpkg" for p in database[0]), sorted(database[0])
    assert any("usr/bin/nano" in paths for paths in pulled)
    assert any(INITRAMFS in paths for paths in pulled)
    assert len(pulled) == 3


def test_with_the_initramfs_every_rebuild_would_pull_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: with the database counted among what every
    build rewrites, the rebuild pulls it with the initramfs."""
    monkeypatch.setattr(importlib.import_module("chunker.pack"), "ALWAYS", 0.0)
    layout, rebuild, _ = _builds(tmp_path, 8)
    pulled = _pulled(layout, rebuild)
    assert len(pulled) == 1
    assert {INITRAMFS, STATUS} <= pulled[0]
