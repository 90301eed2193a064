"""Re-chunking update pairs as images gives the layers that encapsulating their
trees gives, so the same download figures.

For each update pair of a package set of ``benches.update_pairs`` (default the
desktop set: point update, testing to unstable, rebuild), both trees are made
into single-layer images (``benches.rechunk_speed.single_layer_image``: the
tree as one gzip layer, as a squashed Containerfile build leaves it), then:

- from disk: ``container-encapsulate --rootfs OLD_TREE``, then
  ``--rootfs NEW_TREE --prior OLD_IMAGE``;
- as images: ``container-encapsulate --from OLD_SINGLE``, then
  ``--from NEW_SINGLE --prior`` the image re-chunked from OLD_SINGLE;

all with ``--max-layers N`` (default 64, the N of the update-cost figures) and
``--format plain``; the new image is built a week after the old one
(``SOURCE_DATE_EPOCH`` 7 days later).  Checked, a failure exits 1: each of the
four pairs of images has the same layer diff_ids in the same order, ``debchunk
diff OLD NEW`` gives the same bytes to download for the two update paths, and
every layer of the new image that a client holding the old one downloads holds
a component whose content changed or was added (a new date alone changes no
component layer).  The download bytes, the single-layer download and the wall
time of each command are printed.

Usage: ``python -m benches.rechunk_pairs [--set desktop] [--max-layers N] [--json FILE]``.
The trees must have been built: ``python -m benches.update_pairs build --set desktop``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.debtrees import cache_dir
from benches.encapsulate_speed import SOURCE_DATE_EPOCH, run_child
from benches.mapping_speed import note, source_revision
from benches.rechunk_speed import TAG, single_layer_image
from benches.update_pairs import SETS, pairs, spec_for, tree_path

VENV_BIN = Path(sys.executable).parent


@dataclass
class Side:
    """One way of making the pair's two images: their layer diff_ids, the
    bytes a client holding the old one downloads, and the wall times."""

    old_diff_ids: list[str]
    new_diff_ids: list[str]
    download_bytes: int
    new_total_bytes: int
    old_wall_s: float
    new_wall_s: float
    # Downloaded component layers holding no changed or added component.
    needless_layers: int


@dataclass
class PairResult:
    """The pair's two sides, and whether they agree."""

    pair: str
    old_build: str
    new_build: str
    rootfs: Side
    image: Side
    same_old_layers: bool
    same_new_layers: bool
    same_download: bool


# The new image of a pair is built this long after the old one.
A_WEEK = 7 * 86_400


def _encapsulate(
    origin: Sequence[str], out: Path, max_layers: int, prior: Path | None
) -> tuple[dict[str, Any], float]:
    argv = [
        str(VENV_BIN / "container-encapsulate"),
        *origin,
        f"oci:{out}:{TAG}",
        "--max-layers",
        str(max_layers),
        "--format",
        "plain",
        "--json",
    ]
    if prior is not None:
        argv += ["--prior", f"oci:{prior}:{TAG}"]
    epoch = int(SOURCE_DATE_EPOCH) + (0 if prior is None else A_WEEK)
    run = run_child(argv, {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}, capture=True)
    report: dict[str, Any] = json.loads(run.stdout)
    return report, run.wall_s


def _diff_ids(report: dict[str, Any]) -> list[str]:
    return [str(layer["diff_id"]) for layer in report["layers"]]


def _download(old: Path, new: Path, new_report: dict[str, Any]) -> tuple[int, int, int]:
    """Bytes downloaded and in all, and the downloaded component layers that
    hold no changed or added component."""
    run = run_child(
        [str(VENV_BIN / "debchunk"), "diff", "--no-layers", "--json", f"oci:{old}:{TAG}", f"oci:{new}:{TAG}"],
        capture=True,
    )
    d = json.loads(run.stdout)
    changes = d["components"] or {}
    changed = {c["name"] for status in ("added", "changed") for c in changes.get(status, ())}
    downloaded = [not layer["reused"] for layer in d["layers"]]
    needless = sum(
        1
        for layer, fetched in zip(new_report["layers"][1:], downloaded[1:], strict=True)
        if fetched and not changed.intersection(layer["components"])
    )
    return int(d["download_bytes"]), int(d["total_bytes"]), needless


def _side(origins: tuple[list[str], list[str]], work: Path, name: str, max_layers: int) -> Side:
    old_out, new_out = work / f"{name}-old", work / f"{name}-new"
    for path in (old_out, new_out):
        if path.exists():
            shutil.rmtree(path)
    old_report, old_wall = _encapsulate(origins[0], old_out, max_layers, None)
    new_report, new_wall = _encapsulate(origins[1], new_out, max_layers, old_out)
    download, total, needless = _download(old_out, new_out, new_report)
    return Side(_diff_ids(old_report), _diff_ids(new_report), download, total, old_wall, new_wall, needless)


def bench_pair(
    set_name: str, pair: str, old_build: str, new_build: str, work: Path, max_layers: int
) -> PairResult:
    """Both sides of one pair, in fresh layouts under ``work``."""
    trees = [tree_path(set_name, build) for build in (old_build, new_build)]
    for tree in trees:
        if not (tree / "usr").is_dir():
            raise SystemExit(f"{tree}: not built; run python -m benches.update_pairs build --set {set_name}")
    images = [
        single_layer_image(tree, spec_for(set_name, build).key)
        for tree, build in zip(trees, (old_build, new_build), strict=True)
    ]
    note(f"  {set_name}/{pair}: {old_build} -> {new_build}")
    rootfs = _side((["--rootfs", str(trees[0])], ["--rootfs", str(trees[1])]), work, "rootfs", max_layers)
    image = _side(
        (["--from", f"oci:{images[0]}:{TAG}"], ["--from", f"oci:{images[1]}:{TAG}"]),
        work,
        "image",
        max_layers,
    )
    return PairResult(
        pair,
        old_build,
        new_build,
        rootfs,
        image,
        rootfs.old_diff_ids == image.old_diff_ids,
        rootfs.new_diff_ids == image.new_diff_ids,
        rootfs.download_bytes == image.download_bytes,
    )


def report(results: Sequence[PairResult]) -> None:
    """One line per pair and side."""
    print(
        f"  {'pair':<22} {'side':<8} {'layers':>6} {'download':>11} {'of':>11}  {'old':>7} {'new':>7}  "
        "same  needless"
    )
    for r in results:
        for name, side in (("--rootfs", r.rootfs), ("--from", r.image)):
            same = r.same_old_layers and r.same_new_layers and r.same_download
            print(
                f"  {r.pair:<22} {name:<8} {len(side.new_diff_ids):>6} {side.download_bytes / 1e6:>8.1f} MB "
                f"{side.new_total_bytes / 1e6:>8.1f} MB  {side.old_wall_s:>6.1f}s {side.new_wall_s:>6.1f}s  "
                f"{'yes' if same else 'NO':<4}  {side.needless_layers}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Every pair of the set; 1 when a pair's two sides differ."""
    parser = argparse.ArgumentParser(
        prog="python -m benches.rechunk_pairs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--set", choices=list(SETS), default="desktop")
    parser.add_argument("--max-layers", type=int, default=64)
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    args = parser.parse_args(argv)
    note(f"debchunk rechunk pairs, set {args.set}, N={args.max_layers}, code {source_revision()}")
    work_parent = cache_dir().parent / "work"
    work_parent.mkdir(parents=True, exist_ok=True)
    results: list[PairResult] = []
    with tempfile.TemporaryDirectory(prefix="rechunk-pairs-", dir=work_parent) as tmp:
        for pair, old_build, new_build in pairs(args.set):
            results.append(bench_pair(args.set, pair, old_build, new_build, Path(tmp), args.max_layers))
    report(results)
    failed = [
        r.pair
        for r in results
        if not (r.same_old_layers and r.same_new_layers and r.same_download)
        or r.rootfs.needless_layers
        or r.image.needless_layers
    ]
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"revision": source_revision(), "set": args.set, "results": [asdict(r) for r in results]},
                indent=1,
            )
            + "\n"
        )
    if failed:
        print(
            f"\nFAILED: {', '.join(failed)} (--from and --rootfs differ, or a layer is downloaded needlessly)"
        )
        return 1
    print(
        "\nevery pair: --from gives the layers --rootfs gives, the same download, "
        "and only layers holding changed components are downloaded"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
