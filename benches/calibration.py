"""How well the weekly change model predicts what real updates changed.

For every update pair of the frozen corpus (``benches.update_pairs``) and each
package component of the old tree: the weekly change probability the mapping
gave it, and whether the update changed it (its files, by path and content,
differ; a removed package changed).  Two figures follow:

- **the pair's gap in model weeks**: the ``g`` for which the model expects as
  many changed packages as the pair has, ``sum(1 - (1 - p) ** g) = changed``.
  This is how far apart the pair's two builds are, in the model's time: what
  the default update gaps are set from (docs/layers.md, "Update gaps");
- **calibration**: per band of weekly probability, the packages that changed
  against the number the model expects at the pair's fitted gap.  A ratio
  above 1 means the model underrates that band, below 1 that it overrates it.

- **what tells the quiet packages apart**: among the packages of the
  quieter half of each pair (weekly probability at most the pair's median),
  how well each of what the tree records ranks the ones that changed above
  the ones that did not (the area under the ROC curve: 0.5 is chance): the
  model's probability, the days since the package's newest changelog entry
  (fewer first), a stable update already in its version (``+debNuM``,
  ``~debNuM``) and the number of entries in its changelog.  Where nothing
  does, no rate tells the quiet packages an update changes from those it
  leaves, and which of them share a layer is chance.

``python -m benches.calibration [--sets all|server,...] [--json FILE]``.
Package sets overlap (most packages are in every set), so the counts summed
over sets are not independent draws.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from benches.update_pairs import SETS, TreeIndex, frozen_builds, load_index, pairs

# Bands of weekly change probability for the calibration table.
BANDS = (0.0, 0.004, 0.006, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0)
# Pairs grouped by how far apart their builds are: week-apart pairs by suite.
WEEK_APART = "week-apart-"


@dataclass(frozen=True)
class PairFit:
    set_name: str
    pair: str
    packages: int
    changed: int
    gap_weeks: float | None


@dataclass(frozen=True)
class Band:
    pair_kind: str
    low: float
    high: float
    packages: int
    changed: int
    expected: float


def package_changes(old: TreeIndex, new: TreeIndex) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """For each package component of ``old``: its weekly change probability,
    and whether ``new`` holds its files unchanged (path and content)."""

    def rows(index: TreeIndex) -> dict[str, frozenset[tuple[str, str]]]:
        held: dict[str, set[tuple[str, str]]] = {}
        for row, owner in enumerate(index.owners.tolist()):
            if owner >= 0:
                held.setdefault(index.components[owner].name, set()).add(
                    (index.paths[row], index.content_ids[row])
                )
        return {name: frozenset(r) for name, r in held.items()}

    before, after = rows(old), rows(new)
    packages = [c for c in old.components if c.kind == "package"]
    p = np.array([c.change_probability for c in packages], dtype=np.float64)
    changed = np.array([before.get(c.name) != after.get(c.name) for c in packages], dtype=bool)
    return p, changed


def expected_changes(p: npt.NDArray[np.float64], weeks: float) -> float:
    """Packages the model expects to change over ``weeks`` weeks."""
    return float(-np.expm1(weeks * np.log1p(-np.minimum(p, 1.0 - 1e-15))).sum())


def fit_gap(p: npt.NDArray[np.float64], changed: int, longest: float = 520.0) -> float | None:
    """The gap in weeks over which the model expects ``changed`` of these
    packages to change (bisection on a monotone function); None when no gap
    up to ``longest`` weeks reaches it or nothing changed."""
    if changed <= 0 or expected_changes(p, longest) < changed:
        return None
    low, high = 1e-4, longest
    for _ in range(80):
        mid = math.sqrt(low * high)
        if expected_changes(p, mid) < changed:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


# The version suffix of a stable release's updates, as Debian's stable and
# security uploads write it: +debNuM after the revision, ~debNuM when the
# update carries a version newer than the release's.
_STABLE_UPDATE = re.compile(r"[+~]deb\d+u\d+")
# What ``quiet_features`` ranks the quiet packages by, each higher first.
FEATURES = ("probability", "recent change", "stable update", "changelog entries")


@dataclass(frozen=True)
class FeatureAuc:
    pair_kind: str
    packages: int
    changed: int
    auc: dict[str, float | None]


def roc_auc(score: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float | None:
    """The probability that a random positive scores above a random negative,
    ties counted half (Mann-Whitney U over both counts); None without both."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # The average rank (1-based) of each distinct value, given to each of its ties.
    upper = np.cumsum(counts)
    mean_rank = upper - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def package_features(old: TreeIndex) -> dict[str, tuple[float, float, float]]:
    """For each source package of ``old``: the days from its newest changelog
    entry to the tree's newest (the mapping's reference), whether its version
    carries a stable update, and its changelog's entries."""
    newest = max((p.changelog_days[0] for p in old.packages if p.changelog_days), default=0)
    out: dict[str, tuple[float, float, float]] = {}
    for p in old.packages:
        age = float(newest - p.changelog_days[0]) if p.changelog_days else float("inf")
        stable = 1.0 if _STABLE_UPDATE.search(p.source_version) else 0.0
        out.setdefault(p.source, (age, stable, float(p.changelog_entries)))
    return out


def quiet_features(set_names: Sequence[str]) -> list[FeatureAuc]:
    """Every non-rebuild pair's quieter half (weekly probability at most the
    pair's median), pooled by pair kind: the ROC AUC of each of ``FEATURES``
    for telling the packages that changed from the others."""
    pooled: dict[str, list[list[float]]] = {}
    for set_name in set_names:
        for pair, old_build, new_build in pairs(set_name, frozen=True):
            if pair == "rebuild":
                continue
            old = load_index(set_name, old_build, frozen=True)
            p, changed = package_changes(old, load_index(set_name, new_build, frozen=True))
            features = package_features(old)
            names = [c.name for c in old.components if c.kind == "package"]
            quiet = p <= np.median(p)
            rows = pooled.setdefault(pair_kind(pair), [])
            for k in np.flatnonzero(quiet).tolist():
                age, stable, entries = features.get(names[k], (float("inf"), 0.0, 0.0))
                rows.append([float(changed[k]), p[k], -age, stable, entries])
    result = []
    for kind, rows in sorted(pooled.items()):
        table = np.array(rows, dtype=np.float64)
        positive = table[:, 0] > 0
        aucs = {name: roc_auc(table[:, 1 + f], positive) for f, name in enumerate(FEATURES)}
        result.append(FeatureAuc(kind, len(rows), int(positive.sum()), aucs))
    return result


def pair_kind(pair: str) -> str:
    """Pairs of one kind pooled: each named pair, and the week-apart pairs by suite."""
    if pair.startswith(WEEK_APART):
        return WEEK_APART + pair[len(WEEK_APART) :].split("-")[0]
    return pair


def calibrate(set_names: Sequence[str]) -> tuple[list[PairFit], list[Band]]:
    """Every non-rebuild pair of the frozen sets: its fitted gap, and the
    calibration bands pooled by pair kind (each pair at its own gap)."""
    fits: list[PairFit] = []
    pooled: dict[tuple[str, int], list[float]] = {}
    for set_name in set_names:
        for pair, old_build, new_build in pairs(set_name, frozen=True):
            if pair == "rebuild":
                continue
            p, changed = package_changes(
                load_index(set_name, old_build, frozen=True), load_index(set_name, new_build, frozen=True)
            )
            gap = fit_gap(p, int(changed.sum()))
            fits.append(PairFit(set_name, pair, len(p), int(changed.sum()), gap))
            if gap is None:
                continue
            band = np.clip(np.searchsorted(BANDS, p, side="right") - 1, 0, len(BANDS) - 2)
            for b in range(len(BANDS) - 1):
                members = band == b
                if not members.any():
                    continue
                total = pooled.setdefault((pair_kind(pair), b), [0.0, 0.0, 0.0])
                total[0] += int(members.sum())
                total[1] += int(changed[members].sum())
                total[2] += expected_changes(p[members], gap)
    bands = [
        Band(kind, BANDS[b], BANDS[b + 1], int(n), int(c), e)
        for (kind, b), (n, c, e) in sorted(pooled.items())
    ]
    return fits, bands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.calibration", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sets", default="all", help="package sets, comma-separated (all: every frozen set)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.sets == "all":
        set_names = [s for s in SETS if frozen_builds(s)]
    else:
        set_names = args.sets.split(",")
        unknown = [s for s in set_names if s not in SETS]
        if unknown:
            parser.error(f"--sets: unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    fits, bands = calibrate(set_names)
    print("pair gaps in model weeks (the gap over which the model expects as many changed packages)")
    print(f"  {'set':15} {'pair':42} {'packages':>8} {'changed':>8} {'weeks':>7}")
    for f in fits:
        weeks = "-" if f.gap_weeks is None else f"{f.gap_weeks:.2f}"
        print(f"  {f.set_name:15} {f.pair:42} {f.packages:8} {f.changed:8} {weeks:>7}")
    print("\ncalibration: packages changed against the model's expectation at each pair's gap")
    print(f"  {'pairs':24} {'weekly p':>15} {'packages':>8} {'changed':>8} {'expected':>9} {'ratio':>6}")
    for b in bands:
        ratio = f"{b.changed / b.expected:.2f}" if b.expected > 0 else "-"
        band = f"{b.low:g}-{b.high:g}"
        print(f"  {b.pair_kind:24} {band:>15} {b.packages:8} {b.changed:8} {b.expected:9.1f} {ratio:>6}")
    quiet = quiet_features(set_names)
    print("\nthe quieter half of each pair: how well each feature ranks the changed packages first (ROC AUC)")
    print(f"  {'pairs':24} {'packages':>8} {'changed':>8} " + " ".join(f"{name:>17}" for name in FEATURES))
    for q in quiet:
        aucs = " ".join(f"{'-' if a is None else f'{a:.2f}':>17}" for a in q.auc.values())
        print(f"  {q.pair_kind:24} {q.packages:8} {q.changed:8} {aucs}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "pairs": [asdict(f) for f in fits],
                    "bands": [asdict(b) for b in bands],
                    "quiet": [asdict(q) for q in quiet],
                },
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
