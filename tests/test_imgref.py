"""IMGREF parsing, the transport table and the skopeo runner; and that the
OCI and read-back modules import without gi."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import encapsulate.oci
import encapsulate.tools
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref, valid_tag
from encapsulate.oci.skopeo import registry_flags, skopeo_inspect
from tests.conftest import RunCli

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "transport", "location", "tag", "skopeo"),
    [
        ("oci:out", "oci", "out", None, "oci:out"),
        ("oci:/srv/img:v1.2-rc_3", "oci", "/srv/img", "v1.2-rc_3", "oci:/srv/img:v1.2-rc_3"),
        ("oci-archive:a.tar:latest", "oci-archive", "a.tar", "latest", "oci-archive:a.tar:latest"),
        ("docker-archive:a.tar:x/y:1", "docker-archive", "a.tar:x/y:1", None, "docker-archive:a.tar:x/y:1"),
        (
            "registry:127.0.0.1:5000/os:2",
            "registry",
            "127.0.0.1:5000/os:2",
            None,
            "docker://127.0.0.1:5000/os:2",
        ),
        ("docker://quay.io/os:2", "docker", "//quay.io/os:2", None, "docker://quay.io/os:2"),
        (
            "containers-storage:localhost/os",
            "containers-storage",
            "localhost/os",
            None,
            "containers-storage:localhost/os",
        ),
        ("dir:/tmp/d", "dir", "/tmp/d", None, "dir:/tmp/d"),
    ],
)
def test_parse(text: str, transport: str, location: str, tag: str | None, skopeo: str) -> None:
    ref = parse_imgref(text)
    assert (ref.transport, ref.location, ref.tag) == (transport, location, tag)
    assert ref.skopeo == skopeo
    assert str(ref) == text
    assert ref.direct == (transport in ("oci", "oci-archive"))
    assert ref.registry == (transport in ("registry", "docker"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("oci:img:bad tag!", "not a valid OCI tag"),
        ("oci:img:.hidden", "not a valid OCI tag"),
        ("oci:img:a..b", "not a valid OCI tag"),
        ("oci:img:" + "a" * 129, "not a valid OCI tag"),
        ("oci:img:", "not a valid OCI tag"),
        ("oci::v1", "no path"),
        ("ftp:x", "unknown transport 'ftp'"),
        ("nocolon", "TRANSPORT:LOCATION"),
        ("docker:quay.io/os", "docker://HOST/REPO"),
        ("registry:", "no location"),
    ],
)
def test_refused(text: str, words: str) -> None:
    with pytest.raises(EncapsulateError, match=words.replace(".", r"\.").replace("(", r"\(")):
        parse_imgref(text)


def test_tag_grammar() -> None:
    for tag in ("latest", "v1", "1.2.3", "a_b", "a-b", "A9", "a" * 128, "a--b"):
        assert valid_tag(tag), tag
    # The distribution-spec allows a leading _ and runs of . and - (image-spec
    # ref.name does not); ref.name allows + (the distribution-spec does not).
    for tag in ("_x", "x_", "a+b", "a..b", "a-", "-a", "a b", "a/b", "a:b", "a@b", "é", "a" * 129):
        assert not valid_tag(tag), tag


def test_by_digest() -> None:
    digest = "sha256:" + "a" * 64
    for text, name in (
        ("registry:127.0.0.1:5000/os:2", "127.0.0.1:5000/os"),
        ("registry:127.0.0.1:5000/os", "127.0.0.1:5000/os"),
        ("docker://quay.io/a/b:latest", "//quay.io/a/b"),
    ):
        ref = parse_imgref(text).by_digest(digest)
        assert ref.location == f"{name}@{digest}"
    with pytest.raises(EncapsulateError):
        parse_imgref("oci:x").by_digest(digest)


def test_registry_flags() -> None:
    registry, local = parse_imgref("registry:h/r"), parse_imgref("containers-storage:r")
    both = RegistryOptions(authfile="a.json", tls_verify=False)
    assert registry_flags(registry, DEFAULT_REGISTRY) == []
    assert registry_flags(registry, RegistryOptions(tls_verify=False)) == ["--tls-verify=false"]
    assert registry_flags(registry, RegistryOptions(tls_verify=True), "src") == ["--src-tls-verify=true"]
    assert registry_flags(registry, both, "dest") == ["--dest-tls-verify=false", "--dest-authfile=a.json"]
    assert registry_flags(local, both, "dest") == []


def test_skopeo_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ImageRef("docker-archive", str(tmp_path / "none.tar"))
    with pytest.raises(EncapsulateError) as failed:
        skopeo_inspect(missing, DEFAULT_REGISTRY)
    message = str(failed.value)
    # skopeo's "time=... level=fatal msg=..." reduced to its message.
    assert message.startswith(f"{missing}: skopeo inspect failed: ") and "none.tar" in message
    assert "level=fatal" not in message and "msg=" not in message and "\n" not in message
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EncapsulateError, match=r"needs skopeo.*apt-get install skopeo"):
        skopeo_inspect(missing, DEFAULT_REGISTRY)


def test_bad_tag_on_the_command_line(run_cli: RunCli, tmp_path: Path) -> None:
    for command in (["inspect"], ["validate"], ["report", "-o", str(tmp_path / "r.html")]):
        proc = run_cli(*command, f"oci:{tmp_path}:bad tag!")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("debchunk: error: ") and "'bad tag!' is not a valid OCI tag" in line, line


def test_tls_verify_reaches_skopeo(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    """Every reading command takes --tls-verify and hands it to skopeo: a
    recording stand-in for skopeo shows the flag."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "skopeo"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho \'level=fatal msg="stop here"\' >&2\nexit 1\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    page = str(tmp_path / "r.html")
    for command in (
        ["inspect", "registry:127.0.0.1:1/os"],
        ["diff", "registry:127.0.0.1:1/os", "registry:127.0.0.1:1/os"],
        ["validate", "registry:127.0.0.1:1/os"],
        ["report", "registry:127.0.0.1:1/os", "-o", page],
    ):
        log.unlink(missing_ok=True)
        proc = run_cli(*command, "--tls-verify", "false", env=env)
        assert proc.returncode == 1 and "stop here" in proc.stderr, proc.stderr
        assert "--tls-verify=false" in log.read_text() or "--src-tls-verify=false" in log.read_text()
    # report's --prior is read with it too (the image itself is local).
    layout = tmp_path / "img"
    built = run_cli(
        "--rootfs",
        str(sample_tree),
        f"oci:{layout}:v1",
        "--max-layers",
        "4",
        "--quiet",
        program="container-encapsulate",
    )
    assert built.returncode == 0, built.stderr
    log.unlink(missing_ok=True)
    proc = run_cli(
        "report",
        f"oci:{layout}:v1",
        "--prior",
        "registry:127.0.0.1:1/os",
        "-o",
        page,
        "--tls-verify",
        "false",
        "--retry-times",
        "5",
        env=env,
    )
    assert proc.returncode == 1 and "stop here" in proc.stderr, proc.stderr
    assert log.read_text().split() == [
        "inspect",
        "--tls-verify=false",
        "--retry-times=5",
        "--raw",
        "docker://127.0.0.1:1/os",
    ]


def test_no_module_imports_gi() -> None:
    """encapsulate.oci and encapsulate.tools import with gi unavailable."""
    names = [
        m.name
        for package in (encapsulate.oci, encapsulate.tools)
        for m in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    ]
    assert {"encapsulate.oci.read", "encapsulate.tools.model", "encapsulate.oci.prior"} <= set(names)
    code = (
        "import importlib, json, sys\n"
        "sys.modules['gi'] = None\n"
        f"for name in {json.dumps(names)}:\n"
        "    importlib.import_module(name)\n"
        "assert 'gi.repository' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    # And the block works: importing the ostree writer fails.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['gi'] = None; import encapsulate.write.ostree"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0 and "gi" in proc.stderr
