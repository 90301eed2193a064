"""The Debian package: built by dpkg-buildpackage in a trixie chroot, clean
under lintian, installed by apt into a clean trixie chroot, where the
installed debchunk writes valid images that rebuild to the same digest.

The chroots and the package are cached (tests/debpackage.py); a cold run
builds two trixie trees with mmdebstrap (about 80 s and 30 s here), the
package (about 6 s) and the installed chroot (about 30 s)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.debpackage import BuiltPackage, build_package, installed_chroot

pytestmark = pytest.mark.realtree

EPOCH = "1700000000"


@pytest.fixture(scope="module")
def package() -> BuiltPackage:
    return build_package()


@pytest.fixture(scope="module")
def installed(package: BuiltPackage) -> Path:
    return installed_chroot(package)


@pytest.fixture
def work(installed: Path, sample_tree: Path) -> Iterator[tuple[Path, str]]:
    """A scratch directory in the installed chroot holding the sample tree:
    (its path outside, its path inside)."""
    outside = installed / "tmp" / f"test-{os.getpid()}"
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--", str(sample_tree), str(outside / "tree")], check=True)
    yield outside, f"/tmp/{outside.name}"
    shutil.rmtree(outside, ignore_errors=True)


def in_chroot(root: Path, *argv: str, epoch: str = EPOCH) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root", "SOURCE_DATE_EPOCH": epoch}
    return subprocess.run(
        ["/usr/sbin/chroot", str(root), *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def manifest_digest(layout: Path) -> str:
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    return str(entry["digest"])


def test_lintian_reports_no_error(package: BuiltPackage) -> None:
    errors = [line for line in package.lintian.splitlines() if line.startswith("E:")]
    assert errors == [], package.lintian
    assert package.deb.name == "debchunk_0.1.0_all.deb"


def test_package_contents(package: BuiltPackage, installed: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(package.deb)], capture_output=True, text=True, check=True)
    for path in (
        "./usr/bin/debchunk",
        "./usr/bin/container-encapsulate",
        "./usr/share/man/man1/debchunk.1.gz",
        "./usr/share/man/man1/container-encapsulate.1.gz",
        "./usr/share/bash-completion/completions/debchunk",
        "./usr/share/bash-completion/completions/container-encapsulate",
        "./usr/lib/python3/dist-packages/encapsulate/schemas/manifest.json",
    ):
        assert f" {path}\n" in listing.stdout + "\n", path
    control = subprocess.run(
        ["dpkg-deb", "-f", str(package.deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    depends = {d.strip().split()[0] for d in control.split(",")}
    assert {"python3-debian", "python3-apt", "python3-gi", "gir1.2-ostree-1.0", "skopeo"} <= depends
    assert not any("zlib-ng" in d or "zlib_ng" in d for d in depends)
    # The manual page lists every command and the options the parser has.
    page = gzip.decompress((installed / "usr/share/man/man1/debchunk.1.gz").read_bytes()).decode()
    assert page.startswith(".TH DEBCHUNK 1 ")
    for word in ("debchunk rechunk", "debchunk validate", "\\-\\-max\\-layers", "\\-\\-prior", "\\-\\-sbom"):
        assert word in page, word
    # The completion file is valid bash and offers a subcommand's options.
    completion = "/usr/share/bash-completion/completions/debchunk"
    done = in_chroot(
        installed,
        "bash",
        "-c",
        f"source {completion}; COMP_WORDS=(debchunk rechunk --max-l); COMP_CWORD=2; _debchunk; "
        'printf "%s\\n" "${COMPREPLY[@]}"',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--max-layers"]


def test_installed_debchunk_writes_reproducible_valid_images(installed: Path, work: tuple[Path, str]) -> None:
    outside, inside = work
    done = in_chroot(installed, "debchunk", "--version")
    assert (done.returncode, done.stdout) == (0, "debchunk 0.1.0\n"), done.stderr
    for name in ("a", "b"):
        done = in_chroot(
            installed, "debchunk", "encapsulate", "--rootfs", f"{inside}/tree", f"oci:{inside}/{name}:1"
        )
        assert done.returncode == 0, done.stderr
    digest = manifest_digest(outside / "a")
    assert manifest_digest(outside / "b") == digest
    done = in_chroot(installed, "debchunk", "validate", f"oci:{inside}/a:1")
    assert done.returncode == 0 and ": valid: " in done.stdout, done.stdout + done.stderr
    done = in_chroot(installed, "skopeo", "inspect", f"oci:{inside}/a:1")
    assert done.returncode == 0, done.stderr
    inspected = json.loads(done.stdout)
    assert inspected["Digest"] == digest
    # The packaged debchunk compresses with the standard library's zlib and says so.
    zlib_version = in_chroot(installed, "python3", "-c", "import zlib; print(zlib.ZLIB_RUNTIME_VERSION)")
    assert inspected["Labels"]["org.debchunk.compressor"] == f"zlib {zlib_version.stdout.strip()}"
    # container-encapsulate is the same writer.
    done = in_chroot(
        installed, "container-encapsulate", "--rootfs", f"{inside}/tree", f"oci:{inside}/c:1", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert manifest_digest(outside / "c") == digest


def test_podman_pulls_the_packaged_image(installed: Path, work: tuple[Path, str], tmp_path: Path) -> None:
    outside, inside = work
    done = in_chroot(installed, "debchunk", "encapsulate", "--rootfs", f"{inside}/tree", f"oci:{inside}/a:1")
    assert done.returncode == 0, done.stderr
    # podman names an image pulled from a layout by its path, which may not
    # hold a component starting with a dot (~/.cache).
    shutil.copytree(outside / "a", tmp_path / "packaged")
    name = f"localhost{tmp_path / 'packaged'}:1"
    pulled = subprocess.run(
        ["podman", "pull", "--quiet", f"oci:{tmp_path / 'packaged'}:1"], capture_output=True, text=True
    )
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.strip()
    try:
        config = json.loads((outside / "a/blobs/sha256" / manifest_config(outside / "a")).read_text())
        inspected = json.loads(
            subprocess.run(
                ["podman", "image", "inspect", image_id], capture_output=True, text=True, check=True
            ).stdout
        )
        assert inspected[0]["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    finally:
        subprocess.run(["podman", "rmi", "--force", image_id, name], capture_output=True, check=False)


def manifest_config(layout: Path) -> str:
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest(layout)[7:]).read_text())
    return str(manifest["config"]["digest"][7:])


def test_same_bytes_as_this_machines_zlib(installed: Path, work: tuple[Path, str]) -> None:
    """trixie's zlib (1.3.1) and Debian 12's (1.2.13) write the same deflate
    streams: the packaged debchunk's image equals the one this checkout writes
    with zlib-ng hidden, so an image is rebuilt bit for bit on either release."""
    outside, inside = work
    done = in_chroot(installed, "debchunk", "encapsulate", "--rootfs", f"{inside}/tree", f"oci:{inside}/a:1")
    assert done.returncode == 0, done.stderr
    code = (
        "import sys; sys.modules['zlib_ng'] = None; "
        "from encapsulate.cli.main import debchunk_main; sys.exit(debchunk_main())"
    )
    here = subprocess.run(
        [sys.executable, "-c", code, "encapsulate", "--rootfs", str(outside / "tree"), f"oci:{outside}/h:1"],
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert here.returncode == 0, here.stderr
    packaged = json.loads((outside / "a/blobs/sha256" / manifest_config(outside / "a")).read_text())
    local = json.loads((outside / "h/blobs/sha256" / manifest_config(outside / "h")).read_text())
    assert local["config"]["Labels"]["org.debchunk.compressor"].startswith("zlib ")
    assert packaged["rootfs"] == local["rootfs"]
    manifests = [
        json.loads((outside / d / "blobs/sha256" / manifest_digest(outside / d)[7:]).read_text())
        for d in "ah"
    ]
    assert [layer["digest"] for layer in manifests[0]["layers"]] == [
        layer["digest"] for layer in manifests[1]["layers"]
    ]
