"""Two builds of the embedded sample (one package updated in between), their
``debchunk report`` and a headless Chromium to look at it.

``python -m tests.report_demo docs/report.png`` writes the README's screenshot.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from encapsulate import BuildConfig, RootfsOrigin, build_image, epoch_from_environment
from encapsulate.cli.main import debchunk_main
from tests.sample import ADMINDIR, blob, build_sample, changelog_text, day

WINDOW = (1200, 900)


def sample_images(workdir: Path) -> tuple[str, str]:
    """Encapsulate the sample as ``oci:WORKDIR/images:1``, update bash (new
    binary, changelog entry and version) and build ``:2`` with the first as its prior."""
    tree = build_sample(workdir / "tree")
    layout = workdir / "images"
    first, second = f"oci:{layout}:1", f"oci:{layout}:2"
    config = BuildConfig(RootfsOrigin(str(tree)), first, max_layers=8, epoch=epoch_from_environment())
    build_image(config)
    update_bash(tree)
    build_image(replace(config, destination=second, prior=first))
    return first, second


def update_bash(tree: Path) -> tuple[str, str]:
    """Upgrade the sample's bash from 5.2.37-2 to 5.2.37-3 as dpkg would: its
    binary, its changelog (a new entry on top) and its status entry.  Returns
    the versions (old, new)."""
    old, new = "5.2.37-2", "5.2.37-3"
    (tree / "usr/bin/bash").write_bytes(blob(f"bash {new}", 1_250_000))
    changelog = tree / "usr/share/doc/bash/changelog.Debian.gz"
    # Dated as the sample's newest entry (glibc's): a newer date would move the
    # image's timestamp, and with it every directory of the first layer.
    entry = changelog_text("bash", [(new, day(0))])
    changelog.write_bytes(gzip.compress(entry + gzip.decompress(changelog.read_bytes()), mtime=0))
    status = tree / ADMINDIR / "status"
    text, count = re.subn(
        rf"(?m)^(Package: bash\n(?:.+\n)*?Version: ){re.escape(old)}$", rf"\g<1>{new}", status.read_text()
    )
    if count != 1:
        raise RuntimeError("the sample's bash entry has changed; update update_bash")
    status.write_text(text)
    return old, new


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium with a throw-away profile (its stderr is noise)."""
    with tempfile.TemporaryDirectory(prefix="debchunk-chromium-") as profile:
        return subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )


def screenshot(page: Path, png: Path, window: tuple[int, int] = WINDOW) -> None:
    """A PNG of ``page`` as a ``window``-sized browser shows it."""
    png.unlink(missing_ok=True)
    proc = chromium(f"--screenshot={png}", f"--window-size={window[0]},{window[1]}", page.resolve().as_uri())
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(
            f"chromium made no screenshot of {page}: {proc.stderr.decode(errors='replace')[-800:]}"
        )


def dump_dom(page: Path) -> str:
    """The DOM Chromium builds from ``page``, serialised."""
    proc = chromium("--dump-dom", page.resolve().as_uri())
    if proc.returncode != 0:
        raise RuntimeError(f"chromium could not load {page}: {proc.stderr.decode(errors='replace')[-800:]}")
    return proc.stdout.decode()


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = png.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{png}: not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def demo(png: Path) -> int:
    """Write the report of the sample's second build, and its screenshot to ``png``."""
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debchunk-report-") as tmp, contextlib.chdir(tmp):
        # Relative references, so the page names no temporary directory.
        first, second = (ref.replace(f"oci:{tmp}/", "oci:") for ref in sample_images(Path(tmp)))
        code = debchunk_main(["report", second, "--prior", first, "-o", "report.html", "--quiet"])
        if code != 0:
            return code
        screenshot(Path("report.html"), png)
    print(f"{png}: {png_size(png)[0]}x{png_size(png)[1]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.report_demo OUTPUT.png")
    sys.exit(demo(Path(sys.argv[1])))
