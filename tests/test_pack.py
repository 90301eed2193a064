"""``chunker.pack``: the hard rules for random component sets, budgets and
prior plans, determinism, and the choices the cost model drives."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunker import DEFAULT_GAPS, P_CAP, ChunkerError, Plan, make_plan, pack
from mapping import Component
from mapping.model import Kind

KINDS: tuple[Kind, ...] = ("package", "package", "package", "component", "bigfile", "unpackaged")


@st.composite
def component_sets(draw: st.DrawFn, min_size: int = 1, max_size: int = 300) -> list[Component]:
    n = draw(st.integers(min_size, max_size))
    sizes = draw(st.lists(st.integers(0, 300_000_000), min_size=n, max_size=n))
    probs = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=n, max_size=n))
    comps = [
        Component(f"c{i:04d}", k, size=s, change_probability=p)
        for i, (s, p, k) in enumerate(zip(sizes, probs, kinds, strict=True))
    ]
    # Some packages split in two (mapping.split): a data part changing with the
    # upstream version only, no more often than the rest.
    split = draw(st.lists(st.sampled_from(range(n)), max_size=n // 2 + 1, unique=True))
    for i in split:
        upstream = draw(st.floats(0.0, 1.0)) * comps[i].change_probability
        comps.append(
            Component(
                f"c{i:04d}:data",
                "package",
                size=draw(st.integers(0, 50_000_000)),
                change_probability=upstream,
                part_of=f"c{i:04d}",
            )
        )
    if draw(st.booleans()):
        comps.append(
            Component("volatile", "volatile", size=draw(st.integers(0, 50_000_000)), change_probability=1.0)
        )
    return comps


budgets = st.one_of(st.integers(2, 12), st.sampled_from([16, 64, 128, 500]))


def check_hard_rules(plan: Plan, comps: list[Component], max_layers: int) -> None:
    assert len(plan.layers) + plan.reserved_layers <= max_layers
    names = [n for layer in plan.layers for n in layer.components]
    assert sorted(names) == sorted(c.name for c in comps)  # each exactly once
    assert all(layer.components for layer in plan.layers)
    by = {c.name: c for c in comps}
    for layer in plan.layers:
        assert layer.size == sum(by[n].size for n in layer.components)
        kinds = {by[n].kind for n in layer.components}
        # Volatile content never shares a layer, when there is room for it.
        if "volatile" in kinds and len(plan.layers) > 1:
            assert kinds == {"volatile"}
    # E is the cost model of the layers, and never below its floor.
    assert plan.expected_update_bytes >= plan.floor_bytes * (1 - 1e-9) - 1e-6


@settings(max_examples=60, deadline=None)
@given(comps=component_sets(), max_layers=budgets, seed=st.integers(0, 2**32 - 1))
def test_hard_rules_and_determinism(comps: list[Component], max_layers: int, seed: int) -> None:
    plan = pack(comps, max_layers)
    check_hard_rules(plan, comps, max_layers)
    shuffled = list(comps)
    np.random.default_rng(seed).shuffle(shuffled)
    assert pack(shuffled, max_layers) == plan


@settings(max_examples=40, deadline=None)
@given(comps=component_sets(min_size=2), max_layers=budgets, data=st.data())
def test_prior_plan_is_respected(comps: list[Component], max_layers: int, data: st.DataObject) -> None:
    before = pack(comps, max_layers)
    # Some components leave, some arrive, some change size and probability.
    leaving = set(data.draw(st.lists(st.sampled_from([c.name for c in comps]), max_size=5)))
    arriving = [
        Component(
            f"new{i}",
            "package",
            size=data.draw(st.integers(0, 10**8)),
            change_probability=data.draw(st.floats(0, 1)),
        )
        for i in range(data.draw(st.integers(0, 4)))
    ]
    now = [
        Component(c.name, c.kind, size=c.size * 2 + 1, change_probability=c.change_probability / 2)
        for c in comps
        if c.name not in leaving
    ] + arriving
    after = pack(now, max_layers, before)
    check_hard_rules(after, now, max_layers)
    old_layer = before.layer_index()
    new_layer = after.layer_index()
    staying = [c.name for c in now if c.name in old_layer]
    # Components that were together stay together, and no two old layers merge.
    for a in staying:
        for b in staying:
            assert (old_layer[a] == old_layer[b]) == (new_layer[a] == new_layer[b]), (a, b)
    # A new component joins at most one layer that held old components.
    joined = {new_layer[c.name] for c in arriving} & {new_layer[n] for n in staying}
    assert len(joined) <= len(arriving)


@settings(max_examples=40, deadline=None)
@given(comps=component_sets(min_size=3), max_layers=budgets, data=st.data())
def test_one_component_change_touches_only_its_layer(
    comps: list[Component], max_layers: int, data: st.DataObject
) -> None:
    before = pack(comps, max_layers)
    victim = data.draw(st.sampled_from(comps))
    how = data.draw(st.sampled_from(["resize", "remove", "add"]))
    if how == "resize":
        now = [
            Component(c.name, c.kind, size=c.size * 3 + 7, change_probability=c.change_probability)
            if c.name == victim.name
            else c
            for c in comps
        ]
        touched = {victim.name}
    elif how == "remove":
        now = [c for c in comps if c.name != victim.name]
        touched = {victim.name}
    else:
        now = [*comps, Component("zz-new", "package", size=12345, change_probability=0.1)]
        touched = {"zz-new"}
    after = pack(now, max_layers, before)
    old = {frozenset(layer.components) for layer in before.layers}
    new = {frozenset(layer.components) for layer in after.layers}
    changed_old = [g for g in old if g not in new]
    changed_new = [g for g in new if g not in old]
    assert len(changed_old) <= 1 and len(changed_new) <= 1
    if how == "resize":
        # The component stays in its layer: no layer changes composition.
        assert not changed_old and not changed_new
    elif how == "remove":
        # Its layer loses it (and disappears if it was alone); nothing else changes.
        assert changed_old and victim.name in changed_old[0]
        assert changed_new == ([changed_old[0] - touched] if len(changed_old[0]) > 1 else [])
    else:
        # The new component has a layer of its own or joins exactly one.
        assert changed_new and "zz-new" in changed_new[0]
        assert changed_new[0] - touched == (changed_old[0] if changed_old else frozenset())


def test_volatile_content_rewritten_by_every_build_shares_a_layer_and_the_database_has_its_own() -> None:
    # The initramfs and the state files change at every build; the dpkg
    # database only when a package does (1 - 1e-7 for a desktop tree), so a
    # rebuild of the same packages must not download it with the initramfs.
    comps = [
        Component("volatile:initramfs", "volatile", size=40_000_000, change_probability=1.0),
        Component("volatile:dpkg", "volatile", size=2_000_000, change_probability=1.0 - 1e-7),
        Component("volatile", "volatile", size=100_000, change_probability=1.0),
        *(Component(f"p{i}", "package", size=1_000_000 * (i + 1), change_probability=0.01) for i in range(8)),
    ]
    layers = [layer.components for layer in pack(comps, 8).layers]
    assert ("volatile", "volatile:initramfs") in layers
    assert ("volatile:dpkg",) in layers
    # With no room for a layer each, the volatile ones still share one.
    layers = [layer.components for layer in pack(comps, 3).layers]
    assert ("volatile", "volatile:dpkg", "volatile:initramfs") in layers


def test_greedy_beats_naive_groupings() -> None:
    rng = np.random.default_rng(7)
    comps = [
        Component(
            f"p{i:03d}",
            "package",
            size=int(math.exp(rng.uniform(7, 19))),
            change_probability=float(rng.beta(0.5, 8)),
        )
        for i in range(600)
    ]
    plan = pack(comps, 64)
    by_size = sorted(comps, key=lambda c: -c.size)
    top = [[c.name] for c in by_size[:62]] + [[c.name for c in by_size[62:]]]
    assert plan.expected_update_bytes < make_plan(comps, top, 64).expected_update_bytes * 0.9


def test_too_few_layers_is_an_error() -> None:
    with pytest.raises(ChunkerError, match="at least 2"):
        pack([Component("a", "package", size=1)], 1)
    with pytest.raises(ChunkerError, match="twice"):
        pack([Component("a", "package"), Component("a", "bigfile")], 8)


def test_independent_of_hash_seed(tmp_path: Path) -> None:
    code = (
        "import json, numpy as np\n"
        "from mapping import Component\nfrom chunker import pack\n"
        "rng = np.random.default_rng(3)\n"
        "cs = {f'p{i}': Component(f'p{i}', 'package', size=int(rng.integers(1, 10**8)),"
        " change_probability=float(rng.random())) for i in range(400)}\n"
        "print(json.dumps(pack(list(set(cs.values())), 32).to_json()))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).parent.parent,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1 and json.loads(outputs.pop())["layers"]


def test_certain_changes_are_capped_alike() -> None:
    # p = 1 and p just below it are the same to the cost model (P_CAP): pack
    # groups them alike, and its figures are make_plan's for its layers (the
    # floor, sum size * p, takes p as it is).
    def comps(p: float) -> list[Component]:
        return [
            Component("initramfs", "volatile", size=40_000_000, change_probability=p),
            Component("dpkg", "volatile", size=2_000_000, change_probability=1.0),
            *(Component(f"p{i}", "package", size=10_000 * i, change_probability=1.0) for i in range(6)),
            *(Component(f"q{i}", "package", size=10_000 * i, change_probability=0.01) for i in range(6)),
        ]

    plans = [pack(comps(p), 5) for p in (1.0, P_CAP, 1.0 - 1e-16)]
    assert plans[0].layers == plans[1].layers == plans[2].layers
    again = make_plan(comps(1.0), plans[0].groups(), 5, gaps=DEFAULT_GAPS)
    assert again == plans[0]
    assert math.isfinite(plans[0].expected_update_bytes)
    assert all(0.0 <= layer.change_probability <= 1.0 for layer in plans[0].layers)


def test_pack_of_nothing_and_of_one_layer() -> None:
    assert pack([], 4).layers == ()
    comps = [Component(f"p{i}", "package", size=i + 1, change_probability=0.1) for i in range(5)]
    plan = pack(comps, 2)
    assert plan.groups() == [tuple(c.name for c in comps)]
    assert plan.max_layers == 2 and plan.reserved_layers == 1
    assert pack(comps, 4, reserved_layers=2).reserved_layers == 2
    assert len(pack(comps, 4, reserved_layers=2).layers) <= 2
