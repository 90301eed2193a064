"""The tool image: the repository's Containerfile built by ``buildah bud
--isolation chroot`` over a trixie base made with mmdebstrap, with the Debian
package installed and ``debchunk`` as its entry point, then re-chunked by
debchunk with its SBOM (tests/toolimage.py; cached by what built it)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import RunCli
from tests.toolimage import TOOL, ToolImage, tool_image

pytestmark = pytest.mark.realtree


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> ToolImage:
    return tool_image(tmp_path_factory.mktemp("tool"))


@pytest.fixture
def container(tool: ToolImage) -> Iterator[str]:
    name = subprocess.run(
        ["buildah", "from", "--pull=never", f"containers-storage:{TOOL}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    yield name
    subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def test_tool_image_runs_the_packaged_debchunk(tool: ToolImage, container: str) -> None:
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", tool.oci], capture_output=True, text=True, check=True
        ).stdout
    )
    assert config["config"]["Entrypoint"] == ["debchunk"]
    assert config["config"]["Labels"]["org.opencontainers.image.title"] == "debchunk"
    done = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", container, "--", "debchunk", "--version"],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout) == (0, "debchunk 0.1.0\n"), done.stderr


def test_tool_image_is_rechunked_with_its_sbom(tool: ToolImage, run_cli: RunCli) -> None:
    done = run_cli("validate", tool.oci)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", tool.oci], capture_output=True, text=True, check=True
        ).stdout
    )
    # Re-chunked by package: many layers, not the base's one and the RUN step's one.
    assert len(manifest["layers"]) > 20
    sbom = json.loads(tool.sbom.read_text())
    versions = {p["name"]: p.get("versionInfo") for p in sbom["packages"]}
    assert versions.get("debchunk") == "0.1.0"
    assert {"python3-numpy", "skopeo", "gir1.2-ostree-1.0"} <= set(versions)
