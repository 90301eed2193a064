"""Where the dpkg database's layer pays: three placements, side by side.

The database's shared files (``status``, ...; each package's own records go
with the package, ``mapping.split``) change whenever any package does and
only then.  Three places for them:

- **own layer** (debchunk): a rebuild of the same packages does not download
  it, and no package is downloaded again because the database changed;
- **with the initramfs**: in the layer of what every build rewrites
  (``chunker.pack.ALWAYS`` lowered to 0.999), which frees a layer but makes
  every rebuild download the database;
- **with packages**: placed by the objective like a package, so it joins the
  packages the model expects to change most (a rebuild downloads neither, and
  a layer is freed), and any update downloads them with it.

For each, ``python -m benches.database_layer`` prints the 52-week
simulation's MB a week for a weekly client (``benches.update_cost.simulate``,
drawn from the change model) and the bytes wasted on the frozen corpus's real
pairs (``benches.update_pairs``), by kind of pair: debchunk alone, so the
figures of ``benches.update_cost --frozen`` for the same plans.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from benches import update_cost
from benches.sim_factors import _PACK, SHARED_DATABASE, _strategies, _undone
from benches.update_cost import WEEK_APART_PREFIX
from benches.update_pairs import SETS, frozen_builds, ideal_bytes, load_index, pairs
from chunker import Plan, pack
from mapping import Component

DATABASE = "volatile:dpkg"
PLACEMENTS = ("own layer", "with the initramfs", "with packages")
# The kinds of pair the corpus has, in the order printed.
KINDS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("week-apart", lambda pair: pair.startswith(WEEK_APART_PREFIX)),
    ("trixie point", lambda pair: pair == "point-update"),
    ("bookworm point", lambda pair: pair == "bookworm-point-update"),
    ("forky to sid", lambda pair: pair == "testing-to-unstable"),
    ("rebuild", lambda pair: pair == "rebuild"),
)


def _as_package(components: Sequence[Component]) -> list[Component]:
    """The components with the database's kind a package's: the packer then
    places it by the objective alone."""
    return [dataclasses.replace(c, kind="package") if c.name == DATABASE else c for c in components]


def _strategy(placement: str) -> update_cost.Strategy:
    def with_packages(
        components: Sequence[Component], max_layers: int, prior: Plan | None, inputs: Mapping[str, Any]
    ) -> Plan:
        return pack(_as_package(components), max_layers, prior)

    def as_is(
        components: Sequence[Component], max_layers: int, prior: Plan | None, inputs: Mapping[str, Any]
    ) -> Plan:
        return pack(components, max_layers, prior)

    return with_packages if placement == "with packages" else as_is


@contextmanager
def placed(placement: str) -> Iterator[update_cost.Strategy]:
    """The strategy planning with the database at ``placement``, and the
    packer's settings for it for the block."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; one of {', '.join(PLACEMENTS)}")
    settings = {(_PACK, "ALWAYS"): SHARED_DATABASE} if placement == "with the initramfs" else {}
    strategy = _strategy(placement)
    with _undone(settings), _strategies({update_cost.OURS: strategy}):
        yield strategy


def weekly_mb(set_name: str, max_layers: int, placement: str) -> float:
    """The simulation's MB a week for a weekly client."""
    old = next(o for pair, o, _ in pairs(set_name, frozen=True) if pair == "point-update")
    index = load_index(set_name, old, frozen=True)
    with placed(placement):
        return update_cost.simulate(index, max_layers).mean[update_cost.OURS] / 1e6


def corpus_waste(set_names: Sequence[str], max_layers: int, placement: str) -> dict[str, tuple[float, float]]:
    """Per kind of pair: the MB downloaded beyond the changed bytes, and the
    MB changed, summed over the sets' frozen pairs."""
    out = {kind: (0.0, 0.0) for kind, _ in KINDS}
    with placed(placement) as strategy:
        for set_name in set_names:
            for pair, old_name, new_name in pairs(set_name, frozen=True):
                kind = next((k for k, match in KINDS if match(pair)), None)
                if kind is None:
                    continue
                old = load_index(set_name, old_name, frozen=True)
                new = load_index(set_name, new_name, frozen=True)
                _, _, got = update_cost._plan_pair(update_cost.OURS, strategy, old, new, max_layers)
                ideal = ideal_bytes(old, new)
                waste, changed = out[kind]
                out[kind] = (waste + (got - ideal) / 1e6, changed + ideal / 1e6)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.database_layer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sets", default="all", help="package sets, comma-separated (all: every frozen set)")
    parser.add_argument(
        "--simulate", default="desktop,kde", help="sets to simulate 52 weeks of ('' for none)"
    )
    parser.add_argument("--layers", default="64,128", help="layer budgets, comma-separated")
    args = parser.parse_args(argv)
    set_names = [s for s in SETS if frozen_builds(s)] if args.sets == "all" else args.sets.split(",")
    simulated = [s for s in args.simulate.split(",") if s]
    unknown = [s for s in {*set_names, *simulated} if s not in SETS or not frozen_builds(s)]
    if unknown:
        parser.error(
            f"--sets/--simulate: no frozen builds of {', '.join(sorted(unknown))}; known: {', '.join(SETS)}"
        )
    try:
        budgets = [int(n) for n in args.layers.split(",")]
    except ValueError:
        parser.error(f"--layers: {args.layers!r} is not a comma-separated list of numbers")
    print("The dpkg database's layer: MB a week in the 52-week simulation (weekly client)")
    print(f"  {'set':10} {'N':>4} " + " ".join(f"{p:>20}" for p in PLACEMENTS))
    for set_name in simulated:
        for n in budgets:
            figures = " ".join(f"{weekly_mb(set_name, n, p):20.1f}" for p in PLACEMENTS)
            print(f"  {set_name:10} {n:4} {figures}", flush=True)
    print(f"MB wasted on the frozen pairs of {', '.join(set_names)} (MB changed in brackets)")
    print(f"  {'pairs':15} {'N':>4} " + " ".join(f"{p:>20}" for p in PLACEMENTS))
    for n in budgets:
        by_placement = [corpus_waste(set_names, n, p) for p in PLACEMENTS]
        for kind, _ in KINDS:
            changed = by_placement[0][kind][1]
            figures = " ".join(f"{w[kind][0]:20.1f}" for w in by_placement)
            print(f"  {kind:15} {n:4} {figures}  ({changed:.0f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
