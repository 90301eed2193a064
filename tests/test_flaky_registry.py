"""Pushes through a flaky registry: a real docker-registry behind
``FaultProxy``, which answers 5xx and 429, resets connections, stalls, or
acknowledges uploads it drops.  Transient faults are tried again and the
push gives the image a clean push gives (same manifest digest); permanent
refusals and faults that outlast the retries are one line naming the
registry's error and what to do, exit 1, and the tag stays where it was."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benches.debtrees import TreeSpec, build_tree
from benches.registry import manifest_digest
from tests.conftest import RunCli, printable_lines
from tests.faultproxy import Fault, FaultProxy
from tests.images import EPOCH, packages_tree

BLOB_PUT = "/blobs/uploads/"
MANIFEST = "/manifests/"


def push(
    run_cli: RunCli, tree: Path, ref: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``container-encapsulate --rootfs TREE registry:REF`` (no prior, plain
    HTTP, errors only); the finished process and the seconds it took."""
    started = time.monotonic()
    r = run_cli(
        "--rootfs",
        str(tree),
        f"registry:{ref}",
        "--dest-tls-verify",
        "false",
        "--compression-fast",
        "--max-layers",
        "16",
        "--no-prior",
        "-q",
        *(() if "--retry-delay" in extra else ("--retry-delay", "0.1")),
        *extra,
        program="container-encapsulate",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    return r, time.monotonic() - started


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed run (exit 1, no traceback)."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = printable_lines(r.stderr.encode())
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree of 12 packages (13 blobs pushed with the config)."""
    return packages_tree(tmp_path_factory.mktemp("flaky") / "tree", 12, 50_000, 10)


@pytest.fixture(scope="module")
def small_clean(small_tree: Path, registry: str) -> str:
    """The manifest digest of the small tree pushed with no proxy."""
    r, _ = push(_run, small_tree, f"{registry}/flaky/clean:1")
    assert r.returncode == 0, r.stderr
    return manifest_digest(f"{registry}/flaky/clean:1")


def _run(
    *args: str, program: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``container-encapsulate ARGS`` in a child process (``run_cli``, for module fixtures)."""
    code = "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
    )


# --- the findings, each on a small image -------------------------------------------


def test_a_503_on_each_blob_head_is_tried_again(
    small_tree: Path, small_clean: str, registry: str, run_cli: RunCli
) -> None:
    """The first request to each blob path answered 503: the push completes, same digest."""
    fault = Fault("status", method="HEAD", path="/blobs/sha256:", first_per_path=True)
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(run_cli, small_tree, f"{proxy.address}/flaky/head503:1")
    assert r.returncode == 0, r.stderr
    assert fault.hits >= 13
    assert manifest_digest(f"{registry}/flaky/head503:1") == small_clean


def test_a_connection_closed_without_an_answer_is_tried_again(
    small_tree: Path, small_clean: str, registry: str, run_cli: RunCli
) -> None:
    """The first request to each blob path (HEADs and uploads) cut: same digest."""
    fault = Fault("reset", path="/blobs/", first_per_path=True)
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(run_cli, small_tree, f"{proxy.address}/flaky/reset:1")
    assert r.returncode == 0, r.stderr
    assert fault.hits >= 13
    assert manifest_digest(f"{registry}/flaky/reset:1") == small_clean


def test_an_upload_cut_after_the_registry_took_it(
    small_tree: Path, small_clean: str, registry: str, run_cli: RunCli
) -> None:
    """Each blob upload reaches the registry but its answer is cut: a new
    session is started, or the blob found there; the manifest PUT too."""
    faults = [
        Fault("reset-after", method="PUT", path=BLOB_PUT, times=13),
        Fault("reset-after", method="PUT", path=MANIFEST, times=1),
    ]
    with FaultProxy(registry, faults) as proxy:
        r, _ = push(run_cli, small_tree, f"{proxy.address}/flaky/cut:1")
    assert r.returncode == 0, r.stderr
    assert [f.hits for f in faults] == [13, 1]
    assert proxy.count("PUT", MANIFEST) == 2
    assert manifest_digest(f"{registry}/flaky/cut:1") == small_clean


def test_retry_after_is_honoured(small_tree: Path, small_clean: str, registry: str, run_cli: RunCli) -> None:
    """A 429 with ``Retry-After: 2`` on the manifest PUT: tried again no sooner."""
    fault = Fault(
        "status",
        method="PUT",
        path=MANIFEST,
        times=1,
        status=429,
        code="TOOMANYREQUESTS",
        message="too many requests",
        headers={"Retry-After": "2"},
    )
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(run_cli, small_tree, f"{proxy.address}/flaky/429:1", "--retry-delay", "0")
    assert r.returncode == 0, r.stderr
    puts = [t for m, p, _, t in proxy.log if m == "PUT" and MANIFEST in p]
    assert len(puts) == 2 and puts[1] - puts[0] >= 2
    assert manifest_digest(f"{registry}/flaky/429:1") == small_clean


def test_a_stalled_upload_is_given_up_and_made_again(
    small_tree: Path, small_clean: str, registry: str, run_cli: RunCli
) -> None:
    """A registry that takes an upload and says nothing for 30 s: given up
    after --registry-timeout, uploaded again, same digest."""
    fault = Fault("stall", method="PUT", path=BLOB_PUT, times=1, seconds=30)
    with FaultProxy(registry, [fault]) as proxy:
        r, took = push(run_cli, small_tree, f"{proxy.address}/flaky/stall:1", "--registry-timeout", "2")
    assert r.returncode == 0, r.stderr
    assert fault.hits == 1 and took < 20
    assert manifest_digest(f"{registry}/flaky/stall:1") == small_clean


@pytest.fixture(scope="module")
def kept(small_tree: Path, small_clean: str, registry: str) -> str:
    """``flaky/kept:1``, holding the small tree's image (pushed with no
    proxy); failed pushes of another image to it must leave it so."""
    r, _ = push(_run, small_tree, f"{registry}/flaky/kept:1")
    assert r.returncode == 0, r.stderr
    assert manifest_digest(f"{registry}/flaky/kept:1") == small_clean
    return "flaky/kept:1"


def test_a_blob_acknowledged_but_absent_tags_nothing(
    small_tree: Path, small_clean: str, registry: str, kept: str, run_cli: RunCli
) -> None:
    """A registry answering 201 to uploads it drops: no manifest is sent, the tag stays."""
    fault = Fault("ack", method="PUT", path=BLOB_PUT)
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(
            run_cli,
            small_tree,
            f"{proxy.address}/{kept}",
            "--label",
            "fault=ack",
            "--retry-times",
            "1",
            "--retry-delay",
            "0",
        )
    line = one_line(r)
    assert "was not there" in line and "2 tries" in line, line
    assert fault.hits >= 2
    assert proxy.count("PUT", MANIFEST) == 0
    assert manifest_digest(f"{registry}/{kept}") == small_clean


def test_a_fault_that_outlasts_the_retries_says_so(
    small_tree: Path, small_clean: str, registry: str, kept: str, run_cli: RunCli
) -> None:
    """Every blob HEAD answered 503: one line with the count, the tag stays."""
    fault = Fault("status", method="HEAD", path="/blobs/")
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(
            run_cli,
            small_tree,
            f"{proxy.address}/{kept}",
            "--label",
            "fault=outlast",
            "--retry-times",
            "2",
            "--retry-delay",
            "0.1",
        )
    line = one_line(r)
    assert "on each of 3 tries" in line and "HTTP 503" in line and "--retry-times" in line, line
    assert proxy.count("PUT", MANIFEST) == 0
    assert manifest_digest(f"{registry}/{kept}") == small_clean


def test_a_registry_down_for_the_whole_retry_window(
    small_tree: Path, small_clean: str, registry: str, kept: str, run_cli: RunCli
) -> None:
    """A registry that stops listening once the push has begun (its first
    blob HEAD), for good: waited for over the retries, then one line with
    the count; the tag stays."""
    fault = Fault("down", method="HEAD", path="/blobs/", times=1)
    with FaultProxy(registry, [fault]) as proxy:
        r, took = push(
            run_cli,
            small_tree,
            f"{proxy.address}/{kept}",
            "--label",
            "fault=down",
            "--retry-times",
            "2",
            "--retry-delay",
            "0.2",
        )
    line = one_line(r)
    assert "connection refused" in line and "on each of 3 tries" in line, line
    assert fault.hits == 1 and took < 30
    assert manifest_digest(f"{registry}/{kept}") == small_clean


def test_nothing_listening_fails_at_once(small_tree: Path, run_cli: RunCli) -> None:
    """A refused first contact is a wrong address, not a passing fault: one line, no waiting."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, took = push(run_cli, small_tree, f"127.0.0.1:{port}/flaky/down:1", "--retry-delay", "5")
    line = one_line(r)
    assert "cannot reach the registry" in line and "connection refused" in line, line
    assert took < 5


PERMANENT = {
    "400": (
        Fault("status", "PUT", MANIFEST, status=400, code="MANIFEST_INVALID", message="manifest invalid"),
        ("HTTP 400", "MANIFEST_INVALID: manifest invalid", "its error message says why"),
    ),
    "404": (
        Fault(
            "status",
            "POST",
            BLOB_PUT,
            status=404,
            code="NAME_UNKNOWN",
            message="repository name not known to registry",
        ),
        ("HTTP 404", "NAME_UNKNOWN: repository name not known to registry", "create it first"),
    ),
    "401": (
        Fault(
            "status",
            "PUT",
            MANIFEST,
            status=401,
            code="UNAUTHORIZED",
            message="authentication required",
            headers={"WWW-Authenticate": 'Basic realm="flaky"'},
        ),
        ("HTTP 401", "UNAUTHORIZED: authentication required", "check --dest-creds or --authfile"),
    ),
    "403": (
        Fault(
            "status",
            "PUT",
            MANIFEST,
            status=403,
            code="DENIED",
            message="requested access to the resource is denied",
        ),
        ("HTTP 403", "DENIED: requested access to the resource is denied", "ask for push access"),
    ),
    "413": (
        Fault(
            "status",
            "PUT",
            BLOB_PUT,
            status=413,
            body=b"<html><body>413 Request Entity Too Large</body></html>",
        ),
        ("HTTP 413", "raise its upload limit"),
    ),
    "507": (
        Fault("status", "PUT", BLOB_PUT, status=507, code="UNKNOWN", message="no space left on device"),
        ("HTTP 507", "UNKNOWN: no space left on device", "storage is full"),
    ),
}


@pytest.mark.parametrize("status", sorted(PERMANENT))
def test_a_permanent_refusal_is_one_line_and_keeps_the_tag(
    status: str, small_tree: Path, small_clean: str, registry: str, kept: str, run_cli: RunCli
) -> None:
    """400, 401, 403, 404 (the repository), 413, 507: not tried again; the registry's code and message
    quoted with what to do; exit 1; the tag where it was."""
    fault, expected = PERMANENT[status]
    fault.hits = 0
    with FaultProxy(registry, [fault]) as proxy:
        r, _ = push(
            run_cli,
            small_tree,
            f"{proxy.address}/{kept}",
            "--label",
            f"fault={status}",
            "--dest-creds",
            "pusher:s3cret",
        )
    line = one_line(r)
    assert all(part in line for part in expected), line
    assert "s3cret" not in r.stderr + r.stdout
    # Answered once (a 401 twice: the challenge is answered once), never retried;
    # each image differs (its label), so its config blob is sent.
    assert fault.hits == (2 if status == "401" else 1)
    assert manifest_digest(f"{registry}/{kept}") == small_clean
    assert proxy.count("PUT", MANIFEST) == {"400": 1, "401": 2, "403": 1}.get(status, 0)


# --- the trixie minbase image (acceptance) -------------------------------------------------


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The cached trixie minbase tree and a ``--cache`` layout holding its
    image's layers: each push below takes them from there (no compression),
    sending every blob to a new repository."""
    tree = build_tree(TreeSpec("trixie"))
    work = tmp_path_factory.mktemp("trixie")
    cache = work / "cache"
    r = _run(
        "--rootfs",
        str(tree),
        f"oci:{work / 'layout'}:13",
        "--compression-fast",
        "--max-layers",
        "16",
        "--cache",
        str(cache),
        "-q",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    assert r.returncode == 0, r.stderr
    return tree, cache


@pytest.fixture(scope="module")
def trixie_clean(trixie: tuple[Path, Path], registry: str) -> tuple[str, float]:
    """The digest of the trixie image pushed through the proxy with no
    fault, and the seconds the push took."""
    tree, cache = trixie
    with FaultProxy(registry) as proxy:
        r, took = push(_run, tree, f"{proxy.address}/trixie/clean:13", "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    return manifest_digest(f"{registry}/trixie/clean:13"), took


TRIXIE_FAULTS = {
    "503": ([Fault("status", probability=0.1)], ()),
    "reset": ([Fault("reset", probability=0.05), Fault("reset-after", probability=0.05)], ()),
    "429": (
        [
            Fault(
                "status",
                "PUT",
                MANIFEST,
                times=1,
                status=429,
                code="TOOMANYREQUESTS",
                message="too many requests",
                headers={"Retry-After": "1"},
            )
        ],
        (),
    ),
    "stall": ([Fault("stall", "PUT|PATCH", BLOB_PUT, times=1, seconds=30)], ("--registry-timeout", "5")),
}


@pytest.mark.realtree
@pytest.mark.parametrize("kind", list(TRIXIE_FAULTS))
def test_the_trixie_push_survives(
    kind: str, trixie: tuple[Path, Path], trixie_clean: tuple[str, float], registry: str
) -> None:
    """10% random 503s, 10% random resets, a 429 with ``Retry-After: 1`` on
    the manifest PUT, a 30 s stall of a blob upload with a 5 s timeout: the
    push completes (default retries and delay), and the image is the clean push's."""
    tree, cache = trixie
    faults, extra = TRIXIE_FAULTS[kind]
    for fault in faults:
        fault.hits = 0
    with FaultProxy(registry, faults) as proxy:
        r, took = push(
            _run,
            tree,
            f"{proxy.address}/trixie/{kind}:13",
            "--cache",
            str(cache),
            "--retry-delay",
            "1",
            *extra,
        )
    assert r.returncode == 0, r.stderr
    assert manifest_digest(f"{registry}/trixie/{kind}:13") == trixie_clean[0]
    hits = sum(f.hits for f in faults)
    print(
        f"trixie push under {kind}: {hits} faults in {len(proxy.log)} requests, {took:.1f} s; "
        f"clean {trixie_clean[1]:.1f} s; ratio {took / trixie_clean[1]:.2f}"
    )
    if kind == "429":
        puts = [t for m, p, _, t in proxy.log if m == "PUT" and MANIFEST in p]
        assert hits == 1 and len(puts) == 2 and puts[1] - puts[0] >= 1
    elif kind == "stall":
        assert hits == 1 and 5 < took < 30
    else:
        # Faults were injected.  Each request draws from the proxy's seed and
        # the request itself (faultproxy.py), so the count changes whenever the
        # image's blobs do: 3 of 76 requests at 10% for one image, 7 for
        # another.  At least one, against 0.9 ** 76 = 0.03% by chance.
        assert hits >= 1


# --- skopeo and the options -------------------------------------------------------------------


def test_skopeo_reads_are_tried_again(
    small_tree: Path, small_clean: str, registry: str, run_cli: RunCli
) -> None:
    """``inspect`` reads through skopeo, given --retry-times: a connection
    reset on the first manifest GET is tried again by skopeo (skopeo 1.9
    tries network faults again, not a 5xx answer)."""
    fault = Fault("reset", method="GET", path=MANIFEST, times=1)
    with FaultProxy(registry, [fault]) as proxy:
        r = run_cli(
            "inspect", "--no-layers", "--tls-verify", "false", f"registry:{proxy.address}/flaky/clean:1"
        )
    assert r.returncode == 0, r.stderr
    assert fault.hits == 1
    assert small_clean.removeprefix("sha256:")[:12] in r.stdout


def test_the_retry_options_reach_every_registry() -> None:
    """BuildConfig's retry fields are put into both registry options, and skopeo is given --retry-times."""
    from encapsulate import RootfsOrigin
    from encapsulate.config import BuildConfig
    from encapsulate.oci.imgref import ImageRef, RegistryOptions
    from encapsulate.oci.retry import RetryPolicy
    from encapsulate.oci.skopeo import retry_flags

    config = BuildConfig(
        origin=RootfsOrigin("/"), destination="oci:/x", retry_times=7, retry_delay=0.5, registry_timeout=9
    )
    assert config.registry.retry == config.dest_registry.retry == RetryPolicy(7, 0.5, 9)
    registry = ImageRef("registry", "h:5000/r:1")
    assert retry_flags((registry, config.registry)) == ["--retry-times=7"]
    assert retry_flags((ImageRef("oci", "/x", None), config.registry)) == []
    assert retry_flags((registry, RegistryOptions())) == ["--retry-times=3"]


def test_bad_retry_options_are_usage_errors(small_tree: Path, run_cli: RunCli) -> None:
    """Out of range, or not a number: a usage error naming the option (exit 2)."""
    for option, value in (("--retry-times", "-1"), ("--retry-delay", "x"), ("--registry-timeout", "0")):
        r, _ = push(run_cli, small_tree, "127.0.0.1:1/flaky/x:1", option, value)
        assert r.returncode == 2, (option, r.stderr)
        assert option in r.stderr
    # The reading commands take them too, checked alike.
    r = run_cli("inspect", "--registry-timeout", "0", "registry:127.0.0.1:1/os:1")
    assert r.returncode == 2 and "--registry-timeout" in r.stderr, r.stderr
