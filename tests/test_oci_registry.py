"""Single blobs from a registry (``encapsulate.oci.registry``): names as
containers/image normalises them, credentials as skopeo finds them, and a
blob fetched from a real registry with the registry options given."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
from pathlib import Path

import pytest

from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY, RegistryOptions, parse_imgref
from encapsulate.oci.registry import RegistryBlobs, _credentials, registry_name
from tests.images import build


@pytest.mark.parametrize(
    ("text", "host", "name"),
    [
        ("registry:quay.io/fedora/os:41", "quay.io", "fedora/os"),
        ("registry:127.0.0.1:5000/os@sha256:" + "a" * 64, "127.0.0.1:5000", "os"),
        ("registry:localhost/a/b", "localhost", "a/b"),
        ("docker://debian:12", "registry-1.docker.io", "library/debian"),
        ("docker://docker.io/user/img", "registry-1.docker.io", "user/img"),
    ],
)
def test_registry_name(text: str, host: str, name: str) -> None:
    assert registry_name(parse_imgref(text)) == (host, name)


def _auth(path: Path, entries: dict[str, str]) -> str:
    path.write_text(json.dumps({"auths": {k: {"auth": v} for k, v in entries.items()}}))
    return str(path)


def test_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(b"u:p").decode()
    given = _auth(tmp_path / "given.json", {"r.example:5000": secret})
    assert _credentials("r.example:5000", given) == secret
    assert _credentials("other.example", given) is None
    with pytest.raises(EncapsulateError, match=r"--authfile .*missing\.json: no such file"):
        _credentials("r.example", str(tmp_path / "missing.json"))
    # Without one: REGISTRY_AUTH_FILE, then the default places; Docker's files
    # name Docker Hub by its old index address.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", _auth(tmp_path / "env.json", {"https://e.example": secret}))
    assert _credentials("e.example", None) == secret
    (tmp_path / ".docker").mkdir()
    _auth(tmp_path / ".docker/config.json", {"https://index.docker.io/v1/": "hub"})
    assert _credentials("registry-1.docker.io", None) == "hub"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EncapsulateError, match="not a readable authfile"):
        _credentials("x", str(tmp_path / "bad.json"))


def test_a_blob_from_a_real_registry(sample_tree: Path, tmp_path: Path, registry: str) -> None:
    image = build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/img:v1", max_layers=3)
    target = f"{registry}/registry-test/img:v1"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{tmp_path}/img:v1", f"docker://{target}"],
        check=True,
    )
    layer = image.layers[-1].descriptor
    blobs = RegistryBlobs(parse_imgref(f"registry:{target}"), RegistryOptions(tls_verify=False))
    with blobs.open_blob(layer.digest) as f:
        data = f.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest and len(data) == layer.size
    assert blobs.fetched == [layer.digest]
    with pytest.raises(EncapsulateError, match=r"blob sha256:0{64}: HTTP 404"):
        blobs.open_blob("sha256:" + "0" * 64)


def test_an_unreachable_registry_says_what_to_give() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ref = parse_imgref(f"registry:127.0.0.1:{port}/os:1")
    with pytest.raises(EncapsulateError, match=r"cannot reach the registry .*give --tls-verify false"):
        RegistryBlobs(ref, DEFAULT_REGISTRY).open_blob("sha256:" + "0" * 64)
    with pytest.raises(EncapsulateError, match=r"cannot reach the registry .*check its address"):
        RegistryBlobs(ref, RegistryOptions(tls_verify=False)).open_blob("sha256:" + "0" * 64)
