"""The debchunk tool image, built from the repository's Containerfile.

In: the Debian package (``tests.debpackage``) and the clean trixie minbase tree,
imported into containers-storage as the base image (there is no registry to
pull ``debian:trixie`` from).  Out: ``TOOL_BUILD``, the image ``buildah bud
--isolation chroot`` builds, and its re-chunking by debchunk with its SBOM, an
OCI layout copied into containers-storage as ``TOOL``.  Each image carries
``RECIPE_LABEL`` (a hash of what built it), so a warm run builds nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benches.debtrees import build_tree, cache_dir
from tests.containerfiles import RECIPE_LABEL, _image_id, _recipe
from tests.debpackage import CLEAN_SPEC, BuiltPackage, build_package

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = REPO_ROOT / "Containerfile"
TRIXIE = "localhost/debchunk-trixie:minbase"
TOOL_BUILD = "localhost/debchunk:build"
TOOL = "localhost/debchunk:latest"


@dataclass(frozen=True)
class ToolImage:
    """The tool image: the layout (tag ``debchunk``) debchunk re-chunked it
    into, its SBOM, and the seconds ``buildah bud`` took (0 when cached)."""

    layout: Path
    sbom: Path
    bud_seconds: float

    @property
    def oci(self) -> str:
        return f"oci:{self.layout}:debchunk"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def trixie_base() -> str:
    """``TRIXIE``, the clean minbase tree imported as one layer; its image id."""
    tree = build_tree(CLEAN_SPEC)
    recipe = _hash(str(tree), CLEAN_SPEC.key)
    if _recipe(TRIXIE) == recipe:
        return _image_id(TRIXIE)
    tar = subprocess.Popen(
        ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-c", "."],
        stdout=subprocess.PIPE,
    )
    subprocess.run(
        ["podman", "import", "--quiet", "--change", f"LABEL {RECIPE_LABEL}={recipe}", "-", TRIXIE],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0:
        raise RuntimeError(f"tar of {tree} failed")
    return _image_id(TRIXIE)


def build_tool_image(package: BuiltPackage, workdir: Path) -> float:
    """``TOOL_BUILD`` from the Containerfile with ``package`` installed, unless
    an image of that recipe is there; the seconds ``buildah bud`` took (0 if not run)."""
    base_id = trixie_base()
    recipe = _hash(CONTAINERFILE.read_text(), package.sha256, base_id)
    if _recipe(TOOL_BUILD) == recipe:
        return 0.0
    context = workdir / "tool-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy2(CONTAINERFILE, context / "Containerfile")
    shutil.copy2(package.deb, context / package.deb.name)
    t0 = time.monotonic()
    subprocess.run(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--quiet",
            "--build-arg",
            f"BASE={TRIXIE}",
            "--label",
            f"{RECIPE_LABEL}={recipe}",
            "--tag",
            TOOL_BUILD,
            str(context),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def tool_image(workdir: Path) -> ToolImage:
    """The tool image built (or found built) and re-chunked by debchunk, with
    its SBOM; the layout is cached by the built image's id."""
    seconds = build_tool_image(build_package(), workdir)
    layout = cache_dir().parent / "images" / f"tool-{_image_id(TOOL_BUILD)[:16]}"
    sbom = layout.with_name(layout.name + ".spdx.json")
    if not (layout / "index.json").is_file() or not sbom.is_file():
        layout.parent.mkdir(parents=True, exist_ok=True)
        for stale in layout.parent.glob("tool-*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        code = "import sys; from encapsulate.cli.main import debchunk_main; sys.exit(debchunk_main())"
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "rechunk",
                f"containers-storage:{TOOL_BUILD}",
                f"oci:{layout}:debchunk",
                "--sbom",
                str(sbom),
                "--quiet",
            ],
            check=True,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:debchunk", f"containers-storage:{TOOL}"],
        check=True,
        capture_output=True,
    )
    return ToolImage(layout, sbom, seconds)
