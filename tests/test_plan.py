"""``chunker.plan``: ``Layer`` and ``Plan``, their JSON form, and each tree
entry's layer (``layer_of_entries``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chunker import ChunkerError, Layer, Plan, layer_of_entries

PLAN = Plan(
    8,
    (Layer(("a", "b"), 150, 0.55), Layer(("c",), 10, 0.25)),
    85.0,
    55.0,
    2,
)


def test_json_round_trip() -> None:
    data = json.loads(json.dumps(PLAN.to_json()))
    assert data == {
        "max_layers": 8,
        "reserved_layers": 2,
        "layers": [
            {"components": ["a", "b"], "size": 150, "change_probability": 0.55},
            {"components": ["c"], "size": 10, "change_probability": 0.25},
        ],
        "expected_update_bytes": 85.0,
        "floor_bytes": 55.0,
    }
    assert Plan.from_json(data) == PLAN


def test_from_json_defaults_and_errors() -> None:
    # A plan label holds the grouping only: the rest has defaults.
    plan = Plan.from_json({"layers": [{"components": ["a"]}, {"components": ["b", "c"]}]})
    assert plan == Plan(3, (Layer(("a",), 0, 0.0), Layer(("b", "c"), 0, 0.0)), 0.0)
    with pytest.raises(ChunkerError, match="'layers' list"):
        Plan.from_json({"layers": {}})
    with pytest.raises(ChunkerError, match="'b' is in two layers"):
        Plan.from_json({"layers": [{"components": ["a", "b"]}, {"components": ["b"]}]})
    with pytest.raises(ChunkerError, match="layer"):
        Plan.from_json({"layers": [{"size": 1}]})
    with pytest.raises(ChunkerError, match="plan"):
        Plan.from_json({"layers": [], "max_layers": "many"})


def test_groups_and_layer_index() -> None:
    assert PLAN.groups() == [("a", "b"), ("c",)]
    assert PLAN.layer_index() == {"a": 0, "b": 0, "c": 1}
    back = Plan.from_groups([["b", "a"], ["c"]])
    assert back.groups() == PLAN.groups() and back.max_layers == 3
    assert Plan.from_groups([["a"]], max_layers=64).max_layers == 64


def test_layer_of_entries() -> None:
    names = ["c", "a", "b"]
    owners = np.array([0, 1, 2, -1, 1, -1])
    assert layer_of_entries(PLAN, names, owners).tolist() == [1, 0, 0, -1, 0, -1]
    assert layer_of_entries(PLAN, names, []).tolist() == []
    with pytest.raises(ChunkerError, match="'d' is in no layer"):
        layer_of_entries(PLAN, [*names, "d"], owners)
