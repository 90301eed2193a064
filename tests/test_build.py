"""encapsulate.build_image: the pipeline as compose tooling calls it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from encapsulate import (
    BuildConfig,
    CommitOrigin,
    Compression,
    ConfigError,
    EncapsulateError,
    Format,
    RootfsOrigin,
    build_image,
)
from encapsulate.oci.imgref import RegistryOptions
from encapsulate.oci.layout import Layout
from encapsulate.tools.validate import validate_image
from mapping import DebchunkError, MappingError

ROOT = Path(__file__).resolve().parent.parent


def readme_library_example() -> str:
    """The Python block after the README's ``library-example`` marker."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- library-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md has no library example"
    return match.group(1)


def test_readme_library_script_pushes_a_valid_image(
    sample_repos: dict[str, Path], registry: str, tmp_path: Path
) -> None:
    script = readme_library_example()
    assert len(script.strip().splitlines()) <= 12
    repo = sample_repos["bare-user"]
    # The previous build the script reads as its prior.
    first = build_image(
        BuildConfig(
            origin=CommitOrigin(str(repo), "sample"),
            destination=f"registry:{registry}/os:latest",
            max_layers=8,
            dest_registry=RegistryOptions(tls_verify=False),
        )
    )
    assert first.image is not None
    (tmp_path / "compose.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "compose.py"), str(repo), "sample", f"{registry}/os"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.split()[0]
    assert digest.startswith("sha256:")
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry}/os:next"],
        capture_output=True,
        check=True,
    )
    manifest = json.loads(inspected.stdout)
    assert "sha256:" + hashlib.sha256(inspected.stdout).hexdigest() == digest
    # Same commit, same plan: the same layers as the previous build.
    assert [d["digest"] for d in manifest["layers"]] == [b.descriptor.digest for b in first.image.layers]
    assert validate_image(f"registry:{registry}/os:next", RegistryOptions(tls_verify=False)).problems == []


def test_build_image_writes_what_the_config_says(sample_tree: Path, tmp_path: Path) -> None:
    config = BuildConfig(
        origin=RootfsOrigin(str(sample_tree)),
        destination=f"oci:{tmp_path / 'out'}:one",
        max_layers=6,
        compression=Compression.ZSTD,
        labels={"org.example.a": "1", "gone": "x"},
        remove_labels=("gone",),
        epoch=1_700_000_000,
        plan_json=str(tmp_path / "plan.json"),
    )
    result = build_image(config)
    assert config.layer_format is Format.PLAIN
    assert result.image is not None and len(result.image.layers) <= 6
    assert all(b.descriptor.media_type.endswith("+zstd") for b in result.image.layers)
    layout = Layout(str(tmp_path / "out"), create=False)
    image_config = json.loads(layout.read_blob(result.image.config.digest))
    labels = image_config["config"]["Labels"]
    assert labels["org.example.a"] == "1" and "gone" not in labels
    assert image_config["created"] == "2023-11-14T22:13:20Z"
    assert json.loads((tmp_path / "plan.json").read_text()) == result.plan.to_json()
    # The same config again gives the same bytes.
    again = build_image(replace(config, destination=f"oci:{tmp_path / 'b'}:one"))
    assert again.image is not None and again.image.manifest == result.image.manifest


def test_dry_run_writes_nothing(sample_tree: Path, tmp_path: Path) -> None:
    result = build_image(
        BuildConfig(
            origin=RootfsOrigin(str(sample_tree)), destination=f"oci:{tmp_path / 'out'}", dry_run=True
        )
    )
    assert result.image is None and result.plan.layers
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("form", "document"),
    [
        ("inner", {"Env": ["A=1"], "Cmd": ["/bin/sh"], "Labels": {"x": "y"}}),
        ("full", {"config": {"Env": ["A=1"], "Cmd": ["/bin/sh"], "Labels": {"x": "y"}}, "author": "me"}),
    ],
)
def test_image_config_in_both_forms(
    sample_tree: Path, tmp_path: Path, form: str, document: dict[str, Any]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    result = build_image(
        BuildConfig(
            origin=RootfsOrigin(str(sample_tree)),
            destination=f"oci:{tmp_path / 'out'}",
            image_config=str(path),
            max_layers=4,
        )
    )
    assert result.image is not None
    written = json.loads(Layout(str(tmp_path / "out"), create=False).read_blob(result.image.config.digest))
    assert written["config"]["Env"] == ["A=1"] and written["config"]["Cmd"] == ["/bin/sh"]
    assert written["config"]["Labels"]["x"] == "y"
    assert "Env" not in written and "Cmd" not in written
    assert (written.get("author") == "me") == (form == "full")


def test_library_errors_are_debchunk_errors(
    sample_tree: Path, sample_repos: dict[str, Path], tmp_path: Path
) -> None:
    """Whatever is wrong, a library caller gets a DebchunkError naming it, never
    a KeyError, StopIteration or OSError; and nothing is written."""
    (tmp_path / "not-json").write_text("{")
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out"
    rootfs = RootfsOrigin(str(sample_tree))
    cases: list[tuple[BuildConfig, type[DebchunkError], str]] = [
        (BuildConfig(RootfsOrigin(str(tmp_path / "missing")), f"oci:{out}"), MappingError, "missing"),
        (BuildConfig(CommitOrigin(str(tmp_path / "missing"), "x"), f"oci:{out}"), MappingError, "missing"),
        (
            BuildConfig(CommitOrigin(str(sample_repos["bare-user"]), "nope"), f"oci:{out}"),
            MappingError,
            "nope",
        ),
        (
            BuildConfig(rootfs, f"oci:{out}", prior_plan=str(tmp_path / "not-json")),
            EncapsulateError,
            "not-json",
        ),
        (BuildConfig(rootfs, f"oci:{out}", prior=f"oci:{tmp_path / 'nothing'}"), EncapsulateError, "nothing"),
        (
            BuildConfig(rootfs, f"oci:{out}", image_config=str(tmp_path / "gone.json")),
            EncapsulateError,
            "gone",
        ),
        (BuildConfig(rootfs, f"oci:{tmp_path / 'file'}/sub"), EncapsulateError, "file"),
    ]
    # A bad IMGREF is refused as the config is made.
    with pytest.raises(ConfigError, match="bad tag!"):
        BuildConfig(rootfs, "oci:" + str(out) + ":bad tag!")
    for config, error, words in cases:
        with pytest.raises(error) as raised:
            build_image(config)
        assert words in str(raised.value), (config, raised.value)
        assert "\n" not in str(raised.value)
    assert not out.exists() and (tmp_path / "file").read_text() == "x"
