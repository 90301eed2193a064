"""Delivery that copies a taken layer once: an ``oci-archive:`` written
straight from the layout and the prior's byte ranges, and a registry pushed
to over the distribution API, sent only the blobs it lacks (mounted from the
prior's repository, or already there).  Every image is the one a build from
scratch gives, read back by skopeo and umoci."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tarfile
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from benches.registry import docker_registry, manifest_digest
from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import RegistryOptions
from encapsulate.oci.push import RegistryPush, registry_reference
from encapsulate.oci.read import ArchiveBlobs
from encapsulate.oci.registry import RegistrySession
from encapsulate.oci.reuse import check_local_blob
from encapsulate.write.image import ImageResult
from tests.conftest import RunCli
from tests.images import EPOCH, build, packages_tree
from tests.test_cache import (
    LAYERS,
    _count_fetches,
    _from_scratch,
    _start_build,
    _update,
    rebuild_into_registry,
)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[RootfsOrigin, Path]:
    """A tree of 12 packages; ``_update`` makes its point update."""
    root = packages_tree(tmp_path / "tree", 12, 50_000, 10)
    return RootfsOrigin(str(root)), root


Request = tuple[str, str]


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Every request sent to a registry (method, path and query), in order;
    but those of the check before the build (``check_push``)."""
    sent: list[Request] = []
    send = RegistrySession.send
    check = RegistryPush.check_push
    checking: list[bool] = []

    def unrecorded(self: RegistryPush) -> None:
        checking.append(True)
        try:
            check(self)
        finally:
            checking.pop()

    def counted(
        self: RegistrySession,
        method: str,
        path: str,
        body: bytes | Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> BinaryIO:
        url = urllib.parse.urlsplit(path)
        if not checking:
            sent.append((method, url.path + (f"?{url.query}" if url.query else "")))
        return send(self, method, path, body, headers, **options)

    monkeypatch.setattr(RegistrySession, "send", counted)
    monkeypatch.setattr(RegistryPush, "check_push", unrecorded)
    return sent


def _pulled(ref: str, into: Path) -> str:
    """The image ``skopeo copy`` pulls from the registry into an OCI layout,
    checked by umoci; its manifest digest there."""
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{into}:pulled"],
        check=True,
    )
    subprocess.run(["umoci", "stat", "--image", f"{into}:pulled"], check=True, capture_output=True)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{into}:pulled"], check=True, capture_output=True
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _sent(sent: list[Request], method: str, key: str) -> list[str]:
    """The values of query parameter ``key`` in the ``method`` requests:
    ``PUT ...?digest=`` names a blob uploaded, ``POST ...?mount=`` one mounted."""
    found = []
    for m, path in sent:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if m == method and key in query:
            found += query[key]
    return found


def _digests(image: ImageResult, taken: bool) -> set[str]:
    return {
        b.descriptor.digest
        for b, t in zip(image.layers, image.taken, strict=True)
        if (t is not None) == taken
    }


def test_a_pushed_image_is_the_one_built(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path, registry: str, requests: list[Request]
) -> None:
    origin, _ = tree
    ref = f"{registry}/push-first/os:v1"
    pushed = build(
        origin, f"registry:{ref}", max_layers=LAYERS, dest_registry=RegistryOptions(tls_verify=False)
    )
    local = build(origin, f"oci:{tmp_path}/local:v1", max_layers=LAYERS)
    assert pushed.manifest == local.manifest
    assert manifest_digest(ref) == local.manifest.digest
    assert _pulled(ref, tmp_path / "pulled") == local.manifest.digest
    # An empty repository: every layer and the config sent once, the manifest last.
    blobs = {b.descriptor.digest for b in local.layers} | {local.config.digest}
    assert sorted(_sent(requests, "PUT", "digest")) == sorted(blobs)
    assert requests[-1] == ("PUT", "/v2/push-first/os/manifests/v1")
    # Again: every blob is there, only the manifest is sent.
    requests.clear()
    build(
        origin,
        f"docker://{registry}/push-first/os",
        max_layers=LAYERS,
        dest_registry=RegistryOptions(tls_verify=False),
    )
    assert _sent(requests, "PUT", "digest") == [] and _sent(requests, "POST", "mount") == []
    assert [r for r in requests if r[0] != "HEAD"] == [("PUT", "/v2/push-first/os/manifests/latest")]
    assert manifest_digest(f"{registry}/push-first/os:latest") == local.manifest.digest


@pytest.mark.parametrize(
    ("prior", "pushed"), [("push-same/os", "push-same/os"), ("push-mount/prior", "push-mount/os")]
)
def test_a_rebuild_in_the_same_registry_sends_no_taken_layer(
    tree: tuple[RootfsOrigin, Path],
    tmp_path: Path,
    registry: str,
    requests: list[Request],
    monkeypatch: pytest.MonkeyPatch,
    prior: str,
    pushed: str,
) -> None:
    """The rebuild pushed beside its prior (the taken blobs are there) or to
    another repository of the registry (they are mounted)."""
    origin, root = tree
    v1_ref = f"{registry}/{prior}:v1"
    v1 = build(
        origin, f"registry:{v1_ref}", max_layers=LAYERS, dest_registry=RegistryOptions(tls_verify=False)
    )
    fetched = _count_fetches(monkeypatch)
    _update(root)
    requests.clear()
    v2_ref = f"{registry}/{pushed}:v2"
    v2, fresh = rebuild_into_registry(origin, v1, v1_ref, v2_ref, tmp_path / "fresh")
    assert _pulled(v2_ref, tmp_path / "pulled") == fresh.manifest.digest
    taken, written = _digests(v2, True), _digests(v2, False)
    assert len(taken) >= LAYERS - 3 and 1 <= len(written) <= 2
    assert fetched == [] and not any(m == "GET" for m, _ in requests)
    assert sorted(_sent(requests, "PUT", "digest")) == sorted(written | {v2.config.digest})
    assert sorted(_sent(requests, "POST", "mount")) == ([] if prior == pushed else sorted(taken))


def test_a_registry_prior_into_an_archive_fetches_only_the_taken_blobs(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, root = tree
    v1_ref = f"{registry}/push-to-archive/os:v1"
    v1 = build(
        origin, f"registry:{v1_ref}", max_layers=LAYERS, dest_registry=RegistryOptions(tls_verify=False)
    )
    fetched = _count_fetches(monkeypatch)
    _update(root)
    v2 = build(
        origin,
        f"oci-archive:{tmp_path}/v2.tar",
        max_layers=LAYERS,
        prior=f"registry:{v1_ref}",
        registry=RegistryOptions(tls_verify=False),
    )
    assert v2.manifest == _from_scratch(origin, v1, tmp_path / "fresh").manifest
    assert sorted(fetched) == sorted(_digests(v2, True))


def _tarfile_archive(layout: Path, into: Path) -> None:
    """The layout as ``tarfile`` writes an OCI archive of it (sorted, fixed metadata)."""
    with tarfile.open(into, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(layout):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                info = tar.gettarinfo(full, os.path.relpath(full, layout))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def test_an_archive_rebuild_is_the_archive_of_a_build_from_scratch(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path
) -> None:
    origin, root = tree
    v1 = build(origin, f"oci-archive:{tmp_path}/v1.tar", max_layers=LAYERS)
    _update(root)
    archive = tmp_path / "v2.tar"
    archive.write_bytes(b"the archive a rebuild replaces")
    v2 = build(origin, f"oci-archive:{archive}", max_layers=LAYERS, prior=f"oci-archive:{tmp_path}/v1.tar")
    assert len(_digests(v2, True)) >= LAYERS - 3
    # The same bytes as the tar of a layout holding the image built from scratch alone.
    fresh = _from_scratch(origin, v1, tmp_path / "fresh")
    assert v2.manifest == fresh.manifest
    alone = build(
        origin,
        f"oci:{tmp_path}/alone:latest",
        max_layers=LAYERS,
        prior_plan=str(tmp_path / "fresh.plan.json"),
    )
    assert alone.manifest == fresh.manifest
    _tarfile_archive(tmp_path / "alone", tmp_path / "expected.tar")
    assert archive.read_bytes() == (tmp_path / "expected.tar").read_bytes()
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], check=True, capture_output=True
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == fresh.manifest.digest
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci-archive:{archive}", f"oci:{tmp_path}/copy:x"], check=True
    )
    subprocess.run(["umoci", "stat", "--image", f"{tmp_path}/copy:x"], check=True, capture_output=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_damaged_blob_in_an_archive_prior_is_compressed_again(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path
) -> None:
    origin, _ = tree
    v1 = build(origin, f"oci-archive:{tmp_path}/v1.tar", max_layers=LAYERS)
    damaged = max(v1.layers, key=lambda b: b.descriptor.size).descriptor
    extent = ArchiveBlobs(str(tmp_path / "v1.tar"), "v1").extent(damaged.digest)
    assert extent is not None
    with open(tmp_path / "v1.tar", "r+b") as f:
        f.seek(extent.offset + extent.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = build(
        origin, f"oci-archive:{tmp_path}/v2.tar", max_layers=LAYERS, prior=f"oci-archive:{tmp_path}/v1.tar"
    )
    assert again.manifest == v1.manifest
    assert [t for b, t in zip(again.layers, again.taken, strict=True) if b.descriptor == damaged] == [None]
    assert again.taken.count("prior") == len(v1.layers) - 1
    with ArchiveBlobs(str(tmp_path / "v2.tar"), "v2").open_blob(damaged.digest) as f:
        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == damaged.digest


def test_a_refused_push_is_one_line_naming_the_registry(
    tree: tuple[RootfsOrigin, Path], registry: str
) -> None:
    origin, _ = tree
    # A tag outside the distribution-spec's grammar: the registry has no such route.
    with pytest.raises(EncapsulateError) as refused:
        build(
            origin,
            f"registry:{registry}/push-refused/os:bad!tag",
            max_layers=LAYERS,
            dest_registry=RegistryOptions(tls_verify=False),
        )
    message = str(refused.value)
    assert "\n" not in message and registry in message and "push-refused/os" in message
    with pytest.raises(EncapsulateError, match="cannot reach the registry") as unreachable:
        build(
            origin,
            "registry:127.0.0.1:9/push/os:v1",
            max_layers=LAYERS,
            dest_registry=RegistryOptions(tls_verify=False),
        )
    assert "\n" not in str(unreachable.value)


def test_registry_reference() -> None:
    assert registry_reference("host:5000/a/b:v2") == "v2"
    assert registry_reference("//host:5000/a/b") == "latest"
    assert registry_reference("host/a@sha256:" + "0" * 64) == "sha256:" + "0" * 64


def test_an_archive_read_in_place_is_the_one_opened(tree: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """A prior archive replaced while a build reads it (another build
    delivered to it): the build still reads the archive it opened."""
    origin, root = tree
    v1 = build(origin, f"oci-archive:{tmp_path}/v1.tar", max_layers=LAYERS)
    prior = ArchiveBlobs(str(tmp_path / "v1.tar"), "v1")
    _update(root)
    build(origin, f"oci-archive:{tmp_path}/other.tar", max_layers=LAYERS, epoch=EPOCH + 1)
    os.replace(tmp_path / "other.tar", tmp_path / "v1.tar")
    for b in v1.layers:
        assert check_local_blob(prior, b.descriptor)
        with prior.open_blob(b.descriptor.digest) as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == b.descriptor.digest


def test_concurrent_rebuilds_of_one_archive(tree: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """Two rebuilds at once, each taking layers from the archive both replace:
    both succeed and the archive left is the one a build from scratch gives."""
    origin, root = tree
    archive = tmp_path / "os.tar"
    v1 = build(origin, f"oci-archive:{archive}", max_layers=LAYERS)
    _update(root)
    fresh = _from_scratch(origin, v1, tmp_path / "fresh")
    runs = [
        _start_build(
            "--rootfs",
            str(root),
            f"oci-archive:{archive}",
            "--prior",
            f"oci-archive:{archive}",
            "--max-layers",
            str(LAYERS),
        )
        for _ in range(2)
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], check=True, capture_output=True
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == fresh.manifest.digest
    blobs = ArchiveBlobs(str(archive), "os")
    for b in fresh.layers:
        assert check_local_blob(blobs, b.descriptor)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _htpasswd(path: Path) -> Path:
    """An htpasswd file for docker-registry: user ``builder``, password
    ``secret``, bcrypt (the only hash it reads)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        entry = crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    path.write_text(f"builder:{entry}\n")
    return path


def test_a_registry_that_wants_credentials(tree: tuple[RootfsOrigin, Path], tmp_path: Path) -> None:
    """Basic authentication (htpasswd): the push answers the challenge with
    the --authfile's credentials; without them, one line saying so."""

    _htpasswd(tmp_path / "htpasswd")
    origin, _ = tree
    (tmp_path / "auth-registry").mkdir()
    with docker_registry(tmp_path / "auth-registry", tmp_path / "htpasswd") as host:
        authfile = tmp_path / "auth.json"
        secret = base64.b64encode(b"builder:secret").decode()
        authfile.write_text(json.dumps({"auths": {host: {"auth": secret}}}))
        (tmp_path / "other.json").write_text(json.dumps({"auths": {"elsewhere.example": {"auth": secret}}}))
        ref = f"{host}/private/os:v1"
        with pytest.raises(EncapsulateError, match="wants credentials; give --authfile") as refused:
            build(
                origin,
                f"registry:{ref}",
                max_layers=LAYERS,
                dest_registry=RegistryOptions(str(tmp_path / "other.json"), False),
            )
        assert "\n" not in str(refused.value)
        pushed = build(
            origin, f"registry:{ref}", max_layers=LAYERS, dest_registry=RegistryOptions(str(authfile), False)
        )
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"--authfile={authfile}", f"docker://{ref}"],
            check=True,
            capture_output=True,
        ).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed.manifest.digest


def test_a_destination_that_cannot_take_the_image_fails_first(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path, registry: str, run_cli: RunCli
) -> None:
    """A registry that is down, plain HTTP without --dest-tls-verify false, a
    wrong password, a registry that refuses pushes, a layout directory that
    cannot be written: one line each, within 2 s, before the tree is mapped."""
    import socket
    import time

    from encapsulate import BuildConfig, build_image
    from encapsulate.progress import Step

    _htpasswd(tmp_path / "htpasswd")
    wrong = tmp_path / "wrong.json"
    origin, _ = tree
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    insecure = RegistryOptions(None, False)
    (tmp_path / "auth").mkdir()
    (tmp_path / "ro").mkdir()
    with (
        docker_registry(tmp_path / "auth", tmp_path / "htpasswd") as auth,
        docker_registry(tmp_path / "ro", readonly=True) as readonly,
    ):
        wrong.write_text(json.dumps({"auths": {auth: {"auth": base64.b64encode(b"builder:nope").decode()}}}))
        cases = [
            (f"registry:127.0.0.1:{closed}/os/x:1", insecure, "cannot reach the registry"),
            (f"registry:{registry}/os/x:1", RegistryOptions(None, None), "give --dest-tls-verify false"),
            (f"registry:{auth}/os/x:1", RegistryOptions(str(wrong), False), r"HTTP 401.*credentials"),
            (f"registry:{readonly}/os/x:1", insecure, r"refused a test upload \(HTTP 405"),
        ]
        for destination, dest_registry, words in cases:
            steps: list[Step] = []
            started = time.monotonic()
            config = BuildConfig(
                origin, destination, max_layers=LAYERS, epoch=EPOCH, dest_registry=dest_registry
            )
            with pytest.raises(EncapsulateError, match=words) as refused:
                build_image(config, progress=steps.append)
            assert time.monotonic() - started < 2.0, destination
            assert "\n" not in str(refused.value) and steps == [], destination
        done = run_cli(
            "encapsulate",
            "--rootfs",
            str(tree[1]),
            f"registry:{readonly}/os/x:1",
            "--dest-tls-verify",
            "false",
        )
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "refused a test upload" in done.stderr
    # A directory nothing may be added to: mode 0555 stops a user; root
    # writes anywhere but in an immutable directory (chattr +i, ext4/xfs).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    immutable = (
        os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(locked)], check=False).returncode == 0
    )
    try:
        started = time.monotonic()
        with pytest.raises(EncapsulateError, match="cannot write the image there") as refused:
            build_image(BuildConfig(origin, f"oci:{locked}/img", max_layers=LAYERS, epoch=EPOCH))
        assert time.monotonic() - started < 2.0 and "\n" not in str(refused.value)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_a_plain_http_read_gets_the_hint(registry: str) -> None:
    """An image read from a plain-HTTP registry without --tls-verify false:
    skopeo's error, and what to do."""
    from encapsulate.oci.read import open_image

    with (
        pytest.raises(
            EncapsulateError, match="HTTPS client; give --tls-verify false for a plain-HTTP registry"
        ),
        open_image(f"registry:{registry}/any/image:1", RegistryOptions(None, None), blobs=False),
    ):
        pass


def test_credentials_on_the_command_line(
    tree: tuple[RootfsOrigin, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    """--dest-creds for the push and --creds for the reads (skopeo's and
    debchunk's own), as skopeo takes them, without an authfile."""

    _htpasswd(tmp_path / "htpasswd")
    _, root = tree
    (tmp_path / "auth-registry").mkdir()
    env = {"SOURCE_DATE_EPOCH": str(EPOCH), "REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}
    with docker_registry(tmp_path / "auth-registry", tmp_path / "htpasswd") as host:
        ref = f"registry:{host}/private/os:v1"
        common = ["--max-layers", str(LAYERS), "--dest-tls-verify", "false"]
        done = run_cli("encapsulate", "--rootfs", str(root), ref, *common, env=env)
        assert done.returncode == 1 and "credentials" in done.stderr, done.stderr
        done = run_cli(
            "encapsulate", "--rootfs", str(root), ref, *common, "--dest-creds", "builder:secret", env=env
        )
        assert done.returncode == 0, done.stderr
        reads = ["--tls-verify", "false", "--creds", "builder:secret"]
        done = run_cli("inspect", ref, *reads, env=env)
        assert done.returncode == 0 and "layers" in done.stdout, done.stderr
        again = run_cli("rechunk", ref, f"oci:{tmp_path}/out:x", *reads, "--max-layers", str(LAYERS), env=env)
        assert again.returncode == 0, again.stderr
        refused = run_cli("inspect", ref, "--tls-verify", "false", "--creds", "builder:wrong", env=env)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        # --authfile alone reaches every read too: --from, --prior and --compare-with-build.
        authfile = tmp_path / "auth.json"
        secret = base64.b64encode(b"builder:secret").decode()
        authfile.write_text(json.dumps({"auths": {host: {"auth": secret}}}))
        reads = ["--tls-verify", "false", "--authfile", str(authfile)]
        both = ["--prior", ref, "--compare-with-build", ref, "--max-layers", str(LAYERS)]
        done = run_cli("rechunk", ref, f"oci:{tmp_path}/out:y", *reads, *both, env=env)
        assert done.returncode == 0 and "compared with" in done.stdout, done.stderr
