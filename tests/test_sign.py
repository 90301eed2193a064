"""Sigstore signatures made by debchunk, checked by the real clients.

Images are pushed to a real docker-registry by ``container-encapsulate
--sign-by-sigstore`` (or signed afterwards by ``debchunk sign``); Debian
trixie's podman and skopeo (``tests/trixie_clients.py``: Debian 12's have
sigstore disabled) fetch them under a ``policy.json`` requiring a
``sigstoreSigned`` signature by one key, and ``debchunk verify`` is asked the
same.  All three must accept the signed images and refuse an unsigned one,
one signed by another key, and one whose manifest was replaced after signing
(its old signature moved to the new digest's tag).  podman pulls in the
chroot (vfs storage), so ``podman pull`` is the check, not only ``skopeo copy``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benches.registry import docker_registry
from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.keys import generate_key_pair, load_private_key, load_public_key
from encapsulate.oci.imgref import RegistryOptions, parse_imgref
from encapsulate.oci.sigstore import DockerReference, sign_image, signature_tag, verify_image
from tests.conftest import RunCli
from tests.images import EPOCH, build, packages_tree
from tests.trixie_clients import TrixieClients, trixie_clients

PASSPHRASE = "correct horse battery staple"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIG_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrixieClients]:
    """trixie's skopeo and podman (the chroot is cached between runs)."""
    with trixie_clients(tmp_path_factory.mktemp("trixie")) as c:
        yield c


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs written by ``debchunk keygen`` (``good``, ``other``) and
    their passphrase file (``pass``)."""

    d = tmp_path_factory.mktemp("keys")
    (d / "pass").write_text(PASSPHRASE + "\n")
    for name in ("good", "other"):
        generate_key_pair(str(d / name), PASSPHRASE.encode())
    return {
        "pass": d / "pass",
        **{f"{n}.{kind}": d / f"{n}.{kind}" for n in ("good", "other") for kind in ("key", "pub")},
    }


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packages_tree(tmp_path_factory.mktemp("signed") / "tree", 3, 2_000, 10)


def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def registry_tags(host: str, repo: str) -> list[str]:
    """The tags of ``repo`` (none when the registry does not know it)."""
    try:
        _, _, body = _http("GET", f"http://{host}/v2/{repo}/tags/list")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise
    return sorted(json.loads(body).get("tags") or [])


def raw_manifest(host: str, repo: str, reference: str) -> bytes:
    _, _, body = _http(
        "GET", f"http://{host}/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
    )
    assert isinstance(body, bytes)
    return body


def put_manifest(host: str, repo: str, reference: str, raw: bytes) -> None:
    _http("PUT", f"http://{host}/v2/{repo}/manifests/{reference}", raw, {"Content-Type": OCI_MANIFEST})


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(run_cli: RunCli, tree: Path, image: str, *options: str) -> Any:
    return run_cli(
        "--rootfs",
        str(tree),
        f"registry:{image}",
        "--dest-tls-verify",
        "false",
        "--quiet",
        *options,
        program="container-encapsulate",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )


def signing(keys: dict[str, Path], name: str = "good") -> tuple[str, ...]:
    return ("--sign-by-sigstore", str(keys[f"{name}.key"]), "--sign-passphrase-file", str(keys["pass"]))


def verify(run_cli: RunCli, image: str, pub: Path) -> Any:
    return run_cli("verify", f"registry:{image}", "--tls-verify", "false", "--key", str(pub))


def one_error_line(stderr: str, prog: str) -> str:
    """The one line a failure prints, checked to be one and an error, not a traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def images(registry: str, keys: dict[str, Path], tree: Path) -> dict[str, str]:
    """Five images under test, by case: signed at push, signed later with
    ``debchunk sign``, unsigned, signed by the other key, and signed, then
    its manifest replaced (and the signature moved to the new digest's tag,
    as an attacker holding the old signature would)."""

    def cli(*args: str, program: str = "debchunk") -> subprocess.CompletedProcess[str]:
        entry = "debchunk_main" if program == "debchunk" else "container_encapsulate_main"
        code = f"import sys; from encapsulate.cli.main import {entry}; sys.exit({entry}())"
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
        )

    def encapsulate(image: str, *options: str) -> None:
        done = cli(
            "--rootfs", str(tree), f"registry:{image}", "--dest-tls-verify", "false", "-q", *options,
            program="container-encapsulate",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    repo = "signed/app"
    cases = {
        case: f"{registry}/{repo}:{case}" for case in ("at-push", "later", "unsigned", "other", "replaced")
    }
    encapsulate(cases["at-push"], *signing(keys))
    encapsulate(cases["later"], "--label", "case=later")
    done = cli(
        "sign", f"registry:{cases['later']}", "--tls-verify", "false",
        "--key", str(keys["good.key"]), "--passphrase-file", str(keys["pass"]),
    )  # fmt: skip
    assert done.returncode == 0 and "signed" in done.stdout, done.stderr
    encapsulate(cases["unsigned"], "--label", "case=unsigned")
    encapsulate(cases["other"], "--label", "case=other", *signing(keys, "other"))
    encapsulate(cases["replaced"], "--label", "case=replaced", *signing(keys))
    # The manifest replaced: the same blobs, one annotation more; the old
    # signature manifest put at the new digest's signature tag too.
    old = raw_manifest(registry, repo, "replaced")
    manifest = json.loads(old)
    manifest.setdefault("annotations", {})["org.example.replaced"] = "after signing"
    new = json.dumps(manifest).encode()
    put_manifest(registry, repo, "replaced", new)
    old_sig = raw_manifest(registry, repo, f"sha256-{sha256(old)[7:]}.sig")
    put_manifest(registry, repo, f"sha256-{sha256(new)[7:]}.sig", old_sig)
    return cases


ACCEPTED = {"at-push": True, "later": True, "unsigned": False, "other": False, "replaced": False}


@pytest.mark.parametrize("case", list(ACCEPTED))
@pytest.mark.parametrize("checker", ["podman pull", "skopeo copy", "debchunk verify"])
def test_clients_take_only_the_images_signed_by_the_key(
    case: str,
    checker: str,
    images: dict[str, str],
    clients: TrixieClients,
    keys: dict[str, Path],
    registry: str,
    run_cli: RunCli,
) -> None:
    image = images[case]
    if checker == "debchunk verify":
        done = verify(run_cli, image, keys["good.pub"])
        if ACCEPTED[case]:
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(f"registry:{image}: verified: sha256:"), done.stdout
            return
        assert done.returncode == 1
        line = one_error_line(done.stderr, "debchunk")
        why = {
            "unsigned": "no sigstore signature is attached",
            "other": "not made by this key",
            "replaced": "it signs sha256:",
        }[case]
        assert why in line, line
        return
    policy = clients.trust(registry, keys["good.pub"], "good")
    run = clients.podman_pull if checker == "podman pull" else clients.skopeo_copy
    done = run(policy, image)
    if ACCEPTED[case]:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode != 0, done.stdout
    refusal = {
        "unsigned": "A signature was required, but no signature exists",
        "other": "cryptographic signature verification failed",
        "replaced": "Signature for digest sha256:",
    }[case]
    # A refusal by the policy, not some other failure.
    assert "Source image rejected" in done.stderr and refusal in done.stderr, done.stderr
    if case == "replaced":
        assert "does not match" in done.stderr, done.stderr


def test_signing_later_gives_what_signing_at_push_gives(
    images: dict[str, str], registry: str, keys: dict[str, Path]
) -> None:
    """``debchunk sign`` and ``--sign-by-sigstore`` store the same thing: the
    same payload for the same image and reference, as one layer of the same
    form in the signature manifest, verifying under the same key."""

    found: dict[str, Any] = {}
    for case in ("at-push", "later"):
        raw = raw_manifest(registry, "signed/app", case)
        sig = json.loads(raw_manifest(registry, "signed/app", f"sha256-{sha256(raw)[7:]}.sig"))
        assert sig["mediaType"] == OCI_MANIFEST and len(sig["layers"]) == 1
        layer = sig["layers"][0]
        assert layer["mediaType"] == SIG_LAYER and list(layer["annotations"]) == [
            "dev.cosignproject.cosign/signature"
        ]
        _, _, payload = _http("GET", f"http://{registry}/v2/signed/app/blobs/{layer['digest']}")
        document = json.loads(payload)
        assert document == {
            "critical": {
                "identity": {"docker-reference": f"{registry}/signed/app:{case}"},
                "image": {"docker-manifest-digest": sha256(raw)},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        assert load_public_key(str(keys["good.pub"])).verifies(signature, payload)
        config = json.loads(
            _http("GET", f"http://{registry}/v2/signed/app/blobs/{sig['config']['digest']}")[2]
        )
        assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
        found[case] = sig
    # The same form: the same keys, and configs that differ in the layer digest only.
    assert [sorted(found[c]) for c in found] == [sorted(found["at-push"])] * 2


def test_signatures_already_there_are_kept(
    registry: str, keys: dict[str, Path], tree: Path, clients: TrixieClients, run_cli: RunCli
) -> None:
    """Signatures accumulate in either order: skopeo signing (with a key
    ``debchunk keygen`` wrote) keeps debchunk's, debchunk keeps skopeo's, and
    signing again with the same key adds nothing."""
    image = f"{registry}/signed/both:1"
    done = push(run_cli, tree, image, "--label", "case=both", *signing(keys))
    assert done.returncode == 0, done.stderr
    key = clients.put(keys["other.key"], "other.key")
    passphrase = clients.put(keys["pass"], "pass")
    clients.trust(registry, None, "any")
    signed = clients.run(
        "skopeo", "copy", "--policy", "/srv/any.json", "--src-tls-verify=false", "--dest-tls-verify=false",
        "--sign-by-sigstore-private-key", key, "--sign-passphrase-file", passphrase,
        f"docker://{image}", f"docker://{image}",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    for name in ("good", "other"):
        assert verify(run_cli, image, keys[f"{name}.pub"]).returncode == 0, name
        assert clients.podman_pull(clients.trust(registry, keys[f"{name}.pub"], name), image).returncode == 0
    raw = raw_manifest(registry, "signed/both", "1")
    tag = f"sha256-{sha256(raw)[7:]}.sig"
    assert len(json.loads(raw_manifest(registry, "signed/both", tag))["layers"]) == 2
    # The same key again: already there, nothing added.
    again = run_cli(
        "sign", f"registry:{image}", "--tls-verify", "false", "--key", str(keys["good.key"]),
        "--passphrase-file", str(keys["pass"]),
    )  # fmt: skip
    assert again.returncode == 0 and "already signed by this key" in again.stdout, again.stderr
    assert len(json.loads(raw_manifest(registry, "signed/both", tag))["layers"]) == 2


def test_the_signed_identity_is_the_destination_unless_given(
    registry: str, keys: dict[str, Path], tree: Path, clients: TrixieClients, run_cli: RunCli
) -> None:
    """``--sign-identity`` names another reference: a client whose policy asks
    for that reference exactly takes the image, the default policy (the
    reference pulled) does not; ``debchunk verify`` agrees with each."""
    image, identity = f"{registry}/signed/named:1", "registry.example.org/os:13"
    done = push(run_cli, tree, image, "--label", "case=named", *signing(keys), "--sign-identity", identity)
    assert done.returncode == 0, done.stderr
    exact = clients.trust(registry, keys["good.pub"], "exact", identity=identity)
    assert clients.podman_pull(exact, image).returncode == 0
    pulled = clients.podman_pull(clients.trust(registry, keys["good.pub"], "good"), image)
    assert pulled.returncode != 0 and "Source image rejected" in pulled.stderr, pulled.stderr
    named = run_cli(
        "verify",
        f"registry:{image}",
        "--tls-verify",
        "false",
        "--key",
        str(keys["good.pub"]),
        "--identity",
        identity,
    )
    assert named.returncode == 0, named.stderr
    default = verify(run_cli, image, keys["good.pub"])
    assert default.returncode == 1 and f"it names {identity}, not {image}" in one_error_line(
        default.stderr, "debchunk"
    )


def test_references_are_normalised_as_containers_image_does() -> None:

    digest = "sha256:" + "a" * 64
    for text, normal in (
        ("127.0.0.1:5000/os/base:13", "127.0.0.1:5000/os/base:13"),
        ("//127.0.0.1:5000/os/base", "127.0.0.1:5000/os/base:latest"),
        ("debian", "docker.io/library/debian:latest"),
        ("index.docker.io/me/os:1", "docker.io/me/os:1"),
        ("localhost/os", "localhost/os:latest"),
        (f"quay.io/os@{digest}", f"quay.io/os@{digest}"),
    ):
        assert str(DockerReference.parse(text)) == normal
    for bad in ("Upper/Case", "x:", "a b", "host/repo:t@sha256:12", "/"):
        with pytest.raises(EncapsulateError, match="not a registry reference"):
            DockerReference.parse(bad, "--identity")
    assert signature_tag(digest) == f"sha256-{'a' * 64}.sig"


# Bad input: one line, exit 1, nothing pushed.


def test_a_wrong_passphrase_pushes_nothing(
    registry: str, keys: dict[str, Path], tree: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    done = push(
        run_cli, tree, f"{registry}/bad/pass:1", "--sign-by-sigstore", str(keys["good.key"]),
        "--sign-passphrase-file", str(wrong),
    )  # fmt: skip
    assert done.returncode == 1
    line = one_error_line(done.stderr, "container-encapsulate")
    assert f"--sign-by-sigstore {keys['good.key']}: the passphrase does not open this key" in line
    assert f"check --sign-passphrase-file {wrong}" in line
    # Nothing secret is shown: neither passphrase nor a byte of the key file.
    key_text = keys["good.key"].read_text()
    body = "".join(key_text.splitlines()[1:-1])
    assert "not the passphrase" not in done.stderr + done.stdout
    assert not any(body[i : i + 16] in done.stderr for i in range(0, len(body) - 16, 16))
    assert registry_tags(registry, "bad/pass") == []
    # No passphrase at all: the same refusal, saying how to give one.
    done = push(run_cli, tree, f"{registry}/bad/pass:1", "--sign-by-sigstore", str(keys["good.key"]))
    line = one_error_line(done.stderr, "container-encapsulate")
    assert done.returncode == 1 and "give its passphrase with --sign-passphrase-file FILE" in line
    assert registry_tags(registry, "bad/pass") == []


@pytest.mark.parametrize("kind", ["missing", "directory", "public key", "not a key", "damaged"])
def test_an_unusable_key_pushes_nothing(
    kind: str, registry: str, keys: dict[str, Path], tree: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "key"
    if kind == "directory":
        path.mkdir()
    elif kind == "public key":
        path = keys["good.pub"]
    elif kind == "not a key":
        path.write_text("hello\n")
    elif kind == "damaged":
        text = keys["good.key"].read_text().splitlines()
        path.write_text("\n".join([text[0], text[1][:-4] + "AAAA", *text[2:]]) + "\n")
    expected = {
        "missing": "no such file; give the private key file",
        "directory": "is a directory",
        "public key": "a PEM PUBLIC KEY block, not ENCRYPTED SIGSTORE PRIVATE KEY or ENCRYPTED COSIGN",
        "not a key": "not a PEM file",
        "damaged": "not an encrypted cosign key",
    }[kind]
    repo = f"bad/key-{kind.replace(' ', '-')}"
    done = push(run_cli, tree, f"{registry}/{repo}:1", "--sign-by-sigstore", str(path),
                "--sign-passphrase-file", str(keys["pass"]))  # fmt: skip
    assert done.returncode == 1
    line = one_error_line(done.stderr, "container-encapsulate")
    assert (
        line.startswith(f"container-encapsulate: error: --sign-by-sigstore {path}: ") and expected in line
    ), line
    assert registry_tags(registry, repo) == []


class _RefusesSignatures(http.server.BaseHTTPRequestHandler):
    """A registry's front that refuses signature tags (``sha256-HEX.sig``),
    as a registry with tag rules does; every other request goes through."""

    upstream = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if self.command == "PUT" and re.search(r"/manifests/sha256-[0-9a-f]{64}\.sig$", path):
            body = json.dumps({"errors": [{"code": "DENIED", "message": "tag not allowed"}]}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        connection.request(self.command, self.path, body=data, headers=dict(self.headers.items()))
        response = connection.getresponse()
        content = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding"):
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)
        connection.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


@pytest.fixture
def refusing(registry: str) -> Iterator[str]:
    """HOST:PORT of a front of the test registry that refuses signature tags."""
    handler = type("Front", (_RefusesSignatures,), {"upstream": registry})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_signature_tag_leaves_the_image_untagged(
    refusing: str, registry: str, keys: dict[str, Path], tree: Path, run_cli: RunCli
) -> None:
    """The signature goes before the manifest: a registry refusing it stops
    the push with the tag not moved (the blobs sent stay, unreferenced)."""
    done = push(run_cli, tree, f"{refusing}/bad/refused:1", *signing(keys))
    assert done.returncode == 1
    line = one_error_line(done.stderr, "container-encapsulate")
    assert "putting the signature manifest sha256-" in line and "HTTP 403" in line and "DENIED" in line, line
    assert "must accept the tag sha256-" in line
    assert registry_tags(registry, "bad/refused") == []
    # debchunk sign through the same front: the same refusal, one line, exit 1.
    unsigned = push(run_cli, tree, f"{refusing}/bad/refused:2")
    assert unsigned.returncode == 0, unsigned.stderr
    done = run_cli(
        "sign", f"registry:{refusing}/bad/refused:2", "--tls-verify", "false",
        "--key", str(keys["good.key"]), "--passphrase-file", str(keys["pass"]),
    )  # fmt: skip
    assert done.returncode == 1 and "HTTP 403" in one_error_line(done.stderr, "debchunk")
    assert registry_tags(registry, "bad/refused") == ["2"]


def test_signing_options_are_checked_before_anything(
    keys: dict[str, Path], tree: Path, run_cli: RunCli, tmp_path: Path, registry: str
) -> None:
    done = push(run_cli, tree, f"{registry}/bad/identity:1", *signing(keys), "--sign-identity", "Not A Ref")
    line = one_error_line(done.stderr, "container-encapsulate")
    assert done.returncode == 1 and "--sign-identity Not A Ref: not a registry reference" in line, line
    assert registry_tags(registry, "bad/identity") == []
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    layout = tmp_path / "layout"
    done = run_cli(
        "--rootfs", str(tree), f"oci:{layout}", *signing(keys), program="container-encapsulate", env=env
    )
    assert done.returncode == 2 and "is not a registry; signatures are stored in one" in done.stderr
    done = run_cli(
        "--rootfs", str(tree), f"oci:{layout}", "--sign-passphrase-file", str(keys["pass"]),
        program="container-encapsulate", env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "--sign-passphrase-file needs --sign-by-sigstore KEY" in done.stderr
    assert not layout.exists()
    done = run_cli("verify", f"oci:{layout}", "--key", str(keys["good.pub"]))
    assert done.returncode == 1 and "signatures are stored in a registry" in one_error_line(
        done.stderr, "debchunk"
    )
    done = run_cli("verify", "registry:127.0.0.1:1/x:1", "--key", str(keys["good.key"]))
    line = one_error_line(done.stderr, "debchunk")
    assert done.returncode == 1 and "a PEM ENCRYPTED SIGSTORE PRIVATE KEY block, not PUBLIC KEY" in line


def _cheap_htpasswd(path: Path) -> None:
    """An htpasswd file for docker-registry (bcrypt, the only hash it reads):
    user ``builder``, password ``secret``, at bcrypt's lowest cost, as the
    registry checks it on every request."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        entry = crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    path.write_text(f"builder:{entry}\n")


def test_the_python_api_signs_for_a_registry_that_wants_credentials(
    keys: dict[str, Path], tree: Path, tmp_path: Path
) -> None:
    """``BuildConfig(sign_by_sigstore=...)`` signs at push through the
    destination's credentials; ``verify_image`` and ``sign_image`` take the
    same ``RegistryOptions``."""

    _cheap_htpasswd(tmp_path / "htpasswd")
    (tmp_path / "auth-registry").mkdir()
    with docker_registry(tmp_path / "auth-registry", tmp_path / "htpasswd") as host:
        authfile = tmp_path / "auth.json"
        secret = base64.b64encode(b"builder:secret").decode()
        authfile.write_text(json.dumps({"auths": {host: {"auth": secret}}}))
        options = RegistryOptions(str(authfile), False)
        ref = parse_imgref(f"registry:{host}/private/os:1")
        image = build(
            RootfsOrigin(str(tree)),
            str(ref),
            dest_registry=options,
            sign_by_sigstore=str(keys["good.key"]),
            sign_passphrase_file=str(keys["pass"]),
        )
        verdict = verify_image(ref, options, load_public_key(str(keys["good.pub"])))
        assert verdict.valid and verdict.digest == image.manifest.digest
        assert verdict.identity == f"{host}/private/os:1"
        assert not verify_image(ref, options, load_public_key(str(keys["other.pub"]))).valid
        with pytest.raises(EncapsulateError, match="wants credentials; give --authfile"):
            verify_image(ref, RegistryOptions(None, False), load_public_key(str(keys["good.pub"])))
        other = load_private_key(str(keys["other.key"]), str(keys["pass"]))
        result = sign_image(ref, options, other)
        assert result.added and result.digest == image.manifest.digest
        assert verify_image(ref, options, load_public_key(str(keys["other.pub"]))).valid


def test_gpg_signatures_in_a_lookaside_store_for_debian_12_clients(
    registry: str, tree: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    """``debchunk sign --gpg-key --lookaside`` writes a simple-signing
    signature where containers/image looks for it; this machine's skopeo
    (Debian 12's, sigstore disabled) takes the image under a ``signedBy``
    policy with the key and refuses an unsigned one."""
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(gnupg)}

    def gpg(*args: str) -> bytes:
        done = subprocess.run(
            ["gpg", "--batch", *args], capture_output=True, env={**os.environ, **env}, check=True
        )
        return done.stdout

    try:
        gpg("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "debchunk <t@example.org>",
            "ed25519", "sign", "never")  # fmt: skip
        fingerprint = next(
            line.split(":")[9] for line in gpg("--with-colons", "--list-keys").decode().splitlines()
            if line.startswith("fpr:")
        )  # fmt: skip
        (tmp_path / "key.gpg").write_bytes(gpg("--export", fingerprint))
        signed, unsigned = f"{registry}/signed/gpg:1", f"{registry}/signed/gpg:2"
        for image, label in ((signed, "gpg"), (unsigned, "gpg-unsigned")):
            assert push(run_cli, tree, image, "--label", f"case={label}").returncode == 0
        lookaside = tmp_path / "lookaside"
        lookaside.mkdir()
        done = run_cli(
            "sign", f"registry:{signed}", "--tls-verify", "false", "--gpg-key", fingerprint,
            "--lookaside", str(lookaside), env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        digest = sha256(raw_manifest(registry, "signed/gpg", "1"))
        stored = lookaside / f"signed/gpg@sha256={digest[7:]}" / "signature-1"
        assert done.stdout.endswith(f": {stored}\n") and stored.stat().st_size > 0
        registries_d = tmp_path / "registries.d"
        registries_d.mkdir()
        (registries_d / "test.yaml").write_text(
            f"docker:\n  {registry}:\n    lookaside: file://{lookaside}\n"
        )
        policy = tmp_path / "policy.json"
        requirement = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(tmp_path / "key.gpg")}
        policy.write_text(
            json.dumps(
                {
                    "default": [{"type": "reject"}],
                    "transports": {
                        "docker": {registry: [requirement]},
                        "dir": {"": [{"type": "insecureAcceptAnything"}]},
                    },
                }
            )
        )
        copies = []
        for n, image in enumerate((signed, unsigned)):
            copies.append(
                subprocess.run(
                    [
                        "skopeo",
                        "copy",
                        "--policy",
                        str(policy),
                        "--registries.d",
                        str(registries_d),
                        "--src-tls-verify=false",
                        f"docker://{image}",
                        f"dir:{tmp_path / f'copy{n}'}",
                    ],
                    capture_output=True,
                    text=True,
                    stdin=subprocess.DEVNULL,
                )
            )
        assert copies[0].returncode == 0, copies[0].stderr
        assert copies[1].returncode != 0 and "Source image rejected" in copies[1].stderr, copies[1].stderr
        # Without --lookaside, or with both kinds of key: a usage error.
        done = run_cli("sign", f"registry:{signed}", "--gpg-key", fingerprint, env=env)
        assert done.returncode == 2 and "--gpg-key and --lookaside go together" in done.stderr
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, **env}, capture_output=True)


def test_the_sbom_attached_to_a_signed_push_is_signed_with_the_same_key(
    run_cli: RunCli, registry: str, keys: dict[str, Path], tree: Path, tmp_path: Path
) -> None:
    repo = f"{registry}/signed/with-sbom"
    sbom = tmp_path / "os.spdx.json"
    pushed = push(run_cli, tree, f"{repo}:1", *signing(keys), "--sbom", str(sbom), "--json")
    assert pushed.returncode == 0, pushed.stderr
    built = json.loads(pushed.stdout)
    artifact = built["sbom_artifact"]
    # The artifact holds the document written to the file, and the key signed it.
    assert sha256(raw_manifest(registry, "signed/with-sbom", artifact)) == artifact
    assert verify(run_cli, f"{repo}@{artifact}", keys["good.pub"]).returncode == 0
    other = verify(run_cli, f"{repo}@{artifact}", keys["other.pub"])
    assert other.returncode == 1 and "not made by this key" in other.stderr
    # And the image itself, as always.
    assert verify(run_cli, f"{repo}:1", keys["good.pub"]).returncode == 0
