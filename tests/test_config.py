"""encapsulate.config: BuildConfig's rules between options, checked before anything is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from encapsulate import BuildConfig, CommitOrigin, Compression, ConfigError, Format, RootfsOrigin
from encapsulate.config import epoch_from_environment
from encapsulate.errors import EncapsulateError

COMMIT = CommitOrigin("repo", "ref")
ROOTFS = RootfsOrigin("tree")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"origin": ROOTFS, "format": Format.OSTREE}, "--format ostree needs an OSTree commit"),
        ({"origin": ROOTFS, "copymeta": ("version",)}, "--copymeta needs an OSTree commit"),
        ({"max_layers": 1}, "--max-layers 1"),
        ({"max_layers": 501}, "--max-layers 501"),
        ({"format_version": 3}, "versions 1 and 2"),
        ({"prior": "oci:a", "prior_plan": "p.json"}, "--prior and --prior-plan"),
        ({"labels": {"": "x"}}, "--label ''"),
        ({"remove_labels": ("a=b",)}, "--label 'a=b'"),
        ({"cmd": ()}, "--cmd"),
        ({"destination": "ftp:x"}, "unknown transport 'ftp'"),
        ({"destination": "oci:"}, "oci:"),
        ({"threads": 0}, "threads 0"),
        ({"plan_json": "/no/such/dir/plan.json"}, "no directory /no/such/dir"),
        ({"origin": CommitOrigin("", "ref")}, "--repo REPO REF"),
    ],
)
def test_check_refuses(fields: dict[str, Any], words: str) -> None:
    # A bad IMGREF is refused as the config is made (it is parsed once, there);
    # the other rules by check().
    with pytest.raises(ConfigError) as raised:
        BuildConfig(**{"origin": COMMIT, "destination": "oci:out", **fields}).check()
    assert words in str(raised.value)
    assert isinstance(raised.value, EncapsulateError)


def test_check_accepts_and_resolves_the_format(tmp_path: Path) -> None:
    commit = BuildConfig(COMMIT, "registry:host/os:1", plan_json=str(tmp_path / "plan.json"))
    commit.check()
    assert commit.layer_format is Format.OSTREE and commit.compression is Compression.GZIP
    rootfs = BuildConfig(ROOTFS, f"oci-archive:{tmp_path}/a.tar", compression=Compression.ZSTD)
    rootfs.check()
    assert rootfs.layer_format is Format.PLAIN
    assert BuildConfig(COMMIT, "oci:x", format=Format.PLAIN).layer_format is Format.PLAIN


def test_output_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        BuildConfig(ROOTFS, "oci:x", write_contentmeta_json=str(tmp_path)).check()


def test_source_date_epoch_is_read_once_here() -> None:
    assert epoch_from_environment({}) is None
    assert epoch_from_environment({"SOURCE_DATE_EPOCH": ""}) is None
    assert epoch_from_environment({"SOURCE_DATE_EPOCH": "1700000000"}) == 1_700_000_000
    for bad in ("yesterday", "-5"):
        with pytest.raises(EncapsulateError, match="SOURCE_DATE_EPOCH"):
            epoch_from_environment({"SOURCE_DATE_EPOCH": bad})
