"""A slim Debian image, as users make them: mmdebstrap with dpkg's own
path-exclude options for documentation, manual pages and translations (so
no Debian changelog is left), as one layer.  Re-chunked without
SOURCE_DATE_EPOCH, it takes its config's created time, says nothing of the
files dpkg kept out, and gives the same digest every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benches.debtrees import TreeSpec, build_tree
from tests.images import image_config, manifest, put_blob, store_image, write_index

# What slim images' Dockerfiles and mmdebstrap --dpkgopt lines exclude.
SLIM = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
)
CREATED = "2026-11-30T12:00:00Z"


@pytest.fixture(scope="module")
def slim_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The slim trixie tree (with nano, whose documentation dpkg kept out)
    as a one-layer image whose config says when it was created."""
    tree = build_tree(TreeSpec("trixie", include=("nano",), dpkgopts=SLIM))
    assert not list(tree.glob("usr/share/doc/*/changelog*"))
    layout = tmp_path_factory.mktemp("slim") / "img"
    layer = subprocess.run(
        ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "--sort=name", "-c", "."],
        check=True,
        capture_output=True,
    ).stdout
    descriptor = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **put_blob(layout, layer)}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [descriptor["digest"]]},
    }
    _, entry = store_image(layout, [descriptor], config)
    return write_index(layout, entry, "slim")


def test_a_slim_image_rechunks_quietly_and_reproducibly(slim_image: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    code = "import sys; from encapsulate.cli.main import debchunk_main; sys.exit(debchunk_main())"
    digests = []
    for run in ("one", "two"):
        out = tmp_path / run
        done = subprocess.run(
            [sys.executable, "-c", code, "rechunk", slim_image, f"oci:{out}:r", "--max-layers", "16"],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        assert "absent" not in done.stderr and "SOURCE_DATE_EPOCH" not in done.stderr, done.stderr
        digests.append(manifest(out, "r"))
        assert image_config(out, "r")["created"] == CREATED
    assert digests[0] == digests[1]
    assert json.dumps(digests[0]).count("sha256:") > 2
