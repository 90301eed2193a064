"""The benchmark suite's verdicts, and the frozen update pairs it measures."""

from __future__ import annotations

from benches.suite import Figure
from benches.update_pairs import BUILDS, load_index


def judged(**kw: object) -> str:
    figure = Figure(**{"bench": "b", "measure": "m", "unit": "x", **kw})  # type: ignore[arg-type]
    figure.judge()
    return figure.status


def test_targets_known_gaps_and_exact_figures() -> None:
    assert judged(value=0.9, target=1.0) == "ok"
    assert judged(value=1.9, target=1.0) == "missed"
    assert judged(value=2.1, target=1.0) == "REGRESSION"
    # A target not reached yet fails only at twice the figure last measured.
    assert judged(value=3.0, target=0.35, known_gap=1.6) == "missed (known gap)"
    assert judged(value=3.3, target=0.35, known_gap=1.6) == "REGRESSION"
    # Exact figures may not get worse at all.
    assert judged(value=100.0, target=None, exact=True, reference=100.0) == "info"
    assert judged(value=100.001, target=None, exact=True, reference=100.0) == "REGRESSION"
    assert judged(value=99.0, target=None, exact=True, reference=100.0) == "info (better than reference)"
    assert judged(value=1.0, target=None) == "info"


def test_frozen_pairs_load() -> None:
    for build in BUILDS:
        index = load_index("server", build, frozen=True)
        assert index.file_count > 10_000 and len(index.components) > 100
        # Content ids are cut to 64 bits; symlinks keep their target.
        assert all(len(c) == 16 or c.startswith("symlink:") for c in index.content_ids)
