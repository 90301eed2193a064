"""The frozen corpus grows by itself: each refresh of a security-following
build is kept beside the earlier ones, and builds at least five days apart
are real update pairs."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benches import update_cost as uc
from benches import update_pairs as up
from chunker.cost import make_plan


def small_index(corpus: dict[str, Any], built_at: str, build: str) -> dict[str, Any]:
    """The server set's frozen trixie-updated index (from ``corpus``, the
    repository's frozen file) cut to 500 rows, as built at ``built_at`` under
    the name ``build``."""
    data: dict[str, Any] = copy.deepcopy(corpus["builds"]["trixie-updated"])
    data["files"] = {k: v[:500] for k, v in data["files"].items()}
    data["build"] = build
    data["build_info"] = dict(data["build_info"], built_at=built_at, build=build)
    return data


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A frozen directory and a tree cache of their own; yields the
    repository's frozen server file, read before the directory moves."""
    real = copy.deepcopy(up._frozen("server"))
    monkeypatch.setattr(up, "FROZEN_DIR", tmp_path / "data")
    monkeypatch.setenv("DEBCHUNK_CACHE", str(tmp_path / "cache"))
    up._frozen.cache_clear()
    yield real
    up._frozen.cache_clear()


def cache_index(data: dict[str, Any]) -> None:
    path = up.index_path("server", data["build"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


def test_refreshed_builds_are_kept_and_paired_when_five_days_apart(corpus: dict[str, Any]) -> None:
    cache_index(small_index(corpus, "2026-12-01T00:00:00+00:00", "trixie-updated"))
    up.freeze("server")
    assert up.frozen_builds("server") == ["trixie-updated"]
    assert up.week_apart_pairs("server") == []

    # Three days later: kept, but not yet a week-apart pair.
    cache_index(small_index(corpus, "2026-12-04T09:30:00+00:00", "trixie-updated"))
    up.freeze("server")
    assert up.frozen_builds("server") == ["trixie-updated", "trixie-updated@20261201T0000"]
    assert up.week_apart_pairs("server") == []

    # Freezing the same build again adds nothing.
    up.freeze("server")
    assert up.frozen_builds("server") == ["trixie-updated", "trixie-updated@20261201T0000"]

    # Seven days after the first, four after the second: one pair.
    cache_index(small_index(corpus, "2026-12-08T10:00:00+00:00", "trixie-updated"))
    up.freeze("server")
    assert up.frozen_builds("server") == [
        "trixie-updated",
        "trixie-updated@20261201T0000",
        "trixie-updated@20261204T0930",
    ]
    pair = ("week-apart-trixie-20261201-20261208", "trixie-updated@20261201T0000", "trixie-updated")
    assert up.week_apart_pairs("server") == [pair]
    assert up.pairs("server", frozen=True) == [pair]  # no trixie build frozen here: no point update
    old = up.load_index("server", pair[1], frozen=True)
    new = up.load_index("server", pair[2], frozen=True)
    assert old.build_info is not None and old.build_info["built_at"].startswith("2026-12-01")
    assert new.build_info is not None and new.build_info["built_at"].startswith("2026-12-08")
    assert old.file_count == new.file_count == 500


def test_other_builds_are_replaced_and_uncached_ones_kept(corpus: dict[str, Any]) -> None:
    cache_index(small_index(corpus, "2026-12-01T00:00:00+00:00", "trixie"))
    cache_index(small_index(corpus, "2026-12-01T00:00:00+00:00", "trixie-updated"))
    up.freeze("server")
    cache_index(small_index(corpus, "2026-12-09T00:00:00+00:00", "trixie"))
    up.index_path("server", "trixie-updated").unlink()
    up.freeze("server")
    # trixie is not a security-following build: replaced, no history.
    assert up.frozen_builds("server") == ["trixie", "trixie-updated"]
    info = up.load_index("server", "trixie", frozen=True).build_info
    assert info is not None and info["built_at"].startswith("2026-12-09")
    # trixie-updated had no cached index this time: the frozen one stays.
    info = up.load_index("server", "trixie-updated", frozen=True).build_info
    assert info is not None and info["built_at"].startswith("2026-12-01")
    assert up.pairs("server", frozen=True) == [("point-update", "trixie", "trixie-updated")]


def test_the_repository_corpus_has_no_pair_named_twice() -> None:
    for set_name in up.SETS:
        names = [p[0] for p in up.pairs(set_name, frozen=True)]
        assert len(names) == len(set(names)), set_name


def test_dated_names_sort_by_time() -> None:
    t = dt.datetime(2026, 12, 1, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert up.dated_name("bookworm-updated", t) == "bookworm-updated@20261201T2159"


def test_the_component_bound_is_below_every_plan_of_the_components() -> None:

    old = up.load_index("server", "bookworm", frozen=True)
    new = up.load_index("server", "bookworm-updated", frozen=True)
    bound = uc.component_bound(old, new)
    for budget in (16, 64):
        case = uc.run_pair(old, new, "server", "bookworm-point-update", budget)
        assert case.bound == bound
        assert case.ideal <= bound <= case.row(uc.OURS).download
        assert case.ideal <= case.finest <= case.single
    # With a layer for every component and no prior, the plan reaches the bound.
    before = uc.split_index(old)
    groups = [[c.name] for c in before.components]
    after = uc.split_index(new, make_plan(before.components, groups, 2, 0))
    alone = up.download_bytes(before, groups, after, [[c.name] for c in after.components])
    assert alone == bound
    # A plan of one layer downloads everything (each component's contents
    # counted in it: at least the tree's distinct contents).
    assert up.download_bytes(
        before, [[c.name for c in before.components]], after, [[c.name for c in after.components]]
    ) >= up.single_layer_bytes(old, new)


def test_held_out_sets_stay_out_of_the_corpus() -> None:
    """The held-out sets check planning choices on trees the corpus never
    saw: "all" never names them, and they are never frozen."""
    assert set(up.HELD_OUT) <= set(up.SETS)
    assert not set(up.HELD_OUT) & set(up.corpus_sets())
    for set_name in up.HELD_OUT:
        assert not up.frozen_path(set_name).exists()
        assert up.pairs(set_name, frozen=True) == []
        with pytest.raises(SystemExit) as refused:
            up.main(["freeze", "--set", set_name])
        assert refused.value.code == 2
