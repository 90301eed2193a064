"""The build's progress on stderr: one redrawn line per phase on a terminal
(a real pty), nothing when stderr is a pipe or with --quiet/--json, and a
plain line every few seconds in a CI log."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from encapsulate.cli.progress import ProgressLine, progress_line
from encapsulate.progress import Step
from tests.images import EPOCH

_CODE = "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())"


def _encapsulate_on_pty(*args: str) -> tuple[int, str]:
    """Run container-encapsulate with stderr on a pty; its exit status and what the terminal got."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CODE, *args],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "CI": ""},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    out = bytearray()
    while True:
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the child closed the pty
            break
        if not data:
            break
        out += data
    os.close(leader)
    return proc.wait(timeout=120), out.decode()


def test_one_line_per_phase_on_a_terminal(sample_tree: Path, tmp_path: Path) -> None:
    status, text = _encapsulate_on_pty(
        "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v1", "--max-layers=6"
    )
    assert status == 0, text
    # Each phase ends with its line left standing (a pty turns \n into \r\n).
    finished = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in text.split("\r\n") if line]
    phases = [line.split(":")[0].split(" ")[0] for line in finished]
    assert phases == ["mapping", "planning", "writing"], finished
    mapping, planning, writing = finished
    assert re.fullmatch(r"mapping: [\d,]+ entries, [\d.,]+ MB of content \([\d.]+ s\)", mapping), mapping
    assert re.fullmatch(r"planning: \d+ layers \([\d.]+ s\)", planning), planning
    assert re.fullmatch(r"writing: (\d+)/\1 layers, [\d,]+/[\d,]+ MB, [\d,]+ MB/s \([\d.]+ s\)", writing), (
        writing
    )
    # Lines are redrawn in place, never scrolled.
    assert "\r" in text.split("\r\n")[0] or text.count("\rwriting") >= 1

    # A second build into the same layout takes every layer, and says so.
    status, text = _encapsulate_on_pty(
        "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v2", "--max-layers=6"
    )
    assert status == 0, text
    assert re.search(r"writing: (\d+)/\1 layers \(\1 taken\)", text), text


def test_nothing_when_piped_or_quiet(run_cli: object, sample_tree: Path, tmp_path: Path) -> None:
    for extra in ((), ("--json",)):
        proc = subprocess.run(
            [sys.executable, "-c", _CODE, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:x", *extra],
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "CI": ""},
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        assert not re.search(r"mapping|planning|writing", proc.stderr), proc.stderr
    assert progress_line(io.StringIO(), quiet=False, environ={}) is None
    assert progress_line(io.StringIO(), quiet=True, environ={"CI": "true"}) is None


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_few_seconds_in_ci() -> None:
    stream, clock = io.StringIO(), _Clock()
    line = progress_line(stream, quiet=False, environ={"CI": "true"})
    assert isinstance(line, ProgressLine) and not line.tty
    line.close()
    line = ProgressLine(stream, tty=False, clock=clock, tick=None)
    # A short phase prints nothing.
    line(Step("planning"))
    clock.now += 0.2
    line(Step("planning", 5, 5, finished=True))
    assert stream.getvalue() == ""
    # A long one prints a line every 5 s, and one when it ends.
    line(Step("writing", 0, 10, 0, 1000_000_000))
    for k in range(1, 25):
        clock.now += 0.5
        line(Step("writing", k // 3, 10, k * 20_000_000, 1000_000_000))
    line(Step("writing", 10, 10, 1000_000_000, 1000_000_000, finished=True))
    lines = stream.getvalue().splitlines()
    assert [x.split(":")[0] for x in lines] == ["writing", "writing", "writing"], lines
    assert lines[0] == "writing: 3/10 layers, 200/1,000 MB, 40 MB/s, ETA 20.0 s"
    assert lines[-1].startswith("writing: 10/10 layers, 1,000/1,000 MB")
    line.close()


def test_the_byte_count_ends_at_the_total(sample_tree: Path, tmp_path: Path) -> None:
    """The writing phase counts content bytes as the plan sizes layers: it
    never passes its total (it used to count tar headers too, 158/155 MB),
    and reaches it, with layers written or taken from the layout."""
    from encapsulate import BuildConfig, RootfsOrigin, build_image

    for tag in ("v1", "v2"):
        steps: list[Step] = []
        destination = f"oci:{tmp_path}/img:{tag}"
        config = BuildConfig(RootfsOrigin(str(sample_tree)), destination, max_layers=6, epoch=1)
        build_image(config, progress=steps.append)
        writing = [s for s in steps if s.phase == "writing"]
        assert writing and writing[-1].bytes_total
        assert all(s.bytes_done <= (s.bytes_total or 0) for s in writing)
        assert writing[-1].bytes_done == writing[-1].bytes_total
