"""The in-Containerfile flow (examples/Containerfile.chunked) with the buildah
Debian 12 ships: a stage FROM the tool image mounts the built OS root
(``RUN --mount=from=os``), writes a chunked oci-archive into the build
context, with ``--prior`` when a previous image is given, and the last stage
is ``FROM oci-archive:``.  Its layers are the ones ``debchunk rechunk`` writes
for the same root (with the standard library's zlib, as the packaged debchunk
compresses)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benches.debtrees import TreeSpec, build_tree
from tests.toolimage import TOOL, TRIXIE, tool_image

pytestmark = pytest.mark.realtree

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "Containerfile.chunked"
OS_IMAGE = "localhost/debchunk-test-flow-os:latest"
FINAL = "localhost/debchunk-test-flow:latest"
# buildah names the image of ``FROM oci-archive:`` after the archive's tag.
ARCHIVE_NAME = "localhost/chunked:latest"


def buildah_bud(context: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``buildah bud`` of ``context`` as these tests run it (chroot isolation,
    no pulls), from the context directory: ``FROM oci-archive:FILE`` is read
    relative to buildah's working directory, not the context's."""
    return subprocess.run(
        ["buildah", "bud", "--isolation", "chroot", "--pull=never", *args, str(context)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=context,
    )


def bud(context: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The example Containerfile built in ``context``."""
    return buildah_bud(
        context,
        "--build-arg",
        f"OS_BASE={TRIXIE}",
        "--build-arg",
        f"DEBCHUNK={TOOL}",
        # Where the chunk stage writes the archive: the context itself.
        "--volume",
        f"{context}:/context",
        "--file",
        str(context / "Containerfile.chunked"),
        *args,
    )


def archive_layers(archive: Path, into: Path) -> tuple[list[str], list[str]]:
    """The layer digests and diff_ids of the one image in an oci-archive."""
    into.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(into)], check=True)
    return layout_layers(into)


def layout_layers(layout: Path) -> tuple[list[str], list[str]]:
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    return [layer["digest"] for layer in manifest["layers"]], list(config["rootfs"]["diff_ids"])


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tool_image(tmp_path_factory.mktemp("tool"))
    context = tmp_path_factory.mktemp("flow")
    shutil.copy2(EXAMPLE, context / "Containerfile.chunked")
    yield context
    for name in (OS_IMAGE, FINAL, ARCHIVE_NAME):
        subprocess.run(["buildah", "rmi", "--force", name], capture_output=True, check=False)


def test_flow_layers_equal_debchunk_rechunk_of_the_same_root(context: Path, tmp_path: Path) -> None:
    # The os stage alone: the root the flow chunks, for debchunk rechunk.
    done = bud(context, "--target", "os", "--tag", OS_IMAGE)
    assert done.returncode == 0, done.stderr
    t0 = time.monotonic()
    done = bud(context, "--skip-unused-stages=false", "--tag", FINAL)
    seconds = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    print(f"buildah bud of the whole flow: {seconds:.1f} s")
    archive = context / "out.ociarchive"
    digests, diff_ids = archive_layers(archive, tmp_path / "archive")
    # debchunk rechunk of the os stage's image, compressing as the package does.
    code = (
        "import sys; sys.modules['zlib_ng'] = None; "
        "from encapsulate.cli.main import debchunk_main; sys.exit(debchunk_main())"
    )
    rechunked = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "rechunk",
            f"containers-storage:{OS_IMAGE}",
            f"oci:{tmp_path}/rc:1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ},
    )
    assert rechunked.returncode == 0, rechunked.stderr
    assert (digests, diff_ids) == layout_layers(tmp_path / "rc")
    assert len(diff_ids) > 20
    # The final image is the archive: the same layers, in containers-storage.
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"containers-storage:{FINAL}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert config["rootfs"]["diff_ids"] == diff_ids
    assert config["config"]["Labels"]["org.debchunk.compressor"].startswith("zlib ")

    # Again with the archive as the prior image: same root, same layers.
    shutil.copy2(archive, context / "prior.ociarchive")
    archive.unlink()
    done = bud(context, "--skip-unused-stages=false", "--build-arg", "PRIOR=prior.ociarchive", "--tag", FINAL)
    assert done.returncode == 0, done.stderr
    assert archive_layers(archive, tmp_path / "again") == (digests, diff_ids)


def test_layers_cache_mounts_the_stage_base_with_debian_12_buildah(context: Path) -> None:
    """Debian 12's buildah (1.28) with --layers: when the os stage comes from its
    cache, ``RUN --mount=from=os`` mounts the stage's base image, so the
    stage's own files are missing (docs/containerfile-flow.md)."""
    version = subprocess.run(["buildah", "--version"], capture_output=True, text=True, check=True).stdout
    if not version.startswith("buildah version 1.28."):
        # The Makefile installs Debian 12's buildah, so CI always runs this.
        assert not os.environ.get("CI"), f"CI runs Debian 12's buildah 1.28, not {version.strip()}"
        pytest.skip(
            f"pins down a --layers cache bug of Debian 12's buildah 1.28 that the docs warn of; "
            f"{version.strip()} need not have it"
        )
    probe = context / "Containerfile.probe"
    # The os stage is new to the cache, then cached; the second stage's RUN
    # runs on each build (NONCE differs).
    probe.write_text(
        f"FROM {TRIXIE} AS os\nRUN echo probe {time.time_ns()} > /etc/os-probe\n"
        f"FROM {TRIXIE}\nARG NONCE\n"
        "RUN --mount=type=bind,from=os,src=/,target=/os,ro echo $NONCE; cat /os/etc/os-probe\n"
    )

    def build() -> subprocess.CompletedProcess[str]:
        return buildah_bud(context, "--layers", "--build-arg", f"NONCE={time.time_ns()}", "-f", str(probe))

    first = build()
    assert first.returncode == 0, first.stderr
    assert "\nprobe " in first.stdout
    cached = build()
    assert "Using cache" in cached.stdout
    assert "/os/etc/os-probe: No such file or directory" in cached.stdout + cached.stderr


# trixie's buildah (1.39), run in a trixie chroot: netavark is one of its
# Recommends, which mmdebstrap leaves out, and buildah will not start a
# container without it.
TRIXIE_BUILDAH = TreeSpec(
    "trixie", variant="minbase", include=("aardvark-dns", "buildah", "ca-certificates", "netavark", "skopeo")
)


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """``root`` made a mount point (containers/storage remounts ``/`` when it
    unpacks a layer) with /proc and /sys in it; all unmounted afterwards."""
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
    try:
        subprocess.run(["mount", "--make-private", str(root)], check=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        subprocess.run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], check=True)
        yield
    finally:
        subprocess.run(["umount", "-R", str(root)], check=True)


def test_flow_with_trixies_buildah(context: Path, tmp_path: Path) -> None:
    """The same flow with trixie's buildah; there, a read-write bind mount of
    the context (``RUN --mount=type=bind,target=/context,rw``) keeps what is
    written in the build container, so the archive must be written into a
    ``--volume`` (docs/containerfile-flow.md)."""
    root = build_tree(TRIXIE_BUILDAH)
    images = root / "tmp" / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    for name, image in (("base", TRIXIE), ("tool", TOOL)):
        subprocess.run(
            ["skopeo", "copy", "--quiet", f"containers-storage:{image}", f"oci:{images / name}:latest"],
            check=True,
            capture_output=True,
        )
    flow = root / "tmp" / "flow"
    shutil.rmtree(flow, ignore_errors=True)
    flow.mkdir()
    shutil.copy2(EXAMPLE, flow / "Containerfile.chunked")
    # The same Containerfile with the context bind-mounted read-write instead.
    (flow / "Containerfile.bind").write_text(
        EXAMPLE.read_text().replace(
            "RUN --mount=type=bind,from=os,src=/,target=/os,ro \\\n",
            "RUN --mount=type=bind,from=os,src=/,target=/os,ro --mount=type=bind,target=/context,rw \\\n",
        )
    )
    # This machine's limits are below the ones buildah 1.39 sets by default.
    limits = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=96367:96367", "--network", "host"]
    bud = [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--pull=never",
        *limits,
        "--skip-unused-stages=false",
        "--build-arg",
        f"OS_BASE={TRIXIE}",
        "--build-arg",
        f"DEBCHUNK={TOOL}",
    ]
    script = " && ".join(
        [
            "buildah --version",
            f"skopeo copy --quiet oci:/tmp/images/base:latest containers-storage:{TRIXIE}",
            f"skopeo copy --quiet oci:/tmp/images/tool:latest containers-storage:{TOOL}",
            "cd /tmp/flow",
            "{ "
            + " ".join([*bud, "-f", "Containerfile.bind", "-t", "localhost/bind:latest", "."])
            + " > bind.log 2>&1; echo $? > bind.status; }",
            " ".join(
                [*bud, "--volume", "/tmp/flow:/context", "-f", "Containerfile.chunked", "-t", FINAL, "."]
            ),
            f"skopeo inspect --config containers-storage:{FINAL} > final.json",
        ]
    )
    (flow / "run.sh").write_text(script + "\n")
    with mounted(root):
        done = subprocess.run(
            ["chroot", str(root), "sh", "/tmp/flow/run.sh"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"},
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("buildah version 1.39.")
    # The read-write bind mount: the archive is not in the context.
    assert (flow / "bind.status").read_text().strip() != "0"
    assert 'archive file not found: "/tmp/flow/out.ociarchive"' in (flow / "bind.log").read_text()
    # The volume: the archive is, and it is the final image.
    _, diff_ids = archive_layers(flow / "out.ociarchive", tmp_path / "archive")
    assert len(diff_ids) > 20
    assert json.loads((flow / "final.json").read_text())["rootfs"]["diff_ids"] == diff_ids
