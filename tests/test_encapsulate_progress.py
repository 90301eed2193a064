"""What a build reports as it goes (encapsulate/progress.py): the ``Step``s
``build_image`` gives its ``progress`` callback, phase by phase, each phase
ending with one finished step, with the counts a person is shown.
(tests/test_progress.py draws them: encapsulate/cli/progress.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from encapsulate import BuildConfig, BuildResult, RootfsOrigin, build_image
from encapsulate.progress import Step
from tests.images import EPOCH
from tests.sample import blob

CONTENT = {"usr/bin/tool": blob("tool", 300_000), "usr/bin/other": b"#!/bin/sh\n", "etc/hostname": b"box\n"}
# The root, usr, usr/bin, etc and the three files.
ENTRIES = 7


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "tree"
    for path, data in CONTENT.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def build(tree: Path, destination: str, **fields: object) -> tuple[BuildResult, list[Step]]:
    steps: list[Step] = []
    config = BuildConfig(RootfsOrigin(str(tree)), destination, epoch=EPOCH, max_layers=4, **fields)  # type: ignore[arg-type]
    return build_image(config, progress=steps.append), steps


def phases(steps: list[Step]) -> list[str]:
    """The phases in the order they began; each ran once, its steps together,
    and ended with its one finished step."""
    order: list[str] = []
    for step in steps:
        if not order or order[-1] != step.phase:
            assert step.phase not in order, f"{step.phase} began twice"
            order.append(step.phase)
    for phase in order:
        mine = [s for s in steps if s.phase == phase]
        assert mine[-1].finished and not any(s.finished for s in mine[:-1]), phase
    return order


def test_a_build_reports_mapping_planning_and_writing(tree: Path, tmp_path: Path) -> None:
    result, steps = build(tree, f"oci:{tmp_path}/img:one")
    assert result.image is not None
    assert phases(steps) == ["mapping", "planning", "writing"]
    by_phase = {p: [s for s in steps if s.phase == p] for p in ("mapping", "planning", "writing")}
    # Mapping: entries read and the bytes of their content, once done.
    assert by_phase["mapping"][0] == Step("mapping")
    assert by_phase["mapping"][-1] == Step(
        "mapping", ENTRIES, ENTRIES, sum(map(len, CONTENT.values())), finished=True
    )
    # Planning: the content layers of the plan.
    layers = len(result.plan.layers)
    assert by_phase["planning"] == [Step("planning"), Step("planning", layers, layers, finished=True)]
    # Writing: layers done of all the image's (the metadata layer too), never
    # going back, the uncompressed bytes done of the content's.
    writing = by_phase["writing"]
    count = len(result.image.layers)
    assert count == layers + 1
    assert all(s.total == count for s in writing)
    assert writing[0].done == 0 and writing[0].bytes_done == 0
    assert [s.done for s in writing] == sorted(s.done for s in writing)
    assert [s.bytes_done for s in writing] == sorted(s.bytes_done for s in writing)
    last = writing[-1]
    assert last.done == count and last.taken == 0
    assert last.bytes_total == sum(layer.size for layer in result.plan.layers) == 300_000 + 10 + 4
    # Every byte of content was written (and the tar headers around it).
    assert last.bytes_done >= last.bytes_total


def test_layers_taken_are_counted(tree: Path, tmp_path: Path) -> None:
    first, _ = build(tree, f"oci:{tmp_path}/img:one")
    assert first.image is not None
    _, steps = build(tree, f"oci:{tmp_path}/img:two")
    last = [s for s in steps if s.phase == "writing"][-1]
    assert last.finished and last.done == last.taken == len(first.image.layers)


def test_a_dry_run_stops_after_planning(tree: Path, tmp_path: Path) -> None:
    result, steps = build(tree, f"oci:{tmp_path}/img", dry_run=True)
    assert result.image is None and phases(steps) == ["mapping", "planning"]
    assert not (tmp_path / "img").exists()


def test_delivery_is_reported_for_other_transports(tree: Path, tmp_path: Path) -> None:
    _, steps = build(tree, f"oci-archive:{tmp_path}/img.tar")
    assert phases(steps) == ["mapping", "planning", "writing", "delivery"]
    assert [s for s in steps if s.phase == "delivery"] == [Step("delivery"), Step("delivery", finished=True)]
    assert (tmp_path / "img.tar").stat().st_size > 300_000


def test_a_step_is_a_value() -> None:
    step = Step("writing", 1, 3, 10, 30, 1)
    assert step == Step("writing", done=1, total=3, bytes_done=10, bytes_total=30, taken=1, finished=False)
    assert Step("mapping") == Step("mapping", 0, None, 0, None, 0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.done = 2  # type: ignore[misc]
