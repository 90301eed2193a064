"""encapsulate.oci.deliver: every destination transport, written here (oci,
oci-archive) or through skopeo (docker-archive, registry, containers-storage)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

import encapsulate.build as build_module
import encapsulate.oci.deliver as deliver_module
from benches.registry import manifest_digest
from encapsulate import ConfigError, EncapsulateError, RootfsOrigin
from encapsulate.oci.imgref import ImageRef, RegistryOptions
from encapsulate.oci.layout import MEDIA_CONFIG, Descriptor, Layout
from encapsulate.oci.push import RegistryPush
from mapping import MappingError
from tests.conftest import snapshot
from tests.images import build, manifest, tags


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


# A failed or interrupted run leaves every destination as it found it.

_KINDS = (
    "oci-existing",
    "oci-new",
    "archive-existing",
    "archive-new",
    "docker-archive-existing",
    "docker-archive-new",
    "registry",
)


def _destination(kind: str, tmp_path: Path, registry: str) -> tuple[str, Path | None]:
    """The IMGREF of a destination of ``kind`` tagged ``new``, and the place
    on disk whose every byte must stay as it is (None: a registry)."""
    place = tmp_path / "place"
    place.mkdir()
    if kind == "registry":
        repo = f"debchunk/failed-{hashlib.sha256(bytes(tmp_path)).hexdigest()[:12]}"
        return f"docker://{registry}/{repo}:new", None
    if kind.startswith("docker-archive"):
        return f"docker-archive:{place / 'img.tar'}:debchunk/failed:new", place
    name = "img" if kind.startswith("oci") else "img.tar"
    return f"{'oci' if kind.startswith('oci') else 'oci-archive'}:{place / name}:new", place


def _registry_tags(registry: str, repo: str) -> dict[str, str]:
    """Each tag of ``repo`` and the digest of its manifest (none: an empty dict)."""
    listed = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry}/{repo}"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if listed.returncode != 0:
        return {}
    return {t: manifest_digest(f"{registry}/{repo}:{t}") for t in json.loads(listed.stdout)["Tags"]}


def _state(imgref: str, place: Path | None, registry: str) -> object:
    if place is None:
        return _registry_tags(registry, imgref.split("/", 3)[3].rsplit(":", 1)[0])
    return sorted(snapshot(place, dir_mtimes=False).items())


def _inject(kind: str, failure: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the image is written (its config, after every layer),
    while it is delivered (an archive half written, the config blob
    pushed), or after an ``oci:`` layout was tagged (the ``--cache`` filled)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise EncapsulateError("injected failure")

    if failure == "writing":
        add_bytes = Layout.add_bytes

        def config_fails(self: Layout, data: bytes, media_type: str, *rest: object) -> object:
            if media_type == MEDIA_CONFIG:
                fail()
            return add_bytes(self, data, media_type, *rest)  # type: ignore[arg-type]

        monkeypatch.setattr(Layout, "add_bytes", config_fails)
    elif failure == "after" and kind.startswith("oci"):
        monkeypatch.setattr(build_module, "fill_cache", fail)
    elif failure == "after" and kind.startswith("archive"):
        copy = deliver_module._copy_extent
        calls = []

        def half(*args: Any) -> None:
            calls.append(1)
            if len(calls) == 3:
                fail()
            copy(*args)

        monkeypatch.setattr(deliver_module, "_copy_extent", half)
    elif failure == "after" and kind.startswith("docker-archive"):

        def half_written(source: object, into: ImageRef, **kwargs: object) -> None:
            Path(into.location.split(":")[0]).write_bytes(b"half an archive")
            fail()

        monkeypatch.setattr(deliver_module, "skopeo_copy", half_written)
    else:
        push_blob = RegistryPush.push_blob

        def config_fails_to_upload(self: RegistryPush, d: Descriptor, *rest: Any) -> None:
            if d.media_type == MEDIA_CONFIG:
                fail()
            push_blob(self, d, *rest)

        monkeypatch.setattr(RegistryPush, "push_blob", config_fails_to_upload)


@pytest.mark.parametrize("failure", ["writing", "after"])
@pytest.mark.parametrize("kind", _KINDS)
def test_a_failed_run_leaves_the_destination_as_it_found_it(
    sample_tree: Path, tmp_path: Path, registry: str, kind: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of a layout or archive (the one there before, or none:
    no new directory, no temporary file beside it), every tag of a registry."""
    imgref, place = _destination(kind, tmp_path, registry)
    small = tmp_path / "small"
    (small / "etc").mkdir(parents=True)
    (small / "etc/hostname").write_text("small\n")
    options = {"dest_registry": RegistryOptions(tls_verify=False)}
    if kind.endswith("existing") or kind == "registry":
        # An image there already, tagged "kept" and "new".
        for tag in ("kept", "new"):
            build(RootfsOrigin(str(small)), imgref.rsplit(":", 1)[0] + f":{tag}", **options)
    before = _state(imgref, place, registry)
    _inject(kind, failure, monkeypatch)
    with pytest.raises(EncapsulateError, match="injected failure"):
        build(RootfsOrigin(str(sample_tree)), imgref, cache=str(tmp_path / "cache"), **options)
    assert _state(imgref, place, registry) == before
    if kind.startswith("oci") and kind.endswith("existing"):
        assert place is not None and tags(place / "img") == ["kept", "new"]
