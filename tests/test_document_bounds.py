"""An image's documents are read only up to a bound: a manifest or a config
past 4 MiB (containers/image's limits, so every image podman and skopeo read
is read) and a layout's index.json past 64 MiB are refused with one line
naming them, never read whole into memory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from encapsulate.oci.layout import MAX_CONFIG_BYTES, MAX_INDEX_JSON_BYTES, MAX_MANIFEST_BYTES
from tests.conftest import RunCli
from tests.images import put_blob, tar_of, write_index

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"


def _image(layout: Path, manifest_size: int | None = None, config_size: int | None = None) -> str:
    """A one-layer image whose config and manifest JSON are padded with
    trailing spaces (still valid JSON) to the sizes asked for; its IMGREF."""
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **put_blob(layout, tar_of({"a": b"a"}))}
    document: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    config = json.dumps(document).encode()
    config += b" " * ((config_size or len(config)) - len(config))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, **put_blob(layout, config)},
            "layers": [layer],
        }
    ).encode()
    manifest += b" " * ((manifest_size or len(manifest)) - len(manifest))
    return write_index(layout, {"mediaType": MEDIA_MANIFEST, **put_blob(layout, manifest)})


@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_documents_at_the_bounds_are_read(command: str, run_cli: RunCli, tmp_path: Path) -> None:
    ref = _image(tmp_path / "images", manifest_size=MAX_MANIFEST_BYTES, config_size=MAX_CONFIG_BYTES)
    proc = run_cli(command, ref)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("which", "size"),
    [("manifest", MAX_MANIFEST_BYTES + 1), ("config", MAX_CONFIG_BYTES + 1)],
)
def test_a_document_past_its_bound_is_refused(which: str, size: int, run_cli: RunCli, tmp_path: Path) -> None:
    layout = tmp_path / "images"
    ref = _image(layout, **{f"{which}_size": size})
    for command in ("inspect", "diff"):
        proc = run_cli(command, *([ref, ref] if command == "diff" else [ref]))
        assert proc.returncode == 1, (command, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert "larger than 4 MiB" in line and "blob sha256:" in line, line


def test_an_index_json_past_its_bound_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    layout = tmp_path / "images"
    ref = _image(layout)
    index = layout / "index.json"
    with index.open("ab") as f:
        f.truncate(MAX_INDEX_JSON_BYTES + 1)  # a sparse tail of zeros: never parsed
    assert os.stat(index).st_size == MAX_INDEX_JSON_BYTES + 1
    proc = run_cli("inspect", ref)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "index.json: larger than 64 MiB" in line, line
