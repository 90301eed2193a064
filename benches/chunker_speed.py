"""How fast the chunker plans: 20,000 components (target < 1 s) and a plan for a
1,000,000-file mapping, files to layers (target < 5 s); for information, the
20,000 again with a prior plan of half of them.

The components are drawn like a large Debian archive's: sizes log-uniform from
1 KB to 200 MB, weekly change probabilities from a Beta(0.5, 8) (most packages
rarely change, a few often); one package in four split (``mapping.split``)
with a data part as large as up to its binaries, changing with a share of
their changes (its upstream version); plus the three volatile components.  The
million-file mapping spreads files over 2,000 components.  Best of 3 runs each.

``python -m benches.chunker_speed [--json FILE]``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from chunker import layer_of_entries, pack
from mapping import Component

COMPONENTS_TARGET_S = 1.0
FILES_TARGET_S = 5.0


def components(n: int, seed: int = 1) -> list[Component]:
    """``n`` package components and the volatile ones."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(1e3), np.log(2e8), n)).astype(np.int64)
    probs = rng.beta(0.5, 8, n)
    out = [
        Component(f"pkg{i:06d}", "package", size=int(s), change_probability=float(p))
        for i, (s, p) in enumerate(zip(sizes, probs, strict=True))
    ]
    split = rng.random(n) < 0.25
    share, data = rng.random(n), rng.random(n)
    out += [
        Component(
            f"pkg{i:06d}:data",
            "package",
            size=int(sizes[i] * data[i]),
            change_probability=float(probs[i] * share[i]),
            part_of=f"pkg{i:06d}",
        )
        for i in np.flatnonzero(split)
    ]
    out += [
        Component(name, "volatile", size=size, change_probability=1.0)
        for name, size in (
            ("volatile", 10_000),
            ("volatile:dpkg", 5_000_000),
            ("volatile:initramfs", 40_000_000),
        )
    ]
    return out


def best_of(n: int, fn: Callable[[], object]) -> float:
    """The fastest of ``n`` wall times of ``fn()``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, check the targets."""
    parser = argparse.ArgumentParser(prog="python -m benches.chunker_speed")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    # 16,000 packages, a quarter of them split: about 20,000 components.
    big = components(16_000)
    plan_s = best_of(3, lambda: pack(big, 64))
    plan = pack(big, 64)
    assert len(plan.layers) + plan.reserved_layers <= 64
    # With the plan of half of them as prior: the other half are new and each
    # goes to the layer where it costs least.
    prior = pack(big[: len(big) // 2], 64)
    prior_s = best_of(3, lambda: pack(big, 64, prior))

    files = 1_000_000
    comps = components(2_000, seed=2)
    rng = np.random.default_rng(3)
    owners = rng.integers(0, len(comps), files)
    owners[rng.random(files) < 0.1] = -1  # directories
    names = [c.name for c in comps]

    def files_to_layers() -> None:
        layer = layer_of_entries(pack(comps, 64), names, owners)
        assert layer.shape == (files,) and layer.max() < 63

    files_s = best_of(3, files_to_layers)
    print(
        f"plan {len(big):,} components into 64 layers: {plan_s:.3f} s (target < {COMPONENTS_TARGET_S} s) "
        f"{'PASS' if plan_s < COMPONENTS_TARGET_S else 'FAIL'}"
    )
    print(
        f"plan + assign 1,000,000 files (2,000 components): {files_s:.3f} s (target < {FILES_TARGET_S} s) "
        f"{'PASS' if files_s < FILES_TARGET_S else 'FAIL'}"
    )
    print(f"plan {len(big):,} components, {len(big) - len(big) // 2:,} new since the prior: {prior_s:.3f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            figures = {
                "plan_20000_components_s": plan_s,
                "plan_1000000_files_s": files_s,
                "plan_with_prior_s": prior_s,
            }
            json.dump(figures, f, indent=1)
    return 0 if plan_s < COMPONENTS_TARGET_S and files_s < FILES_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
