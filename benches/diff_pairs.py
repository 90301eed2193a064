"""``debchunk diff`` on real images of the update pairs, against the update-cost
experiment's figures for the same trees.

For each update pair of ``benches.update_pairs`` (cached trees; run ``python -m
benches.update_pairs build`` first): encapsulate the old tree
(``encapsulate.build_image``, as ``container-encapsulate --rootfs``), then the
new tree with the old image as its prior, both ``--format plain --max-layers
N``, without ``SOURCE_DATE_EPOCH`` (each build takes its tree's own date); then
diff them (``encapsulate.tools.diff.diff_images``, as ``debchunk diff``).  Its
``download_content_bytes`` (the sizes of the components in the layers a client
must pull) must equal what ``benches.update_cost`` counts for debchunk on the
same pair, and its ``ideal_bytes`` the experiment's ideal.  Also printed: the
compressed bytes actually pulled, ``download_bytes``, of ``total_bytes``.

Usage: ``python -m benches.diff_pairs [--sets server,desktop] [--pairs P,...]
[--max-layers N] [--json FILE]``; exits 1 when a figure differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benches.debtrees import cache_dir
from benches.mapping_speed import note
from benches.update_cost import OURS, run_pair
from benches.update_pairs import load_index, pairs, tree_path
from encapsulate import BuildConfig, Format, RootfsOrigin, build_image
from encapsulate.tools.diff import diff_images


@dataclass
class PairDiff:
    """One pair: what ``debchunk diff`` says and what the experiment counts."""

    set_name: str
    pair: str
    max_layers: int
    download_content_bytes: int
    experiment_download_bytes: int
    ideal_bytes: int
    experiment_ideal_bytes: int
    download_bytes: int
    total_bytes: int
    new_layers: int
    layers: int

    @property
    def same(self) -> bool:
        """Whether both figures agree to the byte."""
        return (
            self.download_content_bytes == self.experiment_download_bytes
            and self.ideal_bytes == self.experiment_ideal_bytes
        )


def diff_pair(set_name: str, pair: str, old_build: str, new_build: str, max_layers: int) -> PairDiff:
    """Encapsulate both trees of a pair, diff them, and run the experiment on it."""
    work = cache_dir().parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    layout = Path(tempfile.mkdtemp(prefix="diff-pairs-", dir=work))
    try:
        note(f"{set_name} {pair}: encapsulating {old_build}")
        # No SOURCE_DATE_EPOCH: each tree's own date, as a build of it would have.
        old = BuildConfig(
            origin=RootfsOrigin(str(tree_path(set_name, old_build))),
            destination=f"oci:{layout}:old",
            max_layers=max_layers,
            format=Format.PLAIN,
        )
        build_image(old)
        note(f"{set_name} {pair}: encapsulating {new_build} with --prior")
        build_image(
            replace(
                old,
                origin=RootfsOrigin(str(tree_path(set_name, new_build))),
                destination=f"oci:{layout}:new",
                prior=f"oci:{layout}:old",
            )
        )
        note(f"{set_name} {pair}: debchunk diff")
        diff: dict[str, Any] = diff_images(f"oci:{layout}:old", f"oci:{layout}:new").to_json()
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    case = run_pair(
        load_index(set_name, old_build), load_index(set_name, new_build), set_name, pair, max_layers
    )
    return PairDiff(
        set_name,
        pair,
        max_layers,
        int(diff["download_content_bytes"]),
        case.row(OURS).download,
        int(diff["ideal_bytes"]),
        case.ideal,
        int(diff["download_bytes"]),
        int(diff["total_bytes"]),
        int(diff["new_layers"]),
        len(diff["layers"]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Diff every pair; exit 1 when ``debchunk diff`` and the experiment disagree."""
    parser = argparse.ArgumentParser(
        prog="python -m benches.diff_pairs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sets", default="server,desktop")
    parser.add_argument("--pairs", help="only these pairs (point-update,testing-to-unstable,rebuild)")
    parser.add_argument("--max-layers", type=int, default=64)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    results: list[PairDiff] = []
    for set_name in args.sets.split(","):
        for pair, old_build, new_build in pairs(set_name):
            if args.pairs and pair not in args.pairs.split(","):
                continue
            results.append(diff_pair(set_name, pair, old_build, new_build, args.max_layers))
    print(
        f"{'pair':<32} {'diff content MB':>15} {'experiment MB':>13} {'diff ideal MB':>13} "
        f"{'exp. ideal MB':>13} {'pulled MB':>9} {'of MB':>7} {'new layers':>10}  same"
    )
    for r in results:
        print(
            f"{r.set_name + ' ' + r.pair + f' N={r.max_layers}':<32} {r.download_content_bytes / 1e6:>15.2f} "
            f"{r.experiment_download_bytes / 1e6:>13.2f} {r.ideal_bytes / 1e6:>13.2f} "
            f"{r.experiment_ideal_bytes / 1e6:>13.2f} {r.download_bytes / 1e6:>9.1f} "
            f"{r.total_bytes / 1e6:>7.1f} "
            f"{f'{r.new_layers}/{r.layers}':>10}  {'yes' if r.same else 'NO'}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps([{**asdict(r), "same": r.same} for r in results], indent=1) + "\n"
        )
    return 0 if all(r.same for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
