"""What each planning choice costs or saves in the 52-week simulation.

The simulation (``benches.update_cost.simulate``) draws every week's changes
from the weekly change model itself, so it rewards a plan made for exactly
that model.  Four choices of the planner answer what the model does not see,
and each is undone here alone, then all together, with everything else as it
is:

- **gaps**: planning for the default update gaps (``chunker.DEFAULT_GAPS``)
  rather than for one week only (``1w:1``);
- **size rules**: no large bets (``chunker.pack.LARGE_FACTOR`` and
  ``PAIR_FACTOR``), here switched off;
- **database layer**: the dpkg database on a layer of its own, so that a
  rebuild of the same packages does not download it; undone, it shares the
  layer of what every build rewrites (any volatile component of a weekly
  change probability of at least 0.999);
- **revision data**: manual pages and Perl modules counted with a package's
  binaries, as real revision-only updates change them (``mapping.split``);
  undone, they are ``:data`` again, which the simulation lets change only with
  the upstream version.

``python -m benches.sim_factors [--sets desktop,kde] [--layers 64,128]``
prints MB a week for a weekly client and MB per update for clients every 4,
13 and 26 weeks (debchunk only, 16 runs: the figures of ``benches.update_cost
--frozen`` for the same plan).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benches import update_cost
from benches.update_pairs import SETS, frozen_builds, load_index, pairs
from chunker import UpdateGaps, pack

# The modules by name: ``chunker.pack`` is also the name of a function.
_PACK = importlib.import_module("chunker.pack")
_SPLIT = importlib.import_module("mapping.split")
ONE_WEEK = "1w:1"
# The volatile share threshold before the database had its own layer.
SHARED_DATABASE = 0.999
# What mapping.split counted as revision-only content before manual pages and
# Perl modules: documentation alone.
DOCUMENTATION_ONLY = ("usr/share/doc/",)

FACTORS: dict[str, dict[tuple[Any, str], Any]] = {
    "gaps": {},
    "size rules": {(_PACK, "LARGE_FACTOR"): float("inf"), (_PACK, "PAIR_FACTOR"): float("inf")},
    "database layer": {(_PACK, "ALWAYS"): SHARED_DATABASE},
    "revision data": {(_SPLIT, "_NOT_DATA"): DOCUMENTATION_ONLY},
}


@contextlib.contextmanager
def _undone(settings: dict[tuple[Any, str], Any]) -> Iterator[None]:
    """Module constants set to ``settings`` for the block, then restored."""
    saved = {key: getattr(*key) for key in settings}
    try:
        for (module, name), value in settings.items():
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def _run(set_name: str, max_layers: int, undo: Sequence[str]) -> tuple[float, dict[str, float]]:
    """The simulated weekly MB and MB per update by gap, with ``undo`` undone."""
    settings: dict[tuple[Any, str], Any] = {}
    for factor in undo:
        settings.update(FACTORS[factor])
    gaps = UpdateGaps.parse(ONE_WEEK) if "gaps" in undo else None

    def ours(components: Any, n: int, prior: Any, inputs: Any) -> Any:
        return pack(components, n, prior) if gaps is None else pack(components, n, prior, gaps=gaps)

    strategies: dict[str, Callable[..., Any]] = {"debchunk": ours}
    old = next(o for pair, o, _ in pairs(set_name, frozen=True) if pair == "point-update")
    index = load_index(set_name, old, frozen=True)
    with _undone(settings), _strategies(strategies):
        sim = update_cost.simulate(index, max_layers)
    return sim.mean["debchunk"] / 1e6, {gap: v["debchunk"] / 1e6 for gap, v in sim.by_gap.items()}


@contextlib.contextmanager
def _strategies(only: dict[str, Callable[..., Any]]) -> Iterator[None]:
    saved = dict(update_cost.STRATEGIES)
    update_cost.STRATEGIES.clear()
    update_cost.STRATEGIES.update(only)
    try:
        yield
    finally:
        update_cost.STRATEGIES.clear()
        update_cost.STRATEGIES.update(saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.sim_factors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sets", default="desktop,kde", help="package sets, comma-separated")
    parser.add_argument("--layers", default="64,128", help="layer budgets, comma-separated")
    args = parser.parse_args(argv)
    set_names = args.sets.split(",")
    unknown = [s for s in set_names if s not in SETS or not frozen_builds(s)]
    if unknown:
        parser.error(f"--sets: no frozen builds of {', '.join(unknown)}; known: {', '.join(SETS)}")
    try:
        budgets = [int(n) for n in args.layers.split(",")]
    except ValueError:
        parser.error(f"--layers: {args.layers!r} is not a comma-separated list of numbers")
    variants: list[tuple[str, list[str]]] = [("as planned", [])]
    variants += [(f"without {f}", [f]) for f in FACTORS]
    variants.append(("without all four", list(FACTORS)))
    print("52-week simulation, debchunk (MB a week; MB per update every 4, 13, 26 weeks)")
    print(f"  {'set':10} {'N':>4} {'plan':24} {'weekly':>8} {'change':>8} {'4w':>7} {'13w':>7} {'26w':>7}")
    for set_name in set_names:
        for n in budgets:
            base = 0.0
            for label, undo in variants:
                weekly, by_gap = _run(set_name, n, undo)
                base = base or weekly
                change = f"{weekly - base:+.1f}" if undo else ""
                gaps = " ".join(f"{by_gap.get(g, float('nan')):7.0f}" for g in ("4w", "13w", "26w"))
                print(f"  {set_name:10} {n:4} {label:24} {weekly:8.1f} {change:>8} {gaps}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
