"""Tests of the baseline packers in ``benches.baselines``: invariants on random
component sets (every component exactly once, independence from input order and
hash seed, the documented layer counts, prior builds) and the behaviour the
original tools document (the ostree-ext test vectors, chunkah's singleton
rules, rechunk's small-package layers).

Run with ``python -m pytest benches/test_baselines.py``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import random
import statistics
import string
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from benches import baselines as bl
from benches import update_cost as uc
from benches.update_pairs import InstalledPackage, TreeIndex
from chunker import ChunkerError, Plan
from mapping import Component
from mapping.changelog import probability
from mapping.model import Kind

MAX_LAYERS = (2, 8, 64, 128)
SIZES = (5, 17, 60, 250, 800)
ROOT = Path(__file__).resolve().parents[1]


def log_uniform_size(rng: random.Random) -> int:
    """1 kB .. 200 MB, log-uniform."""
    return round(math.exp(rng.uniform(math.log(1e3), math.log(200e6))))


def random_components(seed: int, n: int) -> list[Component]:
    """``n`` components: one volatile (p = 1), one unpackaged, a few bigfiles and
    ``user.component`` components (at most two), the rest packages; sizes
    log-uniform 1 kB..200 MB, probabilities uniform in [0, 1]."""
    rng = random.Random(seed)
    comps = [Component("volatile", "volatile", size=log_uniform_size(rng), change_probability=1.0)]
    if n > 1:
        comps.append(
            Component("unpackaged", "unpackaged", size=log_uniform_size(rng), change_probability=rng.random())
        )
    names = {"volatile", "unpackaged"}
    n_special = 0
    while len(comps) < n:
        word = "".join(rng.choices(string.ascii_lowercase + "0123456789+-.", k=rng.randint(2, 14)))
        roll = rng.random()
        kind: Kind
        if roll < 0.05:
            kind, name = "bigfile", f"bigfile:/usr/lib/{word}"
        elif roll < 0.08 and n_special < 2:
            kind, name = "component", f"app-{word}"
            n_special += 1
        else:
            kind, name = "package", f"lib{word}"
        if name in names:
            continue
        names.add(name)
        comps.append(Component(name, kind, size=log_uniform_size(rng), change_probability=rng.random()))
    return comps[:n]


def names_of(plan: Plan) -> list[str]:
    return [name for layer in plan.layers for name in layer.components]


def layer_of(plan: Plan) -> dict[str, int]:
    return plan.layer_index()


def assert_exactly_once(plan: Plan, comps: Sequence[Component]) -> None:
    placed = names_of(plan)
    assert len(placed) == len(set(placed)), "a component is in two layers"
    assert sorted(placed) == sorted(c.name for c in comps), "a component is missing or unknown"
    by_name = {c.name: c for c in comps}
    for layer in plan.layers:
        assert layer.size == sum(by_name[n].size for n in layer.components)


def regular_units(comps: Sequence[Component]) -> int:
    """How many items ostree-ext packs (all unowned content is one)."""
    unowned = sum(1 for c in comps if c.kind in ("unpackaged", "bigfile"))
    return sum(1 for c in comps if c.kind in ("package", "volatile")) + (1 if unowned else 0)


CASES = [(seed, n) for seed, n in enumerate(SIZES)] + [(100 + n, n) for n in (5, 60, 800)]


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("name", sorted(bl.BASELINES))
@pytest.mark.parametrize("max_layers", MAX_LAYERS)
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_every_component_once_and_order_independent(name: str, max_layers: int, seed: int, n: int) -> None:
    comps = random_components(seed, n)
    baseline = bl.BASELINES[name]
    plan = baseline(comps, max_layers)
    assert_exactly_once(plan, comps)
    assert plan.max_layers == max_layers
    assert bl.overshoot(plan) <= bl.LAYER_OVERSHOOT[name]
    shuffled = list(comps)
    random.Random(seed + 1).shuffle(shuffled)
    again = baseline(shuffled, max_layers)
    assert again.groups() == plan.groups()
    assert again.expected_update_bytes == plan.expected_update_bytes
    # Never below the floor, never above everything-in-one-layer.
    one = bl.single_layer(comps, max_layers)
    assert plan.floor_bytes - 1e-6 <= plan.expected_update_bytes <= one.expected_update_bytes + 1e-6


_HASH_SEED_SCRIPT = """
import json, sys
from benches import baselines as bl
from benches.test_baselines import random_components
out = {}
for seed, n in ((1, 17), (3, 250), (4, 800)):
    comps = random_components(seed, n)
    for m in (8, 64):
        for name, f in sorted(bl.BASELINES.items()):
            plan = f(comps, m)
            out[f"{name}/{seed}/{m}"] = [list(g) for g in plan.groups()]
            out[f"{name}/{seed}/{m}/prior"] = [list(g) for g in f(comps[:-3], m, plan).groups()]
json.dump(out, sys.stdout, sort_keys=True)
"""


def test_independent_of_hash_seed() -> None:
    results = []
    for hash_seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        run = subprocess.run(
            [sys.executable, "-c", _HASH_SEED_SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(run.stdout))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 3 * 2 * len(bl.BASELINES) * 2


@pytest.mark.parametrize("name", sorted(bl.BASELINES))
def test_rejects_bad_input(name: str) -> None:
    comps = random_components(7, 10)
    with pytest.raises(ChunkerError):
        bl.BASELINES[name](comps, 1)
    with pytest.raises(ChunkerError):
        bl.BASELINES[name]([*comps, comps[3]], 8)
    assert bl.BASELINES[name]([], 8).layers == ()


# --------------------------------------------------------------------------- layer counts


@pytest.mark.parametrize("max_layers", MAX_LAYERS)
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_trivial_layer_counts(max_layers: int, seed: int, n: int) -> None:
    comps = random_components(seed, n)
    assert [len(g) for g in bl.single_layer(comps, max_layers).groups()] == [n]
    plan = bl.one_per_layer(comps, max_layers)
    assert len(plan.layers) == min(n, max_layers - 1)
    assert bl.overshoot(plan) == 0
    by_size = sorted(comps, key=lambda c: (-c.size, c.name))
    if n <= max_layers - 1:
        assert plan.groups() == [(c.name,) for c in by_size]
    else:
        # max_layers - 2 largest alone, largest first, then everything else.
        k = max_layers - 2
        assert plan.groups()[:k] == [(c.name,) for c in by_size[:k]]
        assert plan.groups()[k] == tuple(sorted(c.name for c in by_size[k:]))


@pytest.mark.parametrize("max_layers", MAX_LAYERS)
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_ostree_ext_layer_count_and_shape(max_layers: int, seed: int, n: int) -> None:
    comps = random_components(seed, n)
    plan = bl.ostree_ext_basic_packing(comps, max_layers)
    exclusive = sorted(c.name for c in comps if c.kind == "component")
    groups = plan.groups()
    if max_layers - len(exclusive) < bl.OSTREE_EXT_MIN_LAYERS:
        # ostree-ext refuses: documented fallback, everything in one layer.
        assert len(groups) == 1
        return
    # Up to max_layers content layers: with the commit layer, N + 1.
    assert len(groups) <= max_layers
    assert bl.overshoot(plan) <= 1
    # Exclusive components first, alone, by name; the reserved layer last, empty.
    assert [g[0] for g in groups[: len(exclusive)]] == exclusive
    assert all(len(g) == 1 for g in groups[: len(exclusive)])
    assert groups[-1] == ()
    where = layer_of(plan)
    max_freq = {where[c.name] for c in comps if c.kind in ("volatile", "unpackaged", "bigfile")}
    if regular_units(comps) >= max_layers - len(exclusive):
        # All u32::MAX content (volatile + every unowned component) shares the
        # layer before the reserved one.
        assert max_freq == {len(groups) - 2}
        # Size outliers (>= median + 2 MAD of the packages) come first, alone.
        sizes = [c.size for c in comps if c.kind == "package"]
        median = statistics.median(sizes)
        mad = statistics.median(abs(s - median) for s in sizes)
        outliers = sorted(
            (c for c in comps if c.kind == "package" and c.size >= median + 2 * mad), key=lambda c: -c.size
        )
        # ... at most 60% of the layers left after the low-size, u32::MAX and
        # reserved ones.
        k = min(len(outliers), 3 * (max_layers - len(exclusive) - 3) // 5)
        assert k >= 1
        assert groups[len(exclusive) : len(exclusive) + k] == [(c.name,) for c in outliers[:k]]
    else:
        # Fewer units than layers: one layer each (unowned content is one unit),
        # largest first, then the reserved empty one.
        assert len(groups) == len(exclusive) + regular_units(comps) + 1
        assert all(groups[:-1])
        assert len(max_freq) == (2 if n > 1 else 1)


@pytest.mark.parametrize("max_layers", MAX_LAYERS)
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_chunkah_layer_count_and_order(max_layers: int, seed: int, n: int) -> None:
    comps = random_components(seed, n)
    plan = bl.chunkah_packing(comps, max_layers)
    if n <= max_layers - 1:
        assert len(plan.layers) == n
    assert len(plan.layers) <= max_layers - 1
    assert all(layer.components for layer in plan.layers)
    stabilities = [1.0 - layer.change_probability for layer in plan.layers]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(stabilities))
    # Without a prior build: the prior is ignored.
    assert (
        bl.chunkah_packing(comps, max_layers, prior=bl.single_layer(comps, max_layers)).groups()
        == plan.groups()
    )


@pytest.mark.parametrize("max_layers", MAX_LAYERS)
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_rechunk_layer_count_and_shape(max_layers: int, seed: int, n: int) -> None:
    comps = random_components(seed, n)
    plan = bl.rechunk_greedy(comps, max_layers)
    dedicated = 1 + sum(1 for c in comps if c.kind == "component" and c.size >= bl.RECHUNK_DEDICATED_MIN_SIZE)
    if max_layers - dedicated <= len(bl.RECHUNK_SIZE_LIMITS):
        assert len(plan.layers) == 1  # rechunk refuses: documented fallback
        return
    assert len(plan.layers) <= max_layers
    assert all(layer.components for layer in plan.layers)
    # All unowned content is rechunk's "unpackaged", alone in its layer (named so,
    # it sorts last).
    unowned = sorted(c.name for c in comps if c.kind in ("volatile", "unpackaged", "bigfile"))
    assert plan.groups()[-1] == tuple(unowned)
    # Dedicated meta packages alone, first.
    big = sorted(c.name for c in comps if c.kind == "component" and c.size >= bl.RECHUNK_DEDICATED_MIN_SIZE)
    assert [g for g in plan.groups()[: len(big)]] == [(b,) for b in big]


# --------------------------------------------------------------------------- prior builds


def next_build(comps: Sequence[Component], seed: int) -> tuple[list[Component], set[str], set[str]]:
    """A following build: some packages removed, some added, some updated (new
    size and probability).  Returns it, the survivors and the new names."""
    rng = random.Random(seed)
    packages = [c for c in comps if c.kind == "package"]
    removed = {c.name for c in rng.sample(packages, len(packages) // 5)}
    result: list[Component] = []
    for c in comps:
        if c.name in removed:
            continue
        if c.kind == "package" and rng.random() < 0.3:
            c = Component(c.name, c.kind, size=log_uniform_size(rng), change_probability=rng.random())
        result.append(c)
    added = {f"new-{i}-{seed}" for i in range(rng.randint(1, 12))}
    result.extend(
        Component(a, "package", size=log_uniform_size(rng), change_probability=rng.random())
        for a in sorted(added)
    )
    survivors = {c.name for c in comps} - removed
    return result, survivors, added


def co_membership(plan: Plan, names: set[str]) -> set[frozenset[str]]:
    """The grouping of ``names`` in ``plan``."""
    return {frozenset(n for n in layer.components if n in names) for layer in plan.layers} - {frozenset()}


@pytest.mark.parametrize("max_layers", (8, 64, 128))
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_ostree_ext_prior_keeps_layers(max_layers: int, seed: int, n: int) -> None:
    v0 = random_components(seed, n)
    exclusive = sum(1 for c in v0 if c.kind == "component")
    plan0 = bl.ostree_ext_basic_packing(v0, max_layers)
    if max_layers - exclusive < bl.OSTREE_EXT_MIN_LAYERS:
        # ostree-ext refuses to chunk with so few layers; the baseline falls back to one.
        assert len(plan0.layers) == 1
        assert_exactly_once(plan0, v0)
        return
    v1, survivors, added = next_build(v0, seed)
    plan1 = bl.ostree_ext_basic_packing(v1, max_layers, prior=plan0)
    assert_exactly_once(plan1, v1)
    # Survivors keep their grouping and their layers' order.
    assert co_membership(plan1, survivors) == co_membership(plan0, survivors)
    before, after = layer_of(plan0), layer_of(plan1)
    order0 = sorted(survivors, key=lambda s: (before[s], s))
    order1 = sorted(survivors, key=lambda s: (after[s], s))
    assert order0 == order1
    # New packages all land in the prior's last (reserved) layer, alone there.
    assert set(plan1.groups()[-1]) == added
    # The same prior again changes nothing; a plan is its own fixed point.
    assert bl.ostree_ext_basic_packing(v1, max_layers, prior=plan1).groups() == plan1.groups()
    # The prior read back from annotations (Plan.from_groups) works the same.
    readback = Plan.from_groups([g or ("",) for g in plan0.groups()])
    assert bl.ostree_ext_basic_packing(v1, max_layers, prior=readback).groups() == plan1.groups()


@pytest.mark.parametrize("max_layers", (8, 64, 128))
@pytest.mark.parametrize(("seed", "n"), CASES)
def test_rechunk_prior_keeps_layers(max_layers: int, seed: int, n: int) -> None:
    v0 = random_components(seed, n)
    plan0 = bl.rechunk_greedy(v0, max_layers)
    v1, survivors, added = next_build(v0, seed)
    plan1 = bl.rechunk_greedy(v1, max_layers, prior=plan0)
    assert_exactly_once(plan1, v1)
    # Survivors stay together or apart as before; layers only gain new packages.
    assert co_membership(plan1, survivors) == co_membership(plan0, survivors)
    for layer in plan1.layers:
        old = [n for n in layer.components if n in survivors]
        assert set(layer.components) - set(old) <= added
    assert len(plan1.layers) <= max_layers + 1
    assert bl.overshoot(plan1) <= bl.LAYER_OVERSHOOT["rechunk_greedy"]


@pytest.mark.parametrize("name", ["single_layer", "one_per_layer", "chunkah_packing"])
def test_stateless_baselines_ignore_prior(name: str) -> None:
    v0 = random_components(11, 300)
    v1, _, _ = next_build(v0, 11)
    f = bl.BASELINES[name]
    assert f(v1, 64, f(v0, 64)).groups() == f(v1, 64).groups()


# --------------------------------------------------------------------------- ostree-ext facts


def units(data: Sequence[tuple[int, int, int]]) -> list[bl._Unit]:
    result = [bl._Unit(f"pkg{i}", (f"pkg{i}",), size, 0.0, freq) for i, freq, size in data]
    return sorted(result, key=lambda u: (-u.size, u.name))


def shape(bins: Sequence[Sequence[bl._Unit]]) -> list[list[str]]:
    return [[u.name for u in b] for b in bins]


MAX = bl.U32_MAX
# ostree-ext's own test vectors (chunking.rs, test_advanced_packing): (id, change count, size).
V0 = [(1, MAX, 100000), (2, MAX, 99999), (3, 30, 99998), (4, 100, 99997), (10, 51, 1000), (8, 50, 500)]
V0 += [(9, 1, 200), (11, 100000, 199), (6, 30, 2), (7, 30, 1)]


def test_ostree_ext_upstream_vectors() -> None:
    v0 = shape(bl._ox_basic_packing(units(V0), 6, None))
    assert v0 == [
        ["pkg3"],
        ["pkg4"],
        ["pkg6", "pkg7", "pkg11"],
        ["pkg9", "pkg8", "pkg10"],
        ["pkg1", "pkg2"],
        [],
    ]
    # pkg1 updated, pkg7 removed, pkg5 added: kept layout, pkg5 in the reserved layer.
    v1_data = [d for d in V0 if d[0] != 7] + [(5, 42, 100000)]
    v1_units = units(v1_data)
    prior = bl._ox_with_prior(v1_units, 6, v0, {u.name: u.name for u in v1_units})
    v1 = shape(bl._ox_basic_packing(v1_units, 6, prior))
    assert v1 == [
        ["pkg3"],
        ["pkg4"],
        ["pkg6", "pkg11"],
        ["pkg9", "pkg8", "pkg10"],
        ["pkg1", "pkg2"],
        ["pkg5"],
    ]
    # pkg12 added: it joins pkg5 in the last layer.
    v2_units = units([*v1_data, (12, 42, 100000)])
    prior = bl._ox_with_prior(v2_units, 6, v1, {u.name: u.name for u in v2_units})
    v2 = shape(bl._ox_basic_packing(v2_units, 6, prior))
    assert v2[-1] == ["pkg5", "pkg12"] and v2[:-1] == v1[:-1]
    # Too few layers: ostree-ext refuses.
    with pytest.raises(bl._Unsupported):
        bl._ox_basic_packing(units(V0), 3, None)


def test_ostree_ext_prior_with_exclusive_components() -> None:
    # chunking.rs test_advanced_packing_with_prior_exclusive_components: the
    # exclusive components' prior layers are dropped, 3 layers suffice.
    regular = units([(3, 300, 30000), (4, 400, 20000), (5, 500, 10000), (6, 600, 5000)])
    prior = [["pkg1"], ["pkg2"], ["pkg3", "pkg4"], ["pkg5", "pkg6"], []]
    kept = bl._ox_with_prior(regular, 3, prior, {f"pkg{i}": f"pkg{i}" for i in range(1, 7)})
    assert kept is not None
    assert [sorted(b) for b in shape(kept)] == [["pkg3", "pkg4"], ["pkg5", "pkg6"], []]
    # Too small for the prior: discarded.
    assert bl._ox_with_prior(regular, 2, prior, {}) is None


def test_ostree_ext_public_api() -> None:
    """The test vectors through Components: u32::MAX becomes volatile/unowned
    content, change counts become probabilities that map back to them."""
    comps = [
        Component("pkg1", "volatile", size=100000, change_probability=1.0),
        Component("pkg2", "unpackaged", size=99999, change_probability=0.5),
    ]
    for i, freq, size in V0[2:]:
        freq = min(freq, bl.MAX_CHANGES_PER_YEAR)
        comps.append(Component(f"pkg{i}", "package", size=size, change_probability=probability(freq + 0.5)))
    assert [bl.changes_per_year(c.change_probability) for c in comps[2:]] == [30, 100, 51, 50, 1, 366, 30, 30]
    plan = bl.ostree_ext_basic_packing(comps, 6)
    # Worked by hand: pkg11's count capped at 366 instead of 100000 moves the
    # frequency limits (mean 113.6 +- 2 x 130.0): pkg4 and pkg11 become "medium
    # frequency", pkg9, pkg8, pkg10 "low"; bins [pkg3] [pkg6 pkg7] [pkg11] [pkg4]
    # [pkg9 pkg8] [pkg10] are merged from the end down to 4.
    assert plan.groups() == [
        ("pkg3",),
        ("pkg10",),
        ("pkg11", "pkg6", "pkg7"),
        ("pkg4", "pkg8", "pkg9"),
        ("pkg1", "pkg2"),
        (),
    ]
    assert bl.overshoot(plan) == 1  # 6 content layers + the commit layer for --max-layers 6
    # A user.component gets its own first layer and one layer less for the rest.
    with_app = [*comps, Component("app", "component", size=5, change_probability=0.1)]
    groups = bl.ostree_ext_basic_packing(with_app, 7).groups()
    assert groups[0] == ("app",) and groups[1:] == plan.groups()
    # Bigfiles are unpackaged content for rpm-ostree: they join pkg2.
    with_big = [*comps, Component("bigfile:/usr/x", "bigfile", size=7, change_probability=0.0)]
    assert ("bigfile:/usr/x", "pkg1", "pkg2") in bl.ostree_ext_basic_packing(with_big, 6).groups()


def test_changes_per_year_inverts_the_mapping() -> None:
    for n in range(0, 367, 7):
        assert bl.changes_per_year(probability(n + 0.5)) == n
    assert bl.changes_per_year(probability(4.0)) == 4  # the no-changelog default
    assert bl.changes_per_year(0.0) == 0
    assert bl.changes_per_year(1.0) == bl.MAX_CHANGES_PER_YEAR
    assert bl.changes_per_year(1.0 - 1e-300) == bl.MAX_CHANGES_PER_YEAR


# --------------------------------------------------------------------------- chunkah facts


def test_fnv1a() -> None:
    # Published FNV-1a 64-bit test vectors.
    assert bl.fnv1a_64(b"") == 0xCBF29CE484222325
    assert bl.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert bl.fnv1a_64(b"foobar") == 0x85944171F73967E8
    # Rust's str hashing appends 0xff.
    assert bl.chunkah_hash_name("glibc") == bl.fnv1a_64(b"glibc\xff")


def pkgs(spec: Sequence[tuple[str, int, float]]) -> list[Component]:
    return [Component(name, "package", size=size, change_probability=1.0 - stab) for name, size, stab in spec]


def groups_with(plan: Plan, name: str) -> tuple[str, ...]:
    return next(g for g in plan.groups() if name in g)


def test_chunkah_upstream_scenarios() -> None:
    # chunkah packing.rs tests, with our budget one larger (the commit layer).
    huge = pkgs([("huge", 100000, 0.9)] + [(f"small{i}", 10, 0.9) for i in range(1, 5)])
    plan = bl.chunkah_packing(huge, 3 + 1)
    assert groups_with(plan, "huge") == ("huge",) and len(plan.layers) <= 3
    volatile = pkgs([("stable1", 1000, 0.99), ("stable2", 1000, 0.99), ("volatile", 1000, 0.1)])
    plan = bl.chunkah_packing(volatile, 2 + 1)
    assert plan.groups() == [("stable1", "stable2"), ("volatile",)]
    tiers = pkgs(
        [("huge", 100000, 0.5)]
        + [
            (c, 100, s)
            for c, s in zip("abcdefghi", (0.99, 0.98, 0.97, 0.7, 0.65, 0.6, 0.1, 0.05, 0.01), strict=True)
        ]
    )
    plan = bl.chunkah_packing(tiers, 3 + 1)
    assert groups_with(plan, "huge") == ("huge",) and len(plan.layers) <= 3
    # Within budget: one layer each, most stable first.
    few = pkgs([("a", 1, 0.5), ("b", 2, 0.9), ("c", 3, 0.7)])
    assert bl.chunkah_packing(few, 4).groups() == [("b",), ("c",), ("a",)]


def test_chunkah_hash_placement() -> None:
    """Equal-sized, equally stable components: no outliers, one tier, so each
    goes to bin FNV(name) mod k, empty bins refilled from crowded ones."""
    comps = pkgs([(f"pkg-{i}", 1000, 0.9) for i in range(40)])
    plan = bl.chunkah_packing(comps, 9)
    assert len(plan.layers) == 8
    expected: dict[int, set[str]] = {}
    for c in comps:
        expected.setdefault(bl.chunkah_hash_name(c.name) % 8, set()).add(c.name)
    assert len(expected) == 8  # no empty bin to refill for these names
    assert {frozenset(g) for g in plan.groups()} == {frozenset(v) for v in expected.values()}
    # Adding a component moves no other component.
    more = bl.chunkah_packing([*comps, *pkgs([("pkg-new", 1000, 0.9)])], 9)
    old = co_membership(plan, {c.name for c in comps})
    assert co_membership(more, {c.name for c in comps}) == old


# --------------------------------------------------------------------------- rechunk facts


def test_rechunk_small_package_layers() -> None:
    comps = [Component("volatile", "volatile", size=3_000_000, change_probability=1.0)]
    comps += pkgs([(f"tiny{i}", 1000 * (i + 1), 0.5) for i in range(10)])  # < 500 kB
    comps += pkgs([(f"small{i}", 600_000 + i, 0.5) for i in range(5)])  # < 1 MB
    comps += pkgs([(f"big{i}", 50_000_000 * (i + 1), 0.1 * i) for i in range(8)])
    plan = bl.rechunk_greedy(comps, 8)
    groups = plan.groups()
    where = layer_of(plan)
    # One layer for everything under 500 kB, one for 500 kB..1 MB (leftovers may
    # join them later).
    assert len({where[f"tiny{i}"] for i in range(10)}) == 1
    assert len({where[f"small{i}"] for i in range(5)}) == 1
    assert where["tiny0"] != where["small0"]
    assert groups[-1] == ("volatile",)  # "unpackaged", dedicated
    assert len(groups) <= 8
    # The largest packages each seed a layer that is full at once (> 0.4 x the
    # mean layer size) and too big (> 1.3 x) to take leftovers.
    assert ("big7",) in groups and ("big6",) in groups
    # Too small a budget for rechunk (dedicated + 2 small-package layers).
    assert len(bl.rechunk_greedy(comps, 3).layers) == 1


# --------------------------------------------------------------------------- the peers' inputs

N = (dt.date(2026, 11, 24) - dt.date(1970, 1, 1)).days  # the tree's reference day


def day(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def test_ostree_ext_change_frequency_counts_entries_of_the_last_365_days() -> None:
    packages = [
        # 5 entries within 365 days of the tree's newest build (N): N, N-10 twice
        # (two entries on one day count twice: rpm-ostree counts entries), N-200
        # and N-365; N-366 is out -> 5.
        bl.BinaryPackage("libfoo1", "foo", (N, N - 10, N - 10, N - 200, N - 365, N - 366), 6),
        # The window ends at the newest build of the whole tree, not at the
        # package's own: N-300 counts, N-500 does not -> 1.
        bl.BinaryPackage("old", "old", (N - 300, N - 500), 2),
        # No changelog -> 0.
        bl.BinaryPackage("nolog", "nolog", (), 0),
    ]
    assert bl.ostree_ext_change_frequency(packages) == {"libfoo1": 5, "old": 1, "nolog": 0}


def test_chunkah_stability_divides_distinct_days_by_the_span() -> None:
    # One change day 22 days ago (N-500 is outside the 365-day look-back):
    # rate 1/22 per day -> exp(-7/22) = 0.7275 (our model would divide by 365).
    assert bl.chunkah_stability((N - 22, N - 500), N) == pytest.approx(0.72747, abs=1e-5)
    # Three distinct days (N-3 twice is one day), oldest N-300: exp(-7 * 3/300).
    assert bl.chunkah_stability((N - 3, N - 3, N - 100, N - 300), N) == pytest.approx(math.exp(-0.07))
    assert bl.chunkah_stability((N - 400,), N) == 0.99  # nothing in the window
    assert bl.chunkah_stability((), N) == 0.99  # no changelog, no build time
    assert bl.chunkah_stability((N,), N) == 0.0  # changed today: span under a day
    packages = [
        bl.BinaryPackage("apt", "apt", (N - 22, N - 500), 124),
        bl.BinaryPackage("libapt-pkg7.0", "apt", (N - 22, N - 22, N - 500), 124),
        # One source, binaries with different histories: the smallest wins,
        # N-100 alone -> exp(-0.07) = 0.932; N-10, N-20 -> exp(-7 * 2/20) = 0.497.
        bl.BinaryPackage("mix-a", "mix", (N - 100,), 9),
        bl.BinaryPackage("mix-b", "mix", (N - 10, N - 20), 9),
    ]
    stability = bl.chunkah_dpkg_stability(packages, N)
    assert stability.keys() == {"dpkg/apt", "dpkg/mix"}
    assert stability["dpkg/apt"] == pytest.approx(0.72747, abs=1e-5)
    assert stability["dpkg/mix"] == pytest.approx(math.exp(-0.7))


def test_rechunk_update_weeks() -> None:
    now = day(dt.date(2026, 11, 24))
    dates = [
        dt.date(2026, 11, 23),  # ISO week 48
        dt.date(2026, 11, 20),  # week 47
        dt.date(2026, 11, 18),  # week 47 again
        dt.date(2025, 11, 25),  # 364 days old, week 48 of 2025: same column
        dt.date(2025, 11, 20),  # 369 days old: out
    ]
    assert bl.rechunk_update_weeks([day(d) for d in dates], 5, now) == (1 << 47) | (1 << 48)
    # At most two changelog entries in all: "no changelog", every week.
    assert bl.rechunk_update_weeks([day(dates[0])], 2, now) == bl.RECHUNK_ALL_WEEKS
    assert bin(bl.RECHUNK_ALL_WEEKS).count("1") == 53
    # ISO week 53 (2020-12-31) takes column 0.
    assert bl.rechunk_update_weeks([day(dt.date(2020, 12, 31))], 9, day(dt.date(2021, 1, 5))) == 1
    # Variants of one name are one package: 2 + 2 entries are 4, not "no changelog".
    packages = [
        bl.BinaryPackage("libc6:amd64", "glibc", (day(dates[0]), day(dates[1])), 2),
        bl.BinaryPackage("libc6:i386", "glibc", (day(dates[0]), day(dates[1])), 2),
        bl.BinaryPackage("tzdata", "tzdata", (day(dates[0]),), 1),
    ]
    assert bl.rechunk_weeks(packages, now) == {"libc6": (1 << 47) | (1 << 48), "tzdata": bl.RECHUNK_ALL_WEEKS}


def test_rechunk_costs_layers_by_weeks_updated() -> None:
    """With update weeks, a layer costs (weeks any member changed) x size: a new
    package goes to the prior layer whose weeks it shares (cost +2 weeks x its
    size), not to the one whose weeks it would add to (+2 weeks x 100 MB)."""
    comps = [Component("volatile", "volatile", size=10, change_probability=1.0)]
    comps += pkgs([("a", 100_000_000, 0.5), ("b", 100_000_000, 0.5), ("c", 2_000_000, 0.5)])
    prior = Plan.from_groups([("a",), ("b",), ("volatile",)])
    weeks = {"a": 0b0011, "b": 0b1100, "c": 0b0011}
    assert groups_with(bl.rechunk_greedy(comps, 2, prior, weeks=weeks), "c") == ("a", "c")
    weeks = {"a": 0b0011, "b": 0b1100, "c": 0b1100}
    assert groups_with(bl.rechunk_greedy(comps, 2, prior, weeks=weeks), "c") == ("b", "c")


def test_inputs_override_probabilities() -> None:
    """Given inputs replace what the baselines would derive from our probabilities."""
    comps = pkgs([(f"p{i}", 1000 * (i + 1), 0.5) for i in range(12)])
    plain = bl.ostree_ext_basic_packing(comps, 6)
    counted = bl.ostree_ext_basic_packing(
        comps, 6, change_frequency={f"p{i}": 100 * (i % 3) for i in range(12)}
    )
    assert plain.groups() != counted.groups()
    stable = bl.chunkah_packing(comps, 4, stability={"p0": 0.0})
    assert stable.groups()[-1] == ("p0",) or "p0" in stable.groups()[-1]


def small_index() -> TreeIndex:
    """A hand-made tree of two sources: ``foo`` (binaries ``foo`` and
    ``python3-foo``, 1000 + 100 listed bytes, a byte-code file and a generated
    config no list names) and ``bar``, plus the dpkg database (volatile)."""
    rows = [
        # path, size, mode, component, binary package listing it (-1: none)
        ("etc/foo/generated.conf", 7, 0o100644, "foo", -1),
        ("usr/bin/bar", 50, 0o100755, "bar", 0),
        ("usr/bin/foo", 1000, 0o100755, "foo", 1),
        ("usr/lib/python3/dist-packages/foo/__init__.py", 100, 0o100644, "foo", 2),
        ("usr/lib/python3/dist-packages/foo/__pycache__/__init__.cpython-313.pyc", 30, 0o100644, "foo", -1),
        ("var/lib/dpkg/status", 20, 0o100644, "volatile:dpkg", -1),
    ]
    components = (
        Component("bar", "package", size=50, files=1, change_probability=0.1),
        Component("foo", "package", size=1137, files=4, change_probability=0.2),
        Component("volatile:dpkg", "volatile", size=20, files=1, change_probability=1.0),
    )
    day = (dt.date(2025, 6, 1) - dt.date(1970, 1, 1)).days
    return TreeIndex.of_rows(
        "small",
        "one",
        components,
        [r[0] for r in rows],
        [f"c{i}" for i in range(len(rows))],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        reference_date="2025-06-01T00:00:00+00:00",
        packages=(
            InstalledPackage("bar", "amd64", "1", "bar", "1", (day,), 1, "bar"),
            InstalledPackage("foo", "amd64", "2", "foo", "2", (day, day - 30), 2, "foo"),
            InstalledPackage("python3-foo", "all", "2", "foo", "2", (day, day - 30), 2, "python3-foo"),
        ),
        row_packages=[r[4] for r in rows],
    )


def test_peer_ownership_of_unlisted_files() -> None:
    """Files no dpkg list names go, with the "mapped" ownership, to the binary
    package of their component's source listing files in their nearest
    directory (the byte code to python3-foo), else to that source's biggest
    binary package (the generated config to foo); the mapping's volatile
    content stays unowned.  With "dpkg" they are each peer's catch-all."""
    index = small_index()
    assert uc.adopted_row_packages(index).tolist() == [1, 0, 1, 2, 2, -1]

    def units(view: uc.PeerView) -> dict[str, int]:
        return {c.name: c.size for c in view.index.components}

    assert units(uc.ostree_ext_view(index, "mapped")) == {
        "bar": 50,
        "foo": 1007,
        "python3-foo": 130,
        "volatile:dpkg": 20,
    }
    assert units(uc.ostree_ext_view(index, "dpkg")) == {
        "bar": 50,
        "foo": 1000,
        "python3-foo": 100,
        "rpmostree-unpackaged-content": 37,
        "volatile:dpkg": 20,
    }
    # chunkah groups by source; its unclaimed (and bigfiles) take the rest.
    assert units(uc.chunkah_view(index, "mapped")) == {
        "dpkg/bar": 50,
        "dpkg/foo": 1137,
        bl.CHUNKAH_UNCLAIMED: 20,
    }
    assert units(uc.chunkah_view(index, "dpkg")) == {
        "dpkg/bar": 50,
        "dpkg/foo": 1100,
        bl.CHUNKAH_UNCLAIMED: 57,
    }
    # rechunk leaves /etc to its unpackaged layer whoever owns it.
    assert units(uc.rechunk_view(index, "mapped")) == {
        "bar": 50,
        "foo": 1000,
        "python3-foo": 130,
        bl.RECHUNK_UNPACKAGED: 27,
    }
    assert units(uc.rechunk_view(index, "dpkg")) == {
        "bar": 50,
        "foo": 1000,
        "python3-foo": 100,
        bl.RECHUNK_UNPACKAGED: 57,
    }
    with pytest.raises(ValueError, match="peer ownership 'rpm'"):
        uc.ostree_ext_view(index, "rpm")
