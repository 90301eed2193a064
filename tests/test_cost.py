"""``chunker.cost``: the probability cap, the yearly change rate, the cost of a
grouping (``make_plan``) and a plan's layers merged again (``refit``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chunker import (
    DEFAULT_GAPS,
    P_CAP,
    ChunkerError,
    Layer,
    Plan,
    changes_per_year,
    floor_bytes,
    make_plan,
    pack,
    refit,
)
from chunker.cost import Events, log_keep_probabilities, log_keep_probability
from encapsulate.build import contentmeta
from mapping import Component
from mapping.changelog import probability

# --------------------------------------------------------------------------- the cap


def test_cap_keeps_log_keep_finite_at_certainty() -> None:
    assert P_CAP < 1.0
    assert math.isfinite(math.log1p(-P_CAP))
    assert log_keep_probability(1.0) == math.log1p(-P_CAP)
    assert log_keep_probability(2.0) == log_keep_probability(1.0)  # above 1: the cap too
    assert log_keep_probability(0.0) == 0.0
    assert log_keep_probability(-0.5) == 0.0
    assert log_keep_probability(0.25) == math.log1p(-0.25)
    ps = [-1.0, 0.0, 1e-9, 0.25, 0.5, P_CAP, 1.0, 3.0]
    assert log_keep_probabilities(ps).tolist() == [log_keep_probability(p) for p in ps]
    assert np.isfinite(Events.of(np.array([1.0, 1.0]), [-1, 0]).own).all()


def test_a_certain_change_costs_its_whole_layer() -> None:
    comps = [
        Component("v", "volatile", size=1000, change_probability=1.0),
        Component("a", "package", size=10, change_probability=0.0),
    ]
    plan = make_plan(comps, [["v", "a"]], 4)
    assert plan.layers[0].change_probability == pytest.approx(1.0)
    assert plan.expected_update_bytes == pytest.approx(1010.0)
    assert math.isfinite(plan.expected_update_bytes)


# --------------------------------------------------------------------------- changes per year


@pytest.mark.parametrize("rate", [0.5, 1.0, 4.0, 12.5, 52.0, 100.0, 365.5])
def test_changes_per_year_inverts_the_mapping(rate: float) -> None:
    assert changes_per_year(probability(rate)) == pytest.approx(rate, rel=1e-9)


@given(st.floats(0.0, 1.0))
def test_changes_per_year_is_finite_and_never_negative(p: float) -> None:
    r = changes_per_year(p)
    assert math.isfinite(r) and r >= 0.0 and math.copysign(1.0, r) == 1.0
    assert probability(r) == pytest.approx(min(p, P_CAP), abs=1e-12)


def test_changes_per_year_ends() -> None:
    assert changes_per_year(0.0) == 0.0
    assert changes_per_year(1.0) == pytest.approx(-365.0 / 7.0 * math.log1p(-P_CAP))
    assert changes_per_year(1.0) == changes_per_year(2.0)
    # A week apart every week: 52 changes a year and a bit, not 52.
    assert changes_per_year(1.0 - math.exp(-1.0)) == pytest.approx(365.0 / 7.0)


def test_contentmeta_change_frequency_is_the_yearly_rate() -> None:
    comps = [Component(f"p{r}", "package", change_probability=probability(r)) for r in (0.5, 4.0, 100.0)]
    comps.append(Component("v", "volatile", change_probability=1.0))
    frequency = {e["name"]: e["change_frequency"] for e in contentmeta(comps)}
    assert frequency == {"p0.5": 0, "p4.0": 4, "p100.0": 100, "v": round(changes_per_year(1.0))}


# --------------------------------------------------------------------------- make_plan


def test_cost_model_and_floor() -> None:
    comps = [
        Component("a", "package", size=100, change_probability=0.5),
        Component("b", "package", size=50, change_probability=0.1),
    ]
    together = make_plan(comps, [["a", "b"]], 4)
    assert together.groups() == [("a", "b")] and together.layers[0].size == 150
    assert together.layers[0].change_probability == pytest.approx(1 - 0.5 * 0.9)
    assert together.expected_update_bytes == pytest.approx(150 * (1 - 0.5 * 0.9))
    assert together.floor_bytes == pytest.approx(100 * 0.5 + 50 * 0.1)
    apart = make_plan(comps, [["b"], ["a"]], 4, reserved_layers=2)
    assert apart.expected_update_bytes == pytest.approx(apart.floor_bytes)
    assert apart.groups() == [("b",), ("a",)] and apart.reserved_layers == 2
    assert floor_bytes(np.array([100.0, 50.0]), np.array([0.5, 0.1])) == pytest.approx(55.0)


def test_make_plan_rejects_bad_groups() -> None:
    comps = [Component("a", "package", size=1), Component("b", "package", size=1)]
    assert make_plan(comps, [["a"], [], ["b"]], 4).groups() == [("a",), ("b",)]
    with pytest.raises(ChunkerError, match="more than one group"):
        make_plan(comps, [["a"], ["a", "b"]], 4)
    with pytest.raises(ChunkerError, match="'c'"):
        make_plan(comps, [["a", "c"]], 4)


# --------------------------------------------------------------------------- refit

SPLIT = [
    Component("x", "package", size=100, change_probability=0.5),
    Component("x:data", "package", size=300, change_probability=0.2, part_of="x"),
    Component("y", "package", size=50, change_probability=0.1),
    Component("z", "package", size=10, change_probability=0.3),
]


def test_refit_counts_a_shared_change_once() -> None:
    # x:data changes only with x's upstream version: merged into x's layer, the
    # layer changes as often as x (0.5), not 1 - 0.5 * 0.8 = 0.6.
    plan = make_plan(SPLIT, [["x"], ["x:data"], ["y"], ["z"]], 8)
    merged = refit(plan, SPLIT, [1])
    assert merged.groups() == [("x", "x:data"), ("y",), ("z",)]
    assert merged.layers[0].change_probability == pytest.approx(0.5)
    assert merged.layers[0].size == 400
    assert merged.expected_update_bytes == pytest.approx(400 * 0.5 + 50 * 0.1 + 10 * 0.3)
    assert merged == make_plan(SPLIT, merged.groups(), 8)
    # Parts of no package are independent.
    assert refit(plan, SPLIT, [3]).layers[2].change_probability == pytest.approx(1 - 0.9 * 0.7)


def test_refit_placement() -> None:
    comps = [Component(f"c{i}", "package", size=i + 1, change_probability=0.1) for i in range(6)]
    plan = make_plan(comps, [[c.name] for c in comps], 9, reserved_layers=2)
    # Into the nearest kept layer before; the first ones into the first kept after.
    assert refit(plan, comps, [2, 3, 5]).groups() == [("c0",), ("c1", "c2", "c3"), ("c4", "c5")]
    assert refit(plan, comps, iter([0, 1, 4])).groups() == [("c0", "c1", "c2"), ("c3", "c4"), ("c5",)]
    # Every layer empty: all in one.
    assert refit(plan, comps, range(6)).groups() == [tuple(c.name for c in comps)]
    merged = refit(plan, comps, [5])
    assert (merged.max_layers, merged.reserved_layers) == (9, 2)
    assert merged.floor_bytes == plan.floor_bytes
    assert refit(plan, comps, []) is plan
    with pytest.raises(ChunkerError, match="layer 6"):
        refit(plan, comps, [6])


def test_refit_of_a_packed_plan_keeps_the_cost_model() -> None:
    comps = [
        *SPLIT,
        *(Component(f"p{i}", "package", size=1000 * (i + 1), change_probability=0.01 * i) for i in range(20)),
    ]
    plan = pack(comps, 8)
    merged = refit(plan, comps, [0, len(plan.layers) - 1])
    assert len(merged.layers) == len(plan.layers) - 2
    assert merged == make_plan(comps, merged.groups(), 8, gaps=DEFAULT_GAPS)
    assert merged.update_gaps == plan.update_gaps == DEFAULT_GAPS.describe()
    assert merged.expected_update_bytes >= plan.expected_update_bytes


def test_refit_keeps_components_the_tree_lacks() -> None:
    # A previous build's plan can name components this tree does not have:
    # they hold nothing, so add no bytes and no change.
    plan = Plan(
        6,
        (Layer(("x", "x:data"), 400, 0.5), Layer(("ghost",), 0, 0.9), Layer(("y", "z"), 60, 0.37)),
        0.0,
    )
    merged = refit(plan, SPLIT, [1])
    assert merged.groups() == [("ghost", "x", "x:data"), ("y", "z")]
    assert merged.layers[0].size == 400
    assert merged.layers[0].change_probability == pytest.approx(0.5)
    assert merged.floor_bytes == pytest.approx(100 * 0.5 + 300 * 0.2 + 50 * 0.1 + 10 * 0.3)
