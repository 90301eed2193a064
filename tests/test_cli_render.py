"""Text for people (encapsulate/cli/render.py): the mapping and the plan as
tables with their summary lines, and one line for the image a build wrote,
on values built here (and one small real build)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from chunker import Layer, Plan
from encapsulate import BuildConfig, BuildResult, Comparison, RootfsOrigin, build_image
from encapsulate.cli.render import format_mapping, format_plan, format_result, json_text
from mapping import Component, Mapping
from tests.images import EPOCH
from tests.sample import blob

KiB, MiB = 1 << 10, 1 << 20

COMPONENTS = (
    Component(
        "linux-signed-amd64",
        "package",
        ("linux-image-6.1.0-1-amd64",),
        "6.1.8-1",
        size=3 * MiB,
        files=10,
        change_probability=0.25,
    ),
    Component(
        "glibc",
        "package",
        ("libc-bin", "libc6:amd64", "locales", "libc-l10n"),
        "2.41-12",
        size=1536 * KiB,
        files=12,
        change_probability=0.0713,
    ),
    Component("volatile:initramfs", "volatile", (), size=MiB, files=1, change_probability=1.0),
    Component(
        "unpackaged:usr/lib/a-directory-with-a-rather-long-name-indeed",
        "unpackaged",
        size=512,
        files=3,
        change_probability=0.0,
    ),
)


def test_format_mapping() -> None:
    mapping = Mapping("t", "usr/share/dpkg/database", dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC), COMPONENTS)
    # Three packages shown and +N for the rest, "-" for none, names cut at 48
    # characters, sizes and counts right-aligned; the kinds by their share of
    # the 5.5 MiB, largest first.
    assert format_mapping(mapping).splitlines() == [
        "COMPONENT                                         KIND        PACKAGES"
        "                              SIZE  FILES  P(WEEK)",
        "linux-signed-amd64                                package     linux-image-6.1.0-1-amd64"
        "          3.0 MiB     10    0.250",
        "glibc                                             package     libc-bin, libc6:amd64, locales +1"
        "  1.5 MiB     12    0.071",
        "volatile:initramfs                                volatile    -"
        "                                  1.0 MiB      1    1.000",
        "unpackaged:usr/lib/a-directory-with-a-rather-lo…  unpackaged  -"
        "                                    512 B      3    0.000",
        "",
        "4 components, 5.5 MiB of unique content (package 81.8%, volatile 18.2%, unpackaged 0.0%); "
        "dpkg database: usr/share/dpkg/database",
        "change probabilities relative to 2026-06-01",
    ]


def test_format_mapping_without_a_database_a_date_or_content() -> None:
    # A tree of empty files: nothing to share out, and no division by zero.
    empty = (Component("unpackaged", "unpackaged", size=0, files=2, change_probability=0.2),)
    assert format_mapping(Mapping("t", None, None, empty)).splitlines() == [
        "COMPONENT   KIND        PACKAGES  SIZE  FILES  P(WEEK)",
        "unpackaged  unpackaged  -          0 B      2    0.200",
        "",
        "1 components, 0 B of unique content (unpackaged 0.0%); dpkg database: none",
    ]


def test_names_are_printed_escaped() -> None:
    """A component or package name holding a line break or an escape
    sequence (a tree's xattr, a stranger's dpkg database): one row, escaped."""
    odd = (
        Component(
            "evil\nOK",
            "package",
            ("\x1b[31mred",),
            size=KiB,
            files=1,
            change_probability=0.5,
        ),
    )
    lines = format_mapping(Mapping("t", "var/lib/\x1b]0;x\x07dpkg", None, odd)).splitlines()
    assert lines[1] == r"evil\nOK   package  \x1b[31mred  1.0 KiB      1    0.500", lines
    assert lines[-1].endswith(r"dpkg database: var/lib/\x1b]0;x\x07dpkg") and len(lines) == 4
    assert all(line.isprintable() for line in lines)


def test_format_plan() -> None:
    plan = Plan(
        8,
        (
            Layer(("linux-signed-amd64",), 3 * MiB, 0.25),
            Layer(("a", "b", "c", "d", "e"), 1536 * KiB, 0.5),
        ),
        expected_update_bytes=1.5 * MiB,
        floor_bytes=1.0 * MiB,
    )
    # Four components shown and +N; E(BYTES) is size x P(WEEK); the ratio to the floor.
    assert format_plan(plan).splitlines() == [
        "LAYER  COMPONENTS             SIZE  P(WEEK)   E(BYTES)",
        "    1  linux-signed-amd64  3.0 MiB    0.250  768.0 KiB",
        "    2  a, b, c, d +1       1.5 MiB    0.500  768.0 KiB",
        "",
        "2 content layers + 1 metadata = 3 of at most 8; expected update 1.5 MiB per week "
        "(floor 1.0 MiB, 1.50x)",
    ]
    still = Plan(4, (Layer(("x",), 100, 0.0),), expected_update_bytes=0.0, reserved_layers=2)
    assert format_plan(still).splitlines()[-1] == (
        "1 content layers + 2 metadata = 3 of at most 4; expected update 0 B per week (floor 0 B, 1.00x)"
    )


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    """A small tree written to an OCI layout as ``oci:DIR:one``."""
    root = tmp_path_factory.mktemp("render")
    (root / "tree/usr/bin").mkdir(parents=True)
    (root / "tree/usr/bin/tool").write_bytes(blob("tool", 300_000))
    (root / "tree/usr/bin/other").write_bytes(b"#!/bin/sh\n")
    config = BuildConfig(RootfsOrigin(str(root / "tree")), f"oci:{root}/out:one", epoch=EPOCH, max_layers=3)
    return root / "out", build_image(config)


def test_format_result(small_build: tuple[Path, BuildResult]) -> None:
    layout, result = small_build
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    sizes = [layer["size"] for layer in manifest["layers"]]
    assert result.image is not None and len(sizes) == len(result.image.layers)
    # The destination, the manifest digest, the layer count and their compressed size.
    total = sum(sizes)
    assert 300_000 < total < 400_000
    line = f"oci:{layout}:one: {entry['digest']}, {len(sizes)} layers, {total / KiB:.1f} KiB"
    assert format_result(result) == line
    # The same tree again: every layer is in the layout already, and it says so.
    again = build_image(dataclasses.replace(result.config, destination=f"oci:{layout}:two"))
    assert format_result(again) == (
        f"oci:{layout}:two: {entry['digest']}, {len(sizes)} layers, {total / KiB:.1f} KiB "
        f"({len(sizes)} already in the layout)"
    )
    # With a comparison, a second line; a dry run writes no image, so only that.
    comparison = Comparison(
        "oci:/old:1", reused_layers=1, layers=3, download_bytes=2 * MiB, total_bytes=3 * MiB
    )
    compared = dataclasses.replace(result, comparison=comparison)
    compared_line = "compared with oci:/old:1: 1 of 3 layers reused, download 2.0 MiB of 3.0 MiB"
    assert format_result(compared).splitlines() == [line, compared_line]
    assert format_result(dataclasses.replace(compared, image=None)) == compared_line
    assert format_result(dataclasses.replace(result, image=None)) == ""


def test_json_text() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"name": "caf\xe9 \x1b[2J\nline"}}
    out = json_text(value) + "\n"
    assert out == json.dumps(value, indent=1) + "\n"
    assert json.loads(out) == value
    # Keys in the order given, one space of indent, control characters and
    # non-ASCII escaped: nothing from an image reaches the terminal raw.
    assert out.startswith('{\n "b": [\n  1,')
    assert "\x1b" not in out and "\\u001b[2J\\nline" in out and "caf\\u00e9" in out
