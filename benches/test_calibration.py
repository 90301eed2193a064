"""The model-time gaps of the corpus's pairs (``benches.calibration``): what
the default update gaps are set from."""

from __future__ import annotations

import numpy as np
import pytest

from benches.calibration import FEATURES, calibrate, expected_changes, fit_gap, quiet_features, roc_auc


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


def test_roc_auc_counts_ties_half() -> None:
    positive = np.array([True, False, True, False])
    assert roc_auc(np.array([4.0, 1.0, 3.0, 2.0]), positive) == 1.0
    assert roc_auc(np.array([1.0, 4.0, 2.0, 3.0]), positive) == 0.0
    assert roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), positive) == 0.5
    # One positive above one negative and tied with the other: (1 + 0.5) / 2.
    assert roc_auc(np.array([2.0, 1.0]), np.array([True, False])) == 1.0
    assert roc_auc(np.array([2.0, 2.0, 1.0]), np.array([True, False, False])) == 0.75
    assert roc_auc(np.array([1.0, 2.0]), np.array([True, True])) is None


def test_the_quiet_packages_features_are_measured_on_every_pair_kind() -> None:
    found = {q.pair_kind: q for q in quiet_features(["server"])}
    point = found["bookworm-point-update"]
    assert point.packages > 50 and point.changed > 0
    assert set(point.auc) == set(FEATURES)
    assert all(a is None or 0.0 <= a <= 1.0 for a in point.auc.values())
