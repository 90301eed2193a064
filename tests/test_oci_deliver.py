"""encapsulate.oci.deliver: every destination transport, written here (oci,
oci-archive) or through skopeo (docker-archive, registry, containers-storage)."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from encapsulate import ConfigError, EncapsulateError, RootfsOrigin
from encapsulate.oci.imgref import RegistryOptions
from mapping import MappingError
from tests.conftest import snapshot
from tests.images import build, manifest


def test_transports(sample_tree: Path, tmp_path: Path, registry: str) -> None:
    origin = RootfsOrigin(str(sample_tree))
    digest = build(origin, f"oci:{tmp_path}/img:v1").manifest.digest
    # oci-archive: written here, reproducible byte for byte, readable by skopeo.
    assert build(origin, f"oci-archive:{tmp_path}/a.tar:v1").manifest.digest == digest
    build(origin, f"oci-archive:{tmp_path}/b.tar:v1")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{tmp_path}/a.tar:v1"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)["Digest"] == digest
    # A real registry: push, pull back, same manifest digest.
    target = f"{registry}/debchunk/sample:v1"
    build(origin, f"registry:{target}", dest_registry=RegistryOptions(tls_verify=False))
    remote = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(remote.stdout)["Digest"] == digest
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path}/back:v1"],
        check=True,
    )
    assert manifest(tmp_path / "back", "v1") == manifest(tmp_path / "img", "v1")
    # docker-archive through skopeo.
    build(origin, f"docker-archive:{tmp_path}/d.tar:debchunk/sample:v1")
    subprocess.run(["skopeo", "inspect", f"docker-archive:{tmp_path}/d.tar"], check=True, capture_output=True)
    # Nothing temporary is left beside the archives.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_containers_storage(sample_tree: Path) -> None:
    """Written through skopeo into a private containers-storage, where podman lists it."""
    root, run = tempfile.mkdtemp(prefix="csroot-", dir="/tmp"), tempfile.mkdtemp(prefix="csrun-", dir="/tmp")
    store = ["podman", "--root", root, "--runroot", run, "--storage-driver", "vfs"]
    try:
        build(RootfsOrigin(str(sample_tree)), f"containers-storage:[vfs@{root}+{run}]localhost/dc/s:v1")
        images = subprocess.run(
            [*store, "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        assert "localhost/dc/s:v1" in images.stdout
    finally:
        subprocess.run([*store, "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", root, run])


def test_registry_down(sample_tree: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EncapsulateError, match=rf"127\.0\.0\.1:{port}.*connection refused") as raised:
        build(
            RootfsOrigin(str(sample_tree)),
            f"docker://127.0.0.1:{port}/x:y",
            dest_registry=RegistryOptions(tls_verify=False),
        )
    assert "level=fatal" not in str(raised.value)


def test_bad_destinations_leave_things_as_they_were(sample_tree: Path, tmp_path: Path) -> None:
    origin = RootfsOrigin(str(sample_tree))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    before = snapshot(junk)
    with pytest.raises(EncapsulateError, match=f"{junk}: .*not an OCI layout"):
        build(origin, f"oci:{junk}")
    assert snapshot(junk) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(EncapsulateError, match="not a directory"):
        build(origin, f"oci:{afile}")
    assert afile.read_text() == "x"
    # Nothing is left behind by an archive or a skopeo transport that fails.
    with pytest.raises(EncapsulateError, match=f"(?i){afile}: cannot write.*not a directory"):
        build(origin, f"oci-archive:{afile}/a.tar")
    assert afile.read_text() == "x"
    # An origin that is not there: nothing is written.
    with pytest.raises(MappingError, match=str(tmp_path / "nope")):
        build(RootfsOrigin(str(tmp_path / "nope")), f"oci:{tmp_path}/out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out/blobs/sha256").iterdir())
    for destination in ("ftp:x", "nowhere"):
        with pytest.raises(ConfigError, match=destination):
            build(origin, destination)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == ["afile", "junk"]
