"""The SBOM: an SPDX 2.3 document of the dpkg packages of the tree an image
holds, checked by spdx-tools' parser and validator and against
``dpkg-query`` run on the same tree; written by ``--sbom``, made again from
the image by ``debchunk sbom`` (the same bytes, from every transport and
both layer formats), and attached to an image pushed to a real
docker-registry, read back with plain distribution-API requests, with
skopeo, and by ``debchunk sbom --attached``."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from benches.debtrees import TreeSpec, build_tree, ostreeify
from benches.registry import manifest_digest
from encapsulate.oci.referrers import EMPTY_CONFIG, MEDIA_EMPTY, referrers_tag
from encapsulate.sbom import NAMESPACE_BASE, SPDX_MEDIA_TYPE, document_bytes, tree_sbom
from mapping.rootfs import RootfsTree
from tests.conftest import RunCli, debchunk_bytes, printable_lines
from tests.sample import Pkg, SampleTree, blob, commit, day

EPOCH = 1_780_000_000
CREATED = "2026-05-28T20:26:40Z"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MAINTAINERS = {
    "login": "Shadow package maintainers <pkg-shadow-devel@lists.alioth.debian.org>",
    "libc6": "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
    "libstdc++6": "Debian GCC Maintainers (toolchain) <debian-gcc@lists.debian.org>",
    "base-files": "Santiago Vila <sanvila@debian.org>",
    # A terminal escape (a window title) where a name should be.
    "evil": "Mallory \x1b]0;owned\x07 <m@example.org>",
}
# dpkg's states whose files are on disk: what the SBOM lists (mapping.dpkg).
INSTALLED = ("installed", "triggers-awaiting", "triggers-pending")


def _ubuntu_tree(root: Path) -> Path:
    """A small Ubuntu-like root tree with the cases a purl and an SPDXID
    must get right: an epoch, a '+' in a version and in a name, Multi-Arch:
    same in two architectures, a source package of another version, a
    package removed with its configuration files left, maintainers."""
    t = SampleTree(root, admindir="var/lib/dpkg", ostree_layout=False)
    for arch in ("amd64", "i386"):
        lib = "x86_64-linux-gnu" if arch == "amd64" else "i386-linux-gnu"
        t.add(
            Pkg(
                "libc6",
                "2.39-0ubuntu8",
                source="glibc",
                arch=arch,
                multi_arch="same",
                files={f"/usr/lib/{lib}/libc.so.6": blob(f"libc-{arch}", 4000)},
                changelog=[day(0)],
            )
        )
    t.add(Pkg("login", "1:4.13+dfsg1-4ubuntu3", source="shadow", files={"/bin/su": blob("su", 300)}))
    t.add(
        Pkg(
            "libstdc++6",
            "14.2.0-4ubuntu2",
            source="gcc-14",
            source_version="14.2.0-4ubuntu2~24.04",
            multi_arch="same",
            files={"/usr/lib/x86_64-linux-gnu/libstdc++.so.6": blob("stdc", 500)},
        )
    )
    t.add(Pkg("base-files", "13ubuntu10+esm1", files={"/usr/lib/os-release": b"x"}))
    t.add(Pkg("evil", "1.0-1", files={"/usr/bin/evil": b"x"}))
    t.add(Pkg("removed", "1.0-1", status="deinstall ok config-files", files={"/etc/removed.conf": b"x"}))
    t.finish()
    status = root / "var/lib/dpkg/status"
    text = status.read_text()
    for name, maintainer in MAINTAINERS.items():
        text = re.sub(rf"(?m)^(Package: {re.escape(name)}\n)", rf"\1Maintainer: {maintainer}\n", text)
    status.write_text(text)
    (root / "usr/lib/os-release").write_text(
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
        'VERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
    )
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    return root


@pytest.fixture(scope="module")
def ubuntu_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ubuntu_tree(tmp_path_factory.mktemp("ubuntu") / "tree")


def dpkg_query(admindir: Path) -> set[tuple[str, str, str]]:
    """(package, version, architecture) of every package ``dpkg-query -W``
    lists whose files are installed."""
    out = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={admindir}",
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture} ${db:Status-Status}\n",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split(" ") for line in out.splitlines()]
    return {(name, version, arch) for name, version, arch, state in rows if state in INSTALLED}


def spdx_checked(path: Path) -> dict[str, Any]:
    """The document at ``path``, after spdx-tools parsed it and its validator
    found nothing wrong; as JSON."""
    document = parse_file(str(path))
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    data: dict[str, Any] = json.loads(path.read_bytes())
    assert len(document.packages) == len(data["packages"])
    return data


def package_set(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(name, version, architecture) of each package the document describes (arch from its purl)."""
    described = {
        r["relatedSpdxElement"]
        for r in document["relationships"]
        if r["spdxElementId"] == "SPDXRef-DOCUMENT" and r["relationshipType"] == "DESCRIBES"
    }
    out = set()
    for p in document["packages"]:
        assert p["SPDXID"] in described
        (ref,) = p["externalRefs"]
        arch = re.search(r"[?&]arch=([^&]+)", ref["referenceLocator"])
        assert arch is not None
        out.add((p["name"], p["versionInfo"], arch.group(1)))
    assert len(out) == len(described) == len(document["packages"])
    return out


def test_referrers_tag() -> None:
    # The examples of distribution-spec v1.1, "Referrers Tag Schema".
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    assert referrers_tag("sha512:" + "a" * 128) == "sha512-" + "a" * 64
    odd = (
        "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
        "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation"
    )
    assert referrers_tag(odd) == (
        "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot"
    )


def test_document_of_a_tree(ubuntu_tree: Path, tmp_path: Path) -> None:
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(tree_sbom(RootfsTree(str(ubuntu_tree)), EPOCH, "tree"))
    document = spdx_checked(path)
    assert package_set(document) == dpkg_query(ubuntu_tree / "var/lib/dpkg")
    assert "removed" not in {p["name"] for p in document["packages"]}
    assert document["creationInfo"] == {"created": CREATED, "creators": ["Tool: debchunk-0.1.0"]}
    assert document["name"] == "Ubuntu 24.04.1 LTS: installed dpkg packages"
    by_id = {p["SPDXID"]: p for p in document["packages"]}
    purls = {i: p["externalRefs"][0]["referenceLocator"] for i, p in by_id.items()}
    digest = hashlib.sha256(b"libstdc++6:amd64").hexdigest()[:12]
    assert purls == {
        "SPDXRef-Package-deb-base-files-amd64": (
            "pkg:deb/ubuntu/base-files@13ubuntu10%2Besm1?arch=amd64&distro=noble"
        ),
        "SPDXRef-Package-deb-libc6-amd64": "pkg:deb/ubuntu/libc6@2.39-0ubuntu8?arch=amd64&distro=noble",
        "SPDXRef-Package-deb-libc6-i386": "pkg:deb/ubuntu/libc6@2.39-0ubuntu8?arch=i386&distro=noble",
        "SPDXRef-Package-deb-evil-amd64": "pkg:deb/ubuntu/evil@1.0-1?arch=amd64&distro=noble",
        f"SPDXRef-Package-deb-libstdc--6-amd64-{digest}": (
            "pkg:deb/ubuntu/libstdc%2B%2B6@14.2.0-4ubuntu2?arch=amd64&distro=noble"
        ),
        # The purl spec keeps ':' as it is, in an epoch too.
        "SPDXRef-Package-deb-login-amd64": (
            "pkg:deb/ubuntu/login@1:4.13%2Bdfsg1-4ubuntu3?arch=amd64&distro=noble"
        ),
    }
    stdcxx = by_id[f"SPDXRef-Package-deb-libstdc--6-amd64-{digest}"]
    assert stdcxx["sourceInfo"] == "built package from: gcc-14 14.2.0-4ubuntu2~24.04"
    assert stdcxx["supplier"] == "Person: Debian GCC Maintainers (toolchain) (debian-gcc@lists.debian.org)"
    assert (
        by_id["SPDXRef-Package-deb-login-amd64"]["sourceInfo"]
        == "built package from: shadow 1:4.13+dfsg1-4ubuntu3"
    )
    assert by_id["SPDXRef-Package-deb-libc6-i386"]["supplier"] == (
        "Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    )
    assert all(p["downloadLocation"] == "NOASSERTION" and p["filesAnalyzed"] is False for p in by_id.values())
    # The namespace is the sha256 of the document written with an empty one.
    namespace = document["documentNamespace"]
    assert namespace.startswith(NAMESPACE_BASE)
    unnamed = {**document, "documentNamespace": ""}
    assert namespace == NAMESPACE_BASE + hashlib.sha256(document_bytes(unnamed)).hexdigest()
    assert document_bytes(document) == path.read_bytes()
    # What a status file holds reaches a terminal escaped: the document is ASCII, no control byte in it.
    assert (
        by_id["SPDXRef-Package-deb-evil-amd64"]["supplier"]
        == "Person: Mallory \x1b]0;owned\x07 (m@example.org)"
    )
    printable_lines(path.read_bytes())
    assert b"\\u001b]0;owned\\u0007" in path.read_bytes()


def test_written_by_a_build_and_made_again_from_the_image(
    ubuntu_tree: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    """--sbom writes the same bytes in two builds; debchunk sbom makes them
    again from the image in an oci: layout and an oci-archive:, to stdout
    and to -o; another SOURCE_DATE_EPOCH changes the time and the namespace only."""
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    written = []
    for run in ("a", "b"):
        sbom = tmp_path / f"{run}.spdx.json"
        r = run_cli(
            "encapsulate",
            "--rootfs",
            str(ubuntu_tree),
            f"oci:{tmp_path / run}:1",
            "--sbom",
            str(sbom),
            "-q",
            env=env,
        )
        assert r.returncode == 0, r.stderr
        written.append(sbom.read_bytes())
    assert written[0] == written[1]
    spdx_checked(tmp_path / "a.spdx.json")
    r = run_cli(
        "encapsulate", "--rootfs", str(ubuntu_tree), f"oci-archive:{tmp_path / 'img.tar'}", "-q", env=env
    )
    assert r.returncode == 0, r.stderr
    assert debchunk_bytes("sbom", f"oci:{tmp_path / 'a'}:1").stdout == written[0]
    r = run_cli("sbom", f"oci-archive:{tmp_path / 'img.tar'}", "-o", str(tmp_path / "back.json"))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert (tmp_path / "back.json").read_bytes() == written[0]
    later = tmp_path / "later.spdx.json"
    r = run_cli(
        "encapsulate",
        "--rootfs",
        str(ubuntu_tree),
        f"oci:{tmp_path / 'c'}:1",
        "--sbom",
        str(later),
        "--dry-run",
        "-q",
        env={"SOURCE_DATE_EPOCH": str(EPOCH + 86400)},
    )
    assert r.returncode == 0, r.stderr
    first, second = json.loads(written[0]), json.loads(later.read_bytes())
    assert second["creationInfo"]["created"] == "2026-05-29T20:26:40Z"
    assert second["documentNamespace"] != first["documentNamespace"]
    for key in ("creationInfo", "documentNamespace"):
        del first[key], second[key]
    assert first == second


def test_both_formats_give_the_sbom_of_the_tree(ubuntu_tree: Path, tmp_path: Path, run_cli: RunCli) -> None:
    """The tree laid out and committed as an OSTree image builder does (the
    dpkg database in usr/share/dpkg/database, /etc in usr/etc): the
    ostree-format image of the commit and the plain image of the tree give
    the same SBOM, from the build and from each image."""
    laid_out = ostreeify(ubuntu_tree, tmp_path / "laid-out")
    commit(laid_out, tmp_path / "repo", "ubuntu")
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    made = {}
    for name, origin in (
        ("ostree", ["--repo", str(tmp_path / "repo"), "ubuntu"]),
        ("plain", ["--rootfs", str(ubuntu_tree)]),
    ):
        sbom = tmp_path / f"{name}.json"
        r = run_cli(
            "encapsulate", *origin, f"oci:{tmp_path / 'img'}:{name}", "--sbom", str(sbom), "-q", env=env
        )
        assert r.returncode == 0, r.stderr
        made[name] = sbom.read_bytes()
        assert debchunk_bytes("sbom", f"oci:{tmp_path / 'img'}:{name}").stdout == made[name]
    assert made["ostree"] == made["plain"]
    document = spdx_checked(tmp_path / "ostree.json")
    assert package_set(document) == dpkg_query(laid_out / "usr/share/dpkg/database")
    assert all(
        p["externalRefs"][0]["referenceLocator"].endswith("&distro=noble") for p in document["packages"]
    )


def _get(url: str, accept: str = "*/*") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def _tags(host: str, repo: str) -> list[str]:
    return list(json.loads(_get(f"http://{host}/v2/{repo}/tags/list")[2])["tags"])


def test_attached_to_a_pushed_image(
    ubuntu_tree: Path, tmp_path: Path, registry: str, run_cli: RunCli
) -> None:
    """docker-registry 2.8 has no referrers API: the SBOM artifact is listed
    in the fallback tag's index, found and read with plain requests, by
    skopeo, and by debchunk sbom --attached; a second push lists it once."""
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    sbom = tmp_path / "sbom.json"
    ref = f"{registry}/attached/os:1"
    push = ["encapsulate", "--rootfs", str(ubuntu_tree), f"registry:{ref}", "--dest-tls-verify", "false"]
    r = run_cli(*push, "--sbom", str(sbom), "--json", env=env)
    assert r.returncode == 0, r.stderr
    artifact = json.loads(r.stdout)["sbom_artifact"]
    image = manifest_digest(ref)
    base = f"http://{registry}/v2/attached/os"
    # No referrers API: a 404, so a client falls back to the tag.
    assert _get(f"{base}/referrers/{image}", MEDIA_INDEX)[0] == 404
    tag = referrers_tag(image)
    assert tag == "sha256-" + image.removeprefix("sha256:")
    status, headers, raw_index = _get(f"{base}/manifests/{tag}", MEDIA_INDEX)
    assert status == 200 and headers["Content-Type"] == MEDIA_INDEX
    index = json.loads(raw_index)
    (entry,) = index["manifests"]
    assert entry["artifactType"] == SPDX_MEDIA_TYPE and entry["digest"] == artifact
    assert entry["annotations"] == {"org.opencontainers.image.created": CREATED}
    status, _, raw = _get(f"{base}/manifests/{artifact}", MEDIA_MANIFEST)
    assert status == 200 and "sha256:" + hashlib.sha256(raw).hexdigest() == artifact == entry["digest"]
    manifest = json.loads(raw)
    assert manifest["artifactType"] == SPDX_MEDIA_TYPE
    assert manifest["config"] == {
        "mediaType": MEDIA_EMPTY,
        "digest": "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest(),
        "size": 2,
    }
    assert manifest["subject"]["digest"] == image and manifest["subject"]["mediaType"] == MEDIA_MANIFEST
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == SPDX_MEDIA_TYPE
    assert _get(f"{base}/blobs/{layer['digest']}")[2] == sbom.read_bytes()
    spdx_checked(sbom)
    # skopeo reads the artifact's manifest as the registry stores it.
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry}/attached/os@{artifact}"],
        check=True,
        capture_output=True,
    ).stdout
    assert inspected == raw
    attached = debchunk_bytes("sbom", "--attached", "--tls-verify", "false", f"registry:{ref}")
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout == sbom.read_bytes()
    made = debchunk_bytes("sbom", "--tls-verify", "false", f"registry:{ref}")
    assert made.returncode == 0, made.stderr
    assert made.stdout == sbom.read_bytes()
    # The same build again: the same artifact, listed once; the image's own tag untouched.
    r = run_cli(*push, "--sbom", str(sbom), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sbom_artifact"] == artifact
    assert _get(f"{base}/manifests/{tag}", MEDIA_INDEX)[2] == raw_index
    assert sorted(_tags(registry, "attached/os")) == ["1", tag]
    assert manifest_digest(ref) == image


class _ReferrersFront(http.server.BaseHTTPRequestHandler):
    """In front of a docker-registry: what a registry with the referrers API
    adds (distribution-spec v1.1): ``OCI-Subject`` on the PUT of a manifest
    with a subject, and ``GET /v2/<name>/referrers/<digest>``.  Every other
    request goes to the registry behind it as it came."""

    upstream: ClassVar[str] = ""
    listed: ClassVar[dict[str, list[dict[str, Any]]]] = {}
    asked: ClassVar[list[str]] = []

    def handle(self) -> None:
        # A TLS handshake (a client trying https first): closed, as a plain-HTTP server.
        if self.connection.recv(1, socket.MSG_PEEK) != b"\x16":
            super().handle()

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> tuple[http.client.HTTPResponse, bytes, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        # Every header as it came, repeated ones too (skopeo sends several Accept headers).
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in ("connection", "content-length"):
                connection.putheader(k, v)
        sent = self.command in ("PUT", "POST", "PATCH")
        if sent:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body if sent else None)
        response = connection.getresponse()
        return response, response.read(), body

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        # A HEAD answer's length is the length of the body a GET would have (RFC 9110, 8.6).
        given = dict((k.lower(), v) for k, v in headers).get("content-length")
        self.send_header("Content-Length", given if self.command == "HEAD" and given else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _any(self) -> None:
        found = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})(\?.*)?", self.path)
        if self.command == "GET" and found:
            self.asked.append(found.group(2))
            listed = self.listed.get(found.group(2), [])
            body = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": listed}).encode()
            self._answer(200, [("Content-Type", MEDIA_INDEX)], body)
            return
        response, data, body = self._forward()
        headers = list(response.getheaders())
        if self.command == "PUT" and "/manifests/" in self.path and response.status == 201:
            document = json.loads(body)
            subject = (document.get("subject") or {}).get("digest")
            if subject:
                entry = {
                    "mediaType": document["mediaType"],
                    "digest": response.getheader("Docker-Content-Digest"),
                    "size": len(body),
                    "artifactType": document.get("artifactType"),
                    "annotations": document.get("annotations", {}),
                }
                self.listed.setdefault(subject, []).append(entry)
                headers.append(("OCI-Subject", subject))
        self._answer(response.status, headers, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any


@contextmanager
def referrers_front(upstream: str) -> Iterator[tuple[str, type[_ReferrersFront]]]:
    """A ``_ReferrersFront`` on 127.0.0.1 before ``upstream``: its HOST:PORT,
    and its class, holding what it listed and was asked for."""
    handler = type("Front", (_ReferrersFront,), {"upstream": upstream, "listed": {}, "asked": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_referrers_api_when_the_registry_has_it(
    ubuntu_tree: Path, tmp_path: Path, registry: str, run_cli: RunCli
) -> None:
    """A registry that answers OCI-Subject lists the artifact itself: no
    fallback tag is written, and --attached finds it through the referrers API."""
    with referrers_front(registry) as (front, handler):
        ref = f"{front}/api/os:1"
        sbom = tmp_path / "sbom.json"
        r = run_cli(
            "encapsulate",
            "--rootfs",
            str(ubuntu_tree),
            f"registry:{ref}",
            "--dest-tls-verify",
            "false",
            "--sbom",
            str(sbom),
            env={"SOURCE_DATE_EPOCH": str(EPOCH)},
        )
        assert r.returncode == 0, r.stderr
        line = r.stdout.splitlines()[-1]
        assert line.startswith(f"SBOM {sbom}: attached to the image as sha256:"), r.stdout
        artifact = line.rpartition(" ")[2]
        image = manifest_digest(f"{registry}/api/os:1")
        assert [e["digest"] for e in handler.listed[image]] == [artifact]
        assert _tags(registry, "api/os") == ["1"]
        attached = debchunk_bytes("sbom", "--attached", "--tls-verify", "false", f"registry:{ref}")
        assert attached.returncode == 0, attached.stderr
        assert attached.stdout == sbom.read_bytes()
        assert handler.asked == [image]


def _one_error_line(result: subprocess.CompletedProcess[bytes], *words: str) -> str:
    assert result.returncode == 1, result
    assert result.stdout == b""
    (line,) = printable_lines(result.stderr)
    assert line.startswith("debchunk: error: "), line
    assert "Traceback" not in line
    for word in words:
        assert word in line, line
    return line


def test_bad_input(tmp_path: Path, registry: str, run_cli: RunCli) -> None:
    # No image there.
    _one_error_line(debchunk_bytes("sbom", f"oci:{tmp_path / 'none'}"), "not an OCI image layout")
    # An image of a tree without a dpkg database.
    bare = tmp_path / "bare"
    (bare / "usr/bin").mkdir(parents=True)
    (bare / "usr/bin/tool").write_bytes(b"x")
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    r = run_cli("encapsulate", "--rootfs", str(bare), f"oci:{tmp_path / 'bare-img'}:1", "-q", env=env)
    assert r.returncode == 0, r.stderr
    _one_error_line(debchunk_bytes("sbom", f"oci:{tmp_path / 'bare-img'}:1"), "no dpkg database", "bare-img")
    # --sbom on such a tree stops the build before anything is written.
    r = run_cli(
        "encapsulate",
        "--rootfs",
        str(bare),
        f"oci:{tmp_path / 'no'}:1",
        "--sbom",
        str(tmp_path / "s.json"),
        env=env,
    )
    assert r.returncode == 1 and "no dpkg database" in r.stderr, r.stderr
    assert not (tmp_path / "no").exists() and not (tmp_path / "s.json").exists()
    # --sbom into a directory that is not there: a usage error.
    r = run_cli(
        "encapsulate", "--rootfs", str(bare), f"oci:{tmp_path / 'no'}:1", "--sbom", "/nonexistent/s.json"
    )
    assert r.returncode == 2 and "--sbom /nonexistent/s.json: no directory" in r.stderr, r.stderr
    # --attached: an image in a layout has nothing attached; nor has a pushed image without --sbom.
    _one_error_line(debchunk_bytes("sbom", "--attached", f"oci:{tmp_path / 'bare-img'}:1"), "--attached")
    r = run_cli(
        "encapsulate",
        "--rootfs",
        str(bare),
        f"registry:{registry}/bad/os:1",
        "--dest-tls-verify",
        "false",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    line = _one_error_line(
        debchunk_bytes("sbom", "--attached", "--tls-verify", "false", f"registry:{registry}/bad/os:1"),
        "no SBOM is attached",
        "--sbom FILE",
    )
    assert referrers_tag(manifest_digest(f"{registry}/bad/os:1")) in line
    # A fallback tag that holds something else than an index of referrers.
    image = manifest_digest(f"{registry}/bad/os:1")
    copied = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--src-tls-verify=false",
            f"docker://{registry}/bad/os:1",
            f"docker://{registry}/bad/os:{referrers_tag(image)}",
        ],
        capture_output=True,
    )
    assert copied.returncode == 0, copied.stderr
    _one_error_line(
        debchunk_bytes("sbom", "--attached", "--tls-verify", "false", f"registry:{registry}/bad/os:1"),
        "not an image index of referrers",
    )


@pytest.mark.realtree
def test_real_trixie_tree(tmp_path: Path, registry: str, run_cli: RunCli) -> None:
    """A real mmdebstrap trixie tree (cached, as the other real-tree tests
    build it): its SBOM passes spdx-tools, lists exactly what dpkg-query
    lists, and is attached to the pushed image and read back from the registry."""
    tree = build_tree(TreeSpec("trixie"))
    sbom = tmp_path / "trixie.spdx.json"
    ref = f"{registry}/trixie/os:13"
    r = run_cli(
        "encapsulate",
        "--rootfs",
        str(tree),
        f"registry:{ref}",
        "--dest-tls-verify",
        "false",
        "--compression-fast",
        "--max-layers",
        "16",
        "--sbom",
        str(sbom),
        "--json",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    assert r.returncode == 0, r.stderr
    document = spdx_checked(sbom)
    packages = package_set(document)
    listed = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={tree}/var/lib/dpkg",
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture}\n",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert packages == {tuple(line.split(" ")) for line in listed.splitlines()}
    assert len(packages) > 80
    purls = {p["name"]: p["externalRefs"][0]["referenceLocator"] for p in document["packages"]}
    version = next(v for n, v, _ in packages if n == "libc6")
    encoded = version.replace("+", "%2B")
    assert purls["libc6"] == f"pkg:deb/debian/libc6@{encoded}?arch=amd64&distro=trixie"
    assert all(p["supplier"].startswith("Person: ") for p in document["packages"])
    # Attached: the fallback tag's index, the artifact, its blob; and debchunk sbom --attached.
    image = manifest_digest(ref)
    base = f"http://{registry}/v2/trixie/os"
    (entry,) = json.loads(_get(f"{base}/manifests/{referrers_tag(image)}", MEDIA_INDEX)[2])["manifests"]
    assert entry["digest"] == json.loads(r.stdout)["sbom_artifact"]
    manifest = json.loads(_get(f"{base}/manifests/{entry['digest']}", MEDIA_MANIFEST)[2])
    assert manifest["subject"]["digest"] == image
    assert _get(f"{base}/blobs/{manifest['layers'][0]['digest']}")[2] == sbom.read_bytes()
    attached = debchunk_bytes("sbom", "--attached", "--tls-verify", "false", f"registry:{ref}")
    assert attached.returncode == 0, attached.stderr
    assert attached.stdout == sbom.read_bytes()
