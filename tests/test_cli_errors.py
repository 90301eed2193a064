"""container-encapsulate as a process: exit status 1 or 2 with one
``container-encapsulate: error: ...`` line, --help, Ctrl-C, a full disk and
a missing skopeo, each leaving what was on disk as it was."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from encapsulate import RootfsOrigin
from tests.conftest import RunCli, default_sigint, snapshot
from tests.images import EPOCH, build

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())"


def encapsulate(run_cli: RunCli, *args: str) -> subprocess.CompletedProcess[str]:
    """``container-encapsulate ARGS`` with ``SOURCE_DATE_EPOCH`` set."""
    return run_cli(*args, program="container-encapsulate", env={"SOURCE_DATE_EPOCH": str(EPOCH)})


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The process exited 1 with exactly one error line naming ``words``."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("container-encapsulate: error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def usage_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """The process exited 2 with the usage and one error line naming ``words``."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("usage: ") and lines[-1].startswith("container-encapsulate: error: ")
    for w in words:
        assert w in lines[-1], lines[-1]


def test_help(run_cli: RunCli) -> None:
    proc = run_cli("--help", program="container-encapsulate")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: container-encapsulate")
    for option in ("--repo", "--rootfs", "--max-layers", "--prior", "--format", "--json"):
        assert option in proc.stdout
    # rechunk's help says its defaults (the layer budget, the format of an image origin).
    text = " ".join(run_cli("rechunk", "--help").stdout.split())
    assert "2 to 500 (default 64)" in text and "plain for --rootfs and for an image: --from, rechunk" in text


def test_bad_destinations_are_one_line(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    before = snapshot(junk)
    one_error(
        encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{junk}"), str(junk), "not an OCI layout"
    )
    assert snapshot(junk) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error(encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{afile}"), "not a directory")
    assert afile.read_text() == "x"
    one_error(encapsulate(run_cli, "--rootfs", str(tmp_path / "nope"), f"oci:{tmp_path}/out"), "nope")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out/blobs/sha256").iterdir())
    usage_error(encapsulate(run_cli, "--rootfs", str(sample_tree), "ftp:x"), "ftp")
    usage_error(encapsulate(run_cli, "--rootfs", str(sample_tree), "nowhere"), "nowhere")


def test_refusals_are_one_line(run_cli: RunCli, sample_repos: dict[str, Path], tmp_path: Path) -> None:
    repo = str(sample_repos["bare-user"])
    usage_error(
        encapsulate(run_cli, "--rootfs", str(tmp_path), f"oci:{tmp_path}/x", "--format", "ostree"),
        "--format ostree",
    )
    one_error(
        encapsulate(run_cli, "--repo", repo, "sample", f"oci:{tmp_path}/x", "--copymeta", "missing"),
        "--copymeta missing",
    )
    one_error(
        encapsulate(
            run_cli, "--repo", repo, "sample", f"oci:{tmp_path}/x", "--prior", f"oci:{tmp_path}/missing"
        ),
        "missing",
        "not an OCI image layout",
    )
    assert not (tmp_path / "x").exists()


def test_registry_down_is_one_line(run_cli: RunCli, sample_tree: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = encapsulate(
        run_cli, "--rootfs", str(sample_tree), f"docker://127.0.0.1:{port}/x:y", "--dest-tls-verify", "false"
    )
    one_error(proc, f"127.0.0.1:{port}", "connection refused")
    assert "level=fatal" not in proc.stderr


def test_skopeo_missing(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "--rootfs",
        str(sample_tree),
        "docker-archive:/tmp/never.tar",
        program="container-encapsulate",
        env={"PATH": str(tmp_path)},
    )
    one_error(proc, "needs skopeo")
    assert not Path("/tmp/never.tar").exists()


def slow_tree(sample_tree: Path, where: Path, mib: int) -> Path:
    """The sample with a ``mib`` MiB file of letters drawn at random: deflate
    must work through every byte (random bytes would be stored as they are,
    in a blink), so writing or reading it lasts long enough to interrupt."""
    subprocess.run(["cp", "-a", str(sample_tree), str(where)], check=True)
    rng = np.random.default_rng(7)
    with open(where / "usr/lib/firmware/huge.bin", "wb") as f:
        for _ in range(mib):
            f.write(rng.integers(ord("a"), ord("q"), size=1 << 20, dtype=np.uint8).tobytes())
    return where


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_an_interrupt_leaves_the_layout_as_it_was(
    sample_tree: Path, tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    """Ctrl-C, SIGTERM (systemd, CI runners) and SIGHUP (a closed terminal)
    stop a build while it writes a layer: one line, the shell's status, the
    layout as it was (no temporary blob left)."""
    layout = tmp_path / "img"
    build(RootfsOrigin(str(sample_tree)), f"oci:{layout}:keep")
    big = slow_tree(sample_tree, tmp_path / "big", 300)
    before = snapshot(layout, dir_mtimes=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "--rootfs", str(big), f"oci:{layout}:new"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Unset CI: its progress lines (every 5 s) would join the one error line.
        env={**os.environ, "CI": "", "SOURCE_DATE_EPOCH": str(EPOCH)},
        preexec_fn=default_sigint,
    )
    # Interrupt it while a layer is being written (a temporary blob is there):
    # a fixed delay can outlast the whole run on a fast machine.
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".tmp-blob-") for p in (layout / "blobs/sha256").iterdir()):
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline, "no layer was written within a minute"
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert err.strip().splitlines() == ["container-encapsulate: error: interrupted; nothing was written"]
    assert snapshot(layout, dir_mtimes=False) == before


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_an_interrupt_leaves_no_new_destination(sample_tree: Path, tmp_path: Path, transport: str) -> None:
    """SIGTERM while a layer is written for a destination that is not there
    yet: nothing appears (no layout, no directory made above it, no
    archive, no temporary file beside it)."""
    big = slow_tree(sample_tree, tmp_path / "big", 300)
    place = tmp_path / "place"
    place.mkdir()
    imgref = f"oci:{place}/made/img:1" if transport == "oci" else f"oci-archive:{place}/img.tar:1"
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "--rootfs", str(big), imgref],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Unset CI: its progress lines (every 5 s) would join the one error line.
        env={**os.environ, "CI": "", "SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".tmp-blob-") for p in place.rglob("*")):
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline, "no layer was written within a minute"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["container-encapsulate: error: interrupted; nothing was written"]
    assert list(place.iterdir()) == []


def test_sigterm_while_rechunking_removes_the_spools(sample_tree: Path, tmp_path: Path) -> None:
    """``--from`` spools the image's layers under TMPDIR: a SIGTERM while it
    reads them leaves no spool and no temporary copy behind (issue: it left
    twice the image there), and writes nothing."""
    big = slow_tree(sample_tree, tmp_path / "big", 200)
    source = tmp_path / "source"
    build(RootfsOrigin(str(big)), f"oci:{source}:1", max_layers=3)
    spools = tmp_path / "tmp"
    spools.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "--from", f"oci:{source}:1", f"oci:{tmp_path}/out:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Unset CI: its progress lines (every 5 s) would join the one error line.
        env={**os.environ, "CI": "", "SOURCE_DATE_EPOCH": str(EPOCH), "TMPDIR": str(spools)},
    )
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in spools.rglob("*")):
        assert proc.poll() is None, "finished before it could be stopped"
        assert time.monotonic() < deadline, "nothing was spooled within a minute"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["container-encapsulate: error: interrupted; nothing was written"]
    assert list(spools.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_disk_full_leaves_the_layout_as_it_was(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    """A 3 MiB filesystem holds a small image; writing the sample there runs out
    of space: one line, exit 1, the small image and its layout untouched."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(tiny)], check=True)
    try:
        small = tmp_path / "small"
        (small / "etc").mkdir(parents=True)
        (small / "etc/hostname").write_text("small\n")
        build(RootfsOrigin(str(small)), f"oci:{tiny}/img:small")
        before = snapshot(tiny, dir_mtimes=False)
        line = one_error(encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tiny}/img:big"))
        assert "no space left" in line.lower(), line
        assert snapshot(tiny, dir_mtimes=False) == before
        subprocess.run(["skopeo", "inspect", f"oci:{tiny}/img:small"], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_an_unreadable_comparison_image_fails_before_anything_is_written(
    run_cli: RunCli, sample_tree: Path, tmp_path: Path
) -> None:
    """``--compare-with-build`` is read first: an image that is not there is
    one line, and neither the destination nor the plan file is written."""
    proc = encapsulate(
        run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/out:1",
        "--compare-with-build", f"oci:{tmp_path}/missing:1", "--plan-json", str(tmp_path / "plan.json"),
    )  # fmt: skip
    one_error(proc, "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_plan_file_that_cannot_be_written_fails_before_the_image_is(
    run_cli: RunCli, sample_tree: Path, tmp_path: Path
) -> None:
    """``--plan-json`` is written beside its place before the image is
    delivered: a full file system there is one line, the destination is not
    made and the old plan file is left as it was; with room, both are put
    in place, and no temporary file stays."""
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    try:
        plan = full / "plan.json"
        plan.write_text("old\n")
        with contextlib.suppress(OSError), (full / "filler").open("wb") as filler:
            filler.write(bytes(1 << 20))
        proc = encapsulate(
            run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/out:1", "--plan-json", str(plan)
        )
        one_error(proc, "plan")
        assert not (tmp_path / "out").exists()
        assert plan.read_text() == "old\n"
        assert sorted(p.name for p in full.iterdir()) == ["filler", "plan.json"]
        (full / "filler").unlink()
        proc = encapsulate(
            run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/out:1", "--plan-json", str(plan)
        )
        assert proc.returncode == 0, proc.stderr
        assert plan.read_text().startswith("{")
        assert sorted(p.name for p in full.iterdir()) == ["plan.json"]
    finally:
        subprocess.run(["umount", str(full)], check=True)
