"""encapsulate/__init__.py: what compose tooling imports is there, and is
the pipeline the command line runs."""

from __future__ import annotations

from pathlib import Path

import pytest

import encapsulate
from encapsulate import BuildConfig, Platform, RegistryOptions, RootfsOrigin, build_image
from encapsulate.cli.main import container_encapsulate_main


def test_public_names() -> None:
    for name in encapsulate.__all__:
        assert getattr(encapsulate, name) is not None, name
    assert {"BuildConfig", "build_image", "ImageRef", "RegistryOptions", "Platform"} <= set(
        encapsulate.__all__
    )


def test_the_library_builds_what_the_command_line_builds(
    sample_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = BuildConfig(
        RootfsOrigin(str(sample_tree)),
        f"oci:{tmp_path}/lib:1",
        max_layers=5,
        epoch=1_767_225_600,
        platform=Platform.of("x86_64"),
        registry=RegistryOptions(),
    )
    result = build_image(config)
    assert result.image is not None
    argv = [
        "--rootfs",
        str(sample_tree),
        f"oci:{tmp_path}/cli:1",
        "--max-layers",
        "5",
        "--arch",
        "x86_64",
        "-q",
    ]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert container_encapsulate_main(argv) == 0
    index = (tmp_path / "cli" / "index.json").read_text()
    assert result.image.manifest.digest in index
