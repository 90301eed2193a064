"""Label and annotation names, and debchunk's metadata read back
(``encapsulate.oci.labels``): the names have one home; layer records, the
components label, plan groups and layer probabilities read as written."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import encapsulate.oci.labels as labels
from encapsulate.oci.labels import (
    COMPONENTS_ANNOTATION,
    LAYER_ANNOTATION,
    LAYERS_LABEL,
    ComponentInfo,
    LayerRecord,
    annotation_groups,
    component_changes,
    components_from_label,
    groups_per_layer,
    json_label,
    layer_change_probability,
    layer_records,
    plan_groups,
)
from encapsulate.oci.model import MEDIA_LAYER_GZIP, Descriptor, Digest

REPO = Path(__file__).resolve().parent.parent
NAMES = {
    "OSTREE_COMMIT_LABEL": "ostree.commit",
    "OSTREE_FINAL_DIFFID_LABEL": "ostree.final-diffid",
    "OSTREE_BOOTABLE_LABEL": "ostree.bootable",
    "OSTREE_LINUX_LABEL": "ostree.linux",
    "BOOTC_LABEL": "containers.bootc",
    "OCI_VERSION_LABEL": "org.opencontainers.image.version",
    "VERSION_LABEL": "version",
    "CONTAINER_CMD_KEY": "ostree.container-cmd",
    "REF_NAME_ANNOTATION": "org.opencontainers.image.ref.name",
    "PLAN_LABEL": "org.debchunk.plan",
    "COMPONENTS_LABEL": "org.debchunk.components",
    "LAYERS_LABEL": "org.debchunk.layers",
    "COMPRESSOR_LABEL": "org.debchunk.compressor",
    "LAYER_ANNOTATION": "org.debchunk.layer",
    "COMPONENTS_ANNOTATION": "ostree.components",
}


def _digest(n: int) -> Digest:
    return Digest(f"sha256:{n:064x}")


def test_names() -> None:
    assert {name: getattr(labels, name) for name in NAMES} == NAMES


def _literals(path: Path) -> set[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_names_have_one_home() -> None:
    """No module but labels.py spells a label or annotation name (other
    than "version", a word too common to look for)."""
    names = {v for v in NAMES.values() if v != "version"}
    found = {
        str(path.relative_to(REPO)): sorted(_literals(path) & names)
        for package in ("mapping", "chunker", "encapsulate")
        for path in (REPO / package).rglob("*.py")
        if path.name != "labels.py"
    }
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_layer_records_from_label_and_annotations() -> None:
    a, b, c = _digest(1), _digest(2), _digest(3)
    label = [
        ["k1", a, 10, "sha256:d1", 100, 5],
        None,  # a layer without a key
        ["k2", "sha256:not-a-digest", 10, "d", 1, 1],  # skipped: not a record
        ["short"],
    ]
    layers = [
        Descriptor(MEDIA_LAYER_GZIP, a, 10),
        Descriptor(MEDIA_LAYER_GZIP, b, 20, {LAYER_ANNOTATION: "k3 sha256:d3 300 7"}),
        Descriptor(MEDIA_LAYER_GZIP, c, 30, {LAYER_ANNOTATION: "malformed"}),
    ]
    records = layer_records(layers, {LAYERS_LABEL: json.dumps(label)})
    assert records == [
        LayerRecord("k1", a, 10, "sha256:d1", 100, 5),
        LayerRecord("k3", b, 20, "sha256:d3", 300, 7),
    ]
    assert records[1].annotation() == "k3 sha256:d3 300 7"
    assert records[0].to_json() == label[0]
    # The same record from both: given once; a label that is not JSON: the annotations only.
    assert len(layer_records(layers[:1], {LAYERS_LABEL: json.dumps(label[:1])})) == 1
    assert layer_records(layers, {LAYERS_LABEL: "{not json"}) == records[1:]


def test_components_label() -> None:
    data = {
        "a": {"size": 10, "change_probability": 0.5, "version": "1", "digest": "x"},
        "b": {"size": "n/a", "change_probability": 0.1},
        "c": "not an object",
        "d": {"change_probability": 7, "version": "", "part_of": "a"},
    }
    strict, bad = components_from_label(data)
    assert strict == {"a": ComponentInfo("a", 10, 0.5, "1", "x")} and bad == ["b", "c", "d"]
    lenient, bad = components_from_label(data, lenient=True)
    assert bad == ["b"] and lenient["d"] == ComponentInfo("d", 0, 1.0, None, None, "a")
    assert lenient["a"].to_json()["name"] == "a"


def test_plan_groups_and_layers() -> None:
    assert json_label({"x": "[1]"}, "x") == [1] and json_label({}, "x") is None
    with pytest.raises(ValueError):
        json_label({"x": "{"}, "x")
    assert plan_groups([["a"], ["b", "c"]]) == [["a"], ["b", "c"]]
    assert plan_groups([["a"], "b"]) is None and plan_groups({"a": 1}) is None
    assert plan_groups([[1]], names_only=True) is None
    layers = [
        Descriptor(MEDIA_LAYER_GZIP, _digest(1), 1),
        Descriptor(MEDIA_LAYER_GZIP, _digest(2), 1, {COMPONENTS_ANNOTATION: "x,y"}),
        Descriptor(MEDIA_LAYER_GZIP, _digest(3), 1, {COMPONENTS_ANNOTATION: "z"}),
    ]
    assert annotation_groups(layers) == [(), ("x", "y"), ("z",)]
    # The plan wins when it fits; a plan for fewer layers leaves those on top empty.
    assert groups_per_layer([["p"], ["q"]], layers) == [(), ("p",), ("q",)]
    assert groups_per_layer([["p"]], layers) == [(), ("p",), ()]
    assert groups_per_layer([["p"]], layers, layers_on_top=False) == annotation_groups(layers)
    assert groups_per_layer(None, layers) == annotation_groups(layers)


def test_probabilities_and_changes() -> None:
    components = {
        "a": ComponentInfo("a", 10, 0.5, "1", "d1"),
        "b": ComponentInfo("b", 10, 0.2, "1", "d2"),
    }
    assert layer_change_probability(["a", "b"], components) == pytest.approx(1 - 0.5 * 0.8)
    assert layer_change_probability([], components) == 0
    assert layer_change_probability(["a", "zz"], components) is None
    new = {"a": ComponentInfo("a", 10, 0.5, "2", "d1x"), "c": ComponentInfo("c", 1, 0.1, None, None)}
    changes = component_changes(components, new, {"a": 2, "c": 3})
    assert [(c.name, c.status, c.layer) for c in changes] == [
        ("a", "changed", 2),
        ("b", "removed", None),
        ("c", "added", 3),
    ]
    assert changes[0].to_json()["new_version"] == "2"
