"""What a client holding one image downloads to get another
(``encapsulate.tools.diff``): NEW's blobs OLD lacks, each once; their
components' content; the components changed; the table."""

from __future__ import annotations

import json

from encapsulate.oci.labels import COMPONENTS_LABEL, PLAN_LABEL
from encapsulate.tools.diff import compare, format_diff
from tests.test_tools_model import image


def _labels(plan: list[list[str]], components: dict[str, tuple[int, str]]) -> dict[str, str]:
    entries = {
        name: {"size": size, "change_probability": 0.1, "version": version, "digest": f"{name}-{version}"}
        for name, (size, version) in components.items()
    }
    return {PLAN_LABEL: json.dumps(plan), COMPONENTS_LABEL: json.dumps(entries)}


def test_compare() -> None:
    old = image(_labels([["a"], ["b"]], {"a": (100, "1"), "b": (200, "1")}), [10, 20, 30])
    # NEW: the same first two blobs (by digest: same sizes, same order), b changed, c added.
    new_labels = _labels([["a"], ["b", "c"]], {"a": (100, "1"), "b": (210, "2"), "c": (5, "1")})
    new = image(new_labels, [10, 20, 40])
    d = compare(old, new, read_layers=False)
    assert d.reused == (True, True, False)
    # Layer 3 differs in size, so in digest: its 40 bytes are downloaded.
    assert (d.download_bytes, d.total_bytes) == (40 - 0, 70)
    assert d.download_content_bytes == 210 + 5
    assert d.ideal_bytes is None  # the layers were not read
    assert d.changes is not None
    assert [(c.name, c.status) for c in d.changes] == [("b", "changed"), ("c", "added")]
    out = d.to_json()
    assert (out["reused_layers"], out["new_layers"], out["download_bytes"]) == (2, 1, 40)
    assert out["components"]["changed"][0]["new_version"] == "2"
    text = format_diff(d)
    assert "download 40 B of 70 B: 1 of 3 layers new, 2 reused" in text
    assert "changed 1: b 1 -> 2" in text and "added 1: c" in text
    assert "ideal unknown: layers not read (drop --no-layers)" in text


def test_same_image_downloads_nothing() -> None:
    one = image(_labels([["a"]], {"a": (100, "1")}), [10, 20])
    d = compare(one, one)
    assert d.reused == (True, True) and d.download_bytes == 0 and d.ideal_bytes == 0
    assert d.download_content_bytes == 0 and d.changes == ()
    assert "components: none changed" in format_diff(d)


def test_without_labels() -> None:
    d = compare(image({}, [10]), image({}, [11, 12]), read_layers=False)
    assert d.changes is None and d.download_content_bytes is None and d.download_bytes == 23
