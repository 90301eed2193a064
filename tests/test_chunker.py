"""The chunker across its modules: the cost model's shared changes as ``pack``
and ``make_plan`` see them, and ``debchunk plan``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chunker import make_plan, pack
from chunker.cost import Events
from mapping import Component
from tests.conftest import RunCli


def test_package_parts_share_their_upstream_changes() -> None:
    # x:data changes only with x's upstream version, and then x changes too: the
    # two together change as often as x alone.
    comps = [
        Component("x", "package", size=100, change_probability=0.5),
        Component("x:data", "package", size=100, change_probability=0.2, part_of="x"),
        Component("y", "package", size=100, change_probability=0.2),
    ]
    together = make_plan(comps, [["x", "x:data"], ["y"]], 3)
    assert together.layers[0].change_probability == pytest.approx(0.5)
    assert together.expected_update_bytes == pytest.approx(200 * 0.5 + 100 * 0.2)
    # Had they been independent, x:data would cost less beside y (32 against 50);
    # sharing, beside x it costs 100 * (0.5 - 0.2) = 30.
    plan = pack(comps, 3)
    assert sorted(layer.components for layer in plan.layers) == [("x", "x:data"), ("y",)]
    assert plan.expected_update_bytes == pytest.approx(together.expected_update_bytes)
    # The same with a prior plan that must shrink to fit, and for a new data part.
    wide = make_plan(comps, [["x"], ["x:data"], ["y"]], 4)
    assert sorted(layer.components for layer in pack(comps, 3, wide).layers) == [("x", "x:data"), ("y",)]
    first = make_plan(comps[:1] + comps[2:], [["x"], ["y"]], 3)
    assert sorted(layer.components for layer in pack(comps, 3, first).layers) == [("x", "x:data"), ("y",)]
    # The link is what counts, not the name: the same parts unlinked are
    # independent (0.6), and a linked part of any name shares (0.5).
    unlinked = [replace(c, part_of=None) for c in comps]
    assert make_plan(unlinked, [["x", "x:data"], ["y"]], 3).layers[0].change_probability == pytest.approx(0.6)
    renamed = [replace(c, name="x-icons") if c.name == "x:data" else c for c in comps]
    shared = make_plan(renamed, [["x", "x-icons"], ["y"]], 3)
    assert shared.layers[0].change_probability == pytest.approx(0.5)
    assert Events.for_components(comps).partners()[0].tolist() == [1, 0, -1]
    assert Events.of(np.array([0.5, 0.2, 0.2]), [-1, 0, -1]).partners()[0].tolist() == [1, 0, -1]


def test_plan_cli_table_json_and_prior(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "map.json"
    mapping.write_text(run_cli("map", "--rootfs", str(sample_tree), "--json").stdout)
    proc = run_cli("plan", "--mapping", str(mapping), "--max-layers", "6", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["max_layers"] == 6 and len(plan["layers"]) <= 5
    assert {"components", "size", "change_probability"} <= set(plan["layers"][0])
    assert plan["expected_update_bytes"] >= plan["floor_bytes"] > 0
    prior = tmp_path / "plan.json"
    prior.write_text(proc.stdout)
    again = run_cli(
        "plan", "--mapping", str(mapping), "--max-layers", "6", "--prior-plan", str(prior), "--json"
    )
    assert json.loads(again.stdout)["layers"] == plan["layers"]
    table = run_cli("plan", "--rootfs", str(sample_tree), "--max-layers", "6")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["LAYER", "COMPONENTS"]
    assert "of at most 6" in table.stdout
    bad = run_cli("plan", "--mapping", str(tmp_path / "missing.json"))
    assert bad.returncode == 1 and bad.stderr.startswith("debchunk: error: ") and "missing.json" in bad.stderr
    (tmp_path / "junk.json").write_text("{not json")
    bad = run_cli("plan", "--mapping", str(tmp_path / "junk.json"))
    assert bad.returncode == 1 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
    assert run_cli("plan", "--mapping", str(mapping), "--max-layers", "1").returncode == 2
