"""The image model the read-back tools share (``encapsulate.tools.model``):
layers from the manifest, components from the plan label (else the
annotations), largest first, layer probabilities and the one expected
download per week, compressed size x layer probability; damaged labels
fail, or with ``lenient`` are left out."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from encapsulate.errors import EncapsulateError
from encapsulate.oci.labels import COMPONENTS_ANNOTATION, COMPONENTS_LABEL, PLAN_LABEL
from encapsulate.oci.model import MEDIA_CONFIG, MEDIA_LAYER_GZIP, Descriptor, Digest, ImageConfig, Manifest
from encapsulate.oci.read import SourceImage
from encapsulate.tools.model import read_model


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(
    labels: dict[str, str], sizes: list[int], annotations: list[dict[str, str]] | None = None
) -> SourceImage:
    """An image read back, made of its documents (no blobs); a layer's digest
    stands for its size (two layers of one size are one blob)."""
    config_data = json.dumps(
        {
            "architecture": "arm64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [_digest(100 + k) for k in range(len(sizes))]},
        }
    ).encode()
    config = Descriptor(MEDIA_CONFIG, Digest.of(config_data), len(config_data))
    layers: list[dict[str, Any]] = [
        {"mediaType": MEDIA_LAYER_GZIP, "digest": _digest(size), "size": size} for size in sizes
    ]
    for layer, notes in zip(layers, annotations or [], strict=False):
        layer["annotations"] = notes
    manifest = Manifest.parse(
        json.dumps({"schemaVersion": 2, "config": config.to_json(), "layers": layers}).encode(), None, "img"
    )
    return SourceImage("oci:img:v1", manifest, ImageConfig.parse(config_data, config, "img"), None)


COMPONENTS = {
    "big": {"size": 300, "change_probability": 0.1, "version": "1"},
    "small": {"size": 100, "change_probability": 0.5, "version": "2"},
    "other": {"size": 50, "change_probability": 0.2},
}


def test_layers_components_and_expected_download() -> None:
    labels = {PLAN_LABEL: json.dumps([["small", "big"], ["other"]]), COMPONENTS_LABEL: json.dumps(COMPONENTS)}
    model = read_model(image(labels, [1000, 400, 30]))
    assert (model.architecture, model.created, model.debchunk) == ("arm64", "2026-01-01T00:00:00Z", True)
    first, both, last = model.layers
    assert (
        first.components == () and first.change_probability is None and first.expected_download_bytes is None
    )
    assert both.components == ("big", "small") and both.content_size == 400
    assert both.change_probability == pytest.approx(1 - 0.9 * 0.5)
    assert both.diff_id == _digest(101) and both.descriptor == Descriptor(
        MEDIA_LAYER_GZIP, Digest(_digest(400)), 400
    )
    assert last.components == ("other",) and last.expected_download_bytes == pytest.approx(30 * 0.2)
    # Compressed bytes times the layer's probability, over the layers holding components.
    assert model.expected_download_bytes == pytest.approx(400 * (1 - 0.9 * 0.5) + 30 * 0.2)
    assert model.size == 1430 and model.has_components


def test_annotations_when_there_is_no_plan() -> None:
    notes = [{}, {COMPONENTS_ANNOTATION: "other,small"}]
    model = read_model(image({COMPONENTS_LABEL: json.dumps(COMPONENTS)}, [10, 20], notes))
    assert model.layers[1].components == ("small", "other")
    # Not debchunk's: no components, no figure.
    plain = read_model(image({}, [10, 20]))
    assert not plain.debchunk and not plain.has_components and plain.expected_download_bytes is None


def test_damaged_labels(caplog: pytest.LogCaptureFixture) -> None:
    bad = image({PLAN_LABEL: "{not json", COMPONENTS_LABEL: json.dumps({"x": {"size": "?"}})}, [10, 20])
    with pytest.raises(EncapsulateError, match=r"oci:img:v1: label org\.debchunk\.components: component 'x'"):
        read_model(bad)
    with caplog.at_level(logging.WARNING):
        model = read_model(bad, lenient=True)
    assert "label org.debchunk.plan is not JSON; it is left out" in caplog.text
    assert model.layers[1].components == ()
    with pytest.raises(EncapsulateError, match="is not a list of lists of names"):
        read_model(image({PLAN_LABEL: json.dumps({"a": 1})}, [10, 20]))
