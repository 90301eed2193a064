"""The model-time gaps of the corpus's pairs (``benches.calibration``): what
the default update gaps are set from."""

from __future__ import annotations

import numpy as np
import pytest

from benches.calibration import calibrate, expected_changes, fit_gap


def test_the_fitted_gap_gives_back_the_changed_count() -> None:
    p = np.array([0.001, 0.01, 0.05, 0.2, 0.6, 0.9])
    for changed in (1, 2, 3, 5):
        gap = fit_gap(p, changed)
        assert gap is not None
        assert expected_changes(p, gap) == pytest.approx(changed, rel=1e-6)
    # A week of a weekly model is its probabilities' sum.
    assert expected_changes(p, 1.0) == pytest.approx(p.sum())
    assert fit_gap(p, 0) is None
    assert fit_gap(np.array([1e-9]), 1) is None  # out of reach within ten years


def test_point_updates_are_longer_gaps_than_week_apart_pairs() -> None:
    """On the frozen server set: the bookworm point update spans many model
    weeks (its two builds are months apart), the trixie point update about
    one, and the real week-apart pairs less than one."""
    fits, bands = calibrate(["server"])
    gap = {f.pair: f.gap_weeks for f in fits}
    assert "rebuild" not in gap
    week_apart = [g for pair, g in gap.items() if pair.startswith("week-apart-")]
    assert week_apart and all(g is not None and g < 1.0 for g in week_apart)
    assert gap["point-update"] is not None and 0.5 < gap["point-update"] < 3.0
    assert gap["bookworm-point-update"] is not None and gap["bookworm-point-update"] > 4.0
    # Every package of each pair is in one band; the changed ones add up.
    changed = {f.pair: f.changed for f in fits}
    assert (
        sum(b.changed for b in bands if b.pair_kind == "bookworm-point-update")
        == changed["bookworm-point-update"]
    )
