"""``make demo``: the main job on the embedded sample, start to finish.

Encapsulates the sample tree into an OCI layout, upgrades one package (bash)
and encapsulates again with the first image as ``--prior``, prints what a
client holding the first image downloads against the ideal (``debchunk
diff``), and writes the HTML report (``debchunk report``).  Everything goes
to one directory, ``demo-output/`` in the checkout unless ``--output`` says
otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from encapsulate.cli.main import debchunk_main
from encapsulate.tools.text import human_size
from tests.report_demo import sample_images

CHECKOUT = Path(__file__).resolve().parent.parent


def diff_json(old: str, new: str) -> dict[str, object]:
    """``debchunk diff OLD NEW --json``, parsed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = debchunk_main(["diff", old, new, "--json"])
    if code != 0:
        raise RuntimeError(f"debchunk diff {old} {new} failed ({code})")
    result: dict[str, object] = json.loads(out.getvalue())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--output",
        metavar="DIR",
        type=Path,
        default=CHECKOUT / "demo-output",
        help="where to write (emptied first)",
    )
    args = parser.parse_args(argv)
    out: Path = args.output.resolve()
    t0 = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"debchunk demo: writing to {out}/")

    old, new = sample_images(out)
    print(f"1. the sample tree ({out / 'tree'}) encapsulated as {old}")
    print(f"2. bash upgraded 5.2.37-2 -> 5.2.37-3 (binary, changelog, dpkg status), encapsulated as {new}")
    print(f"   with --prior {old}\n")

    print(f"3. what a client holding {old} downloads for {new} (debchunk diff):\n", flush=True)
    if debchunk_main(["diff", old, new]) != 0:
        return 1
    figures = diff_json(old, new)
    download, total, ideal = (int(str(figures[k])) for k in ("download_bytes", "total_bytes", "ideal_bytes"))
    print(
        f"\n   download: {download} bytes ({human_size(download)}) of {total} ({human_size(total)});"
        f" ideal: {ideal} bytes ({human_size(ideal)}), the file content the old image lacks\n"
    )

    report = out / "report.html"
    if debchunk_main(["report", new, "--prior", old, "-o", str(report), "--quiet"]) != 0:
        return 1
    print(f"4. the report: {report}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
