"""benches.sim_factors undoes what it says, and only for its block."""

from __future__ import annotations

import pytest

from benches import sim_factors, update_cost


@pytest.mark.parametrize("factor", [f for f in sim_factors.FACTORS if sim_factors.FACTORS[f]])
def test_each_factor_names_a_constant_that_exists_and_is_restored(factor: str) -> None:
    settings = sim_factors.FACTORS[factor]
    before = {key: getattr(*key) for key in settings}
    with sim_factors._undone(settings):
        for (module, name), value in settings.items():
            assert getattr(module, name) == value != before[(module, name)]
    assert {key: getattr(*key) for key in settings} == before


def test_the_strategies_come_back() -> None:
    saved = dict(update_cost.STRATEGIES)
    with sim_factors._strategies({"debchunk": saved["debchunk"]}):
        assert list(update_cost.STRATEGIES) == ["debchunk"]
    assert saved == update_cost.STRATEGIES


def test_a_set_without_frozen_builds_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        sim_factors.main(["--sets", "no-such-set"])
    assert exit_.value.code == 2
    assert "no-such-set" in capsys.readouterr().err
