"""The one skopeo runner (``encapsulate.oci.skopeo``): the registry options
of each side reach skopeo as its flags, a platform as its overrides, and
``skopeo inspect`` gives the stored bytes (their digest is the image's)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref
from encapsulate.oci.platform import Platform
from encapsulate.oci.skopeo import run_skopeo, skopeo_copy, skopeo_inspect
from tests.images import build


@pytest.fixture
def fake_skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A skopeo that logs its arguments, one call a line, and prints ``{}``."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "skopeo"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "{{}}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    return log


def test_copy_flags(fake_skopeo: Path) -> None:
    source = parse_imgref("registry:a.example/os:1")
    destination = parse_imgref("docker://b.example/os:2")
    skopeo_copy(
        source,
        destination,
        src=RegistryOptions(authfile="/a.json", tls_verify=False),
        dest=RegistryOptions(authfile="/b.json", tls_verify=True),
        platform=Platform("arm", "v7"),
    )
    assert fake_skopeo.read_text().split() == [
        "copy",
        "--quiet",
        "--override-arch=arm",
        "--override-variant=v7",
        "--src-tls-verify=false",
        "--src-authfile=/a.json",
        "--dest-tls-verify=true",
        "--dest-authfile=/b.json",
        "--retry-times=3",
        "docker://a.example/os:1",
        "docker://b.example/os:2",
    ]
    # Options of a side that is not a registry are not given; no platform, no override.
    fake_skopeo.unlink()
    skopeo_copy(
        ImageRef("oci", "/l", "t"),
        parse_imgref("containers-storage:os"),
        src=DEFAULT_REGISTRY,
        dest=RegistryOptions("/x", False),
    )
    assert fake_skopeo.read_text().split() == ["copy", "--quiet", "oci:/l:t", "containers-storage:os"]


def test_inspect_flags(fake_skopeo: Path) -> None:
    ref = parse_imgref("registry:a.example/os:1")
    assert skopeo_inspect(ref, RegistryOptions(authfile="/a.json")) == b"{}\n"
    skopeo_inspect(ref, RegistryOptions(tls_verify=False), config=True)
    assert fake_skopeo.read_text().splitlines() == [
        "inspect --authfile=/a.json --retry-times=3 --raw docker://a.example/os:1",
        "inspect --tls-verify=false --retry-times=3 --raw --config docker://a.example/os:1",
    ]


def test_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "skopeo"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\necho noise >&2\necho \'time="x" level=fatal msg="it \\"broke\\""\' >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    with pytest.raises(EncapsulateError) as failed:
        run_skopeo(["inspect", "x"], "where")
    assert str(failed.value) == 'where: skopeo inspect failed: it "broke"'
    fake.write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(EncapsulateError, match="skopeo copy failed: exit status 3"):
        run_skopeo(["copy"], "where")


def test_inspect_gives_the_stored_bytes(sample_tree: Path, tmp_path: Path) -> None:
    """The manifest and config skopeo gives hash to the digests that name them."""
    image = build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/img:v1", max_layers=3)
    ref = parse_imgref(f"oci:{tmp_path}/img:v1")
    manifest = skopeo_inspect(ref, DEFAULT_REGISTRY)
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == image.manifest.digest
    config = skopeo_inspect(ref, DEFAULT_REGISTRY, config=True)
    assert "sha256:" + hashlib.sha256(config).hexdigest() == json.loads(manifest)["config"]["digest"]
