"""benches.database_layer plans with the database where it says, and only for its block."""

from __future__ import annotations

import importlib

import pytest

from benches import database_layer, update_cost
from mapping import Component

_PACK = importlib.import_module("chunker.pack")

COMPONENTS = [
    Component("volatile:initramfs", "volatile", size=40_000_000, change_probability=1.0),
    Component("volatile:dpkg", "volatile", size=2_000_000, change_probability=1.0 - 1e-7),
    Component("volatile", "volatile", size=100_000, change_probability=1.0),
    *(Component(f"stable{i}", "package", size=10_000_000, change_probability=0.001) for i in range(4)),
    *(Component(f"busy{i}", "package", size=100_000 * (i + 1), change_probability=0.6) for i in range(2)),
]


def _database_layer(placement: str) -> tuple[str, ...]:
    with database_layer.placed(placement) as strategy:
        plan = strategy(COMPONENTS, 6, None, {})
    return next(layer.components for layer in plan.layers if database_layer.DATABASE in layer.components)


def test_each_placement_puts_the_database_where_it_says() -> None:
    assert _database_layer("own layer") == ("volatile:dpkg",)
    assert _database_layer("with the initramfs") == ("volatile", "volatile:dpkg", "volatile:initramfs")
    assert _database_layer("with packages") == ("busy0", "volatile:dpkg")


def test_the_packer_and_the_strategies_come_back() -> None:
    always, strategies = _PACK.ALWAYS, dict(update_cost.STRATEGIES)
    with database_layer.placed("with the initramfs"):
        assert always > _PACK.ALWAYS
        assert list(update_cost.STRATEGIES) == [update_cost.OURS]
    assert (always, strategies) == (_PACK.ALWAYS, update_cost.STRATEGIES)
    with pytest.raises(ValueError, match="unknown placement"):
        database_layer.placed("nowhere").__enter__()


def test_a_set_without_frozen_builds_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        database_layer.main(["--sets", "no-such-set"])
    assert exit_.value.code == 2
    assert "no-such-set" in capsys.readouterr().err
