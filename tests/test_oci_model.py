"""The OCI model (``encapsulate.oci.model``): digests are checked when made,
and indexes, manifests and configs are refused unless their bytes are the
ones their descriptor names, then read once into typed values."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from encapsulate.errors import EncapsulateError
from encapsulate.oci.model import (
    INVALID_HINT,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
    Descriptor,
    Digest,
    ImageConfig,
    ImageIndex,
    Manifest,
    manifest_or_index,
)
from encapsulate.oci.platform import Platform

HEX = "0123456789abcdef" * 4


def _blob(value: Any, media_type: str) -> tuple[bytes, Descriptor]:
    data = json.dumps(value).encode()
    return data, Descriptor(media_type, Digest.of(data), len(data))


def _config(**fields: Any) -> dict[str, Any]:
    return {
        "architecture": "arm",
        "variant": "v7",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["A=1"], "Labels": {"k": "v"}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{HEX}"]},
        "history": [{"created_by": "x"}],
        **fields,
    }


def _manifest(config: Descriptor, **fields: Any) -> dict[str, Any]:
    layer = {"mediaType": MEDIA_LAYER_GZIP, "digest": f"sha256:{HEX}", "size": 3, "annotations": {"a": "b"}}
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.to_json(),
        "layers": [layer],
        **fields,
    }


def test_digest_is_checked_when_made() -> None:
    d = Digest(f"sha256:{HEX}")
    assert (d.algorithm, d.hex, d.short) == ("sha256", HEX, f"sha256:{HEX[:12]}")
    assert d == f"sha256:{HEX}" and json.dumps(d) == json.dumps(f"sha256:{HEX}")
    assert Digest(d) is d
    assert Digest.of(b"x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert Digest.of(b"x", "sha512").algorithm == "sha512" and len(Digest.of(b"x", "sha512").hex) == 128
    assert Digest.of_hash(hashlib.sha256(b"x")) == Digest.of(b"x")
    for bad in (
        "",
        "sha256",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX.upper()}",
        f"md5:{HEX}",
        f"sha512:{HEX}",
        HEX,
    ):
        with pytest.raises(ValueError, match="not a sha256 or sha512 digest"):
            Digest(bad)
    with pytest.raises(EncapsulateError, match=r"layer 3: digest 'sha256:zz' is not a sha256"):
        Digest.parse("sha256:zz", "layer 3")
    with pytest.raises(EncapsulateError, match="digest 12 is not"):
        Digest.parse(12, "x")


def test_descriptor_round_trip_and_refusals() -> None:
    d = Descriptor(MEDIA_LAYER_GZIP, Digest(f"sha256:{HEX}"), 3, {"z": "1", "a": "2"}, ("https://x/b",))
    again = Descriptor.from_json(d.to_json())
    assert again == d and isinstance(again.digest, Digest)
    assert list(d.to_json()["annotations"]) == ["a", "z"]
    # No urls or annotations: none written (a written descriptor's bytes stay as they were).
    assert Descriptor(MEDIA_CONFIG, d.digest, 1).to_json() == {
        "mediaType": MEDIA_CONFIG,
        "digest": d.digest,
        "size": 1,
    }
    good = d.to_json()
    for bad, words in (
        ([], "not a JSON object"),
        ({**good, "mediaType": None}, "no media type"),
        ({**good, "size": -1}, "not a byte count"),
        ({**good, "size": True}, "not a byte count"),
        ({**good, "digest": "sha256:abc"}, "not a sha256 or sha512 digest"),
        ({**good, "annotations": {"k": 1}}, "not an object of strings"),
        ({**good, "urls": "x"}, "urls is not a list"),
    ):
        with pytest.raises(EncapsulateError, match=f"layer 2: .*{words}"):
            Descriptor.from_json(bad, "layer 2")


def test_config_is_checked_against_its_descriptor_before_it_is_read() -> None:
    data, descriptor = _blob(_config(), MEDIA_CONFIG)
    config = ImageConfig.parse(data, descriptor, "oci:x:v1")
    assert (config.architecture, config.variant, config.os) == ("arm", "v7", "linux")
    assert config.labels == {"k": "v"} and config.runtime["Env"] == ["A=1"]
    assert config.diff_ids == (f"sha256:{HEX}",) and isinstance(config.diff_ids[0], Digest)
    assert config.history == ({"created_by": "x"},) and config.document == json.loads(data)
    assert (config.digest, config.size) == (descriptor.digest, len(data))
    # Same JSON, other bytes: refused, naming the image, the config and the fault.
    other = json.dumps(_config(), indent=1).encode()
    with pytest.raises(EncapsulateError) as refused:
        ImageConfig.parse(other, descriptor, "oci:x:v1")
    assert str(refused.value).startswith(
        f"oci:x:v1: config {descriptor.digest}: its {len(other)} bytes have digest"
    )
    assert "the image is damaged" in str(refused.value)
    with pytest.raises(
        EncapsulateError, match=rf"config {descriptor.digest}: truncated: 5 of {len(data)} bytes"
    ):
        ImageConfig.parse(data[:5], descriptor, "oci:x:v1")
    # Not JSON, though its descriptor names those bytes.
    junk = b"{not json"
    with pytest.raises(EncapsulateError, match="not JSON; the image is damaged"):
        ImageConfig.parse(junk, Descriptor(MEDIA_CONFIG, Digest.of(junk), len(junk)), "oci:x:v1")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"config": []}, "config"),
        ({"config": {"Labels": {"k": 1}}}, "config.Labels.k"),
        ({"config": {"Labels": []}}, "config.Labels"),
        ({"config": {"Cmd": 42}}, "config.Cmd"),
        ({"config": {"Entrypoint": ["a", 1]}}, "config.Entrypoint[1]"),
        ({"config": {"Env": "x"}}, "config.Env"),
        ({"config": {"ExposedPorts": 3}}, "config.ExposedPorts"),
        ({"config": {"Volumes": {"/v": 1}}}, 'config.Volumes["/v"]'),
        ({"config": {"WorkingDir": 1}}, "config.WorkingDir"),
        ({"rootfs": {"type": "layers", "diff_ids": "x"}}, "rootfs.diff_ids"),
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:bad"]}}, "rootfs.diff_ids[0]"),
        ({"rootfs": {"type": "layers"}}, "rootfs"),
        ({"history": [1]}, "history[0]"),
        ({"history": {"created_by": "x"}}, "history"),
        ({"history": [{"created": "yesterday"}]}, "history[0].created"),
        ({"history": [{"empty_layer": "yes"}]}, "history[0].empty_layer"),
        ({"architecture": 7}, "architecture"),
        ({"os.features": "x"}, '["os.features"]'),
        ({"variant": None}, "variant"),
    ],
)
def test_config_fields_follow_the_schema(fields: dict[str, Any], field: str) -> None:
    """A config field of the wrong type is refused when it is read (so it is
    never copied into a new image), naming the image, the config and the field."""
    data, descriptor = _blob(_config(**fields), MEDIA_CONFIG)
    with pytest.raises(EncapsulateError) as refused:
        ImageConfig.parse(data, descriptor, "oci:x:v1")
    message = str(refused.value)
    assert message.startswith(
        f"oci:x:v1: config {descriptor.digest}: {field} does not follow the OCI image-spec config schema: "
    ), message
    assert message.endswith(f"; {INVALID_HINT}")
    assert message.isprintable()


def test_config_without_required_parts() -> None:
    """What the schema requires (architecture, os, rootfs) is not made up."""
    for missing in ("architecture", "os", "rootfs"):
        document = _config()
        del document[missing]
        data, descriptor = _blob(document, MEDIA_CONFIG)
        with pytest.raises(EncapsulateError, match=f"top level does not follow .*'{missing}' is a required"):
            ImageConfig.parse(data, descriptor, "img")
    data, descriptor = _blob(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}, MEDIA_CONFIG
    )
    config = ImageConfig.parse(data, descriptor, "img")
    assert (config.runtime, config.labels, config.diff_ids, config.history) == ({}, {}, (), ())
    assert config.created is None and config.architecture == "amd64"
    # Nulls where Docker writes them are kept.
    data, descriptor = _blob(_config(config={"Cmd": None, "Labels": None, "Env": None}), MEDIA_CONFIG)
    assert ImageConfig.parse(data, descriptor, "img").labels == {}


def test_strings_from_the_image_stay_one_printable_line() -> None:
    """A key holding a newline or an escape sequence is named quoted, escaped."""
    data, descriptor = _blob(_config(config={"Labels": {"x\n\x1b[32mOK": 1}}), MEDIA_CONFIG)
    with pytest.raises(EncapsulateError) as refused:
        ImageConfig.parse(data, descriptor, "img")
    message = str(refused.value)
    assert 'config.Labels["x\\n\\u001b[32mOK"] does not follow' in message, message
    assert message.isprintable()


def test_manifest() -> None:
    _, config = _blob(_config(), MEDIA_CONFIG)
    data, descriptor = _blob(_manifest(config, annotations={"m": "1"}), MEDIA_MANIFEST)
    manifest = Manifest.parse(data, descriptor, "oci:x:v1")
    assert manifest.config == config and manifest.media_type == MEDIA_MANIFEST
    assert [(d.digest, d.size, d.annotations) for d in manifest.layers] == [(f"sha256:{HEX}", 3, {"a": "b"})]
    assert (manifest.digest, manifest.size, manifest.raw, manifest.annotations) == (
        descriptor.digest,
        len(data),
        data,
        {"m": "1"},
    )
    # Found by tag, there is no descriptor: the digest is the bytes'.
    assert Manifest.parse(data, None, "x").digest == Digest.of(data)
    # What the schema allows is kept, not judged: an unknown layer type.
    odd = _manifest(config)
    odd["layers"][0]["mediaType"] = "application/x-unknown"
    assert Manifest.parse(json.dumps(odd).encode(), None, "x").layers[0].media_type == "application/x-unknown"
    # What it does not is refused, naming the field: no schemaVersion, a layer's bad media type.
    del odd["schemaVersion"]
    with pytest.raises(EncapsulateError, match=r"top level does not follow .*'schemaVersion' is a required"):
        Manifest.parse(json.dumps(odd).encode(), None, "x")
    with pytest.raises(EncapsulateError, match=rf"oci:x:v1: manifest {descriptor.digest}: its .* bytes have"):
        Manifest.parse(data + b" ", descriptor, "oci:x:v1")
    for bad, words in (
        ({"layers": []}, r"x: manifest sha256:\w+: top level does not follow .*'config' is a required"),
        ({"config": config.to_json(), "layers": {}}, "layers does not follow"),
        (
            {"config": config.to_json(), "layers": [{"mediaType": "x", "digest": "sha256:1", "size": 1}]},
            r"layers\[0\].digest does not follow",
        ),
        ({"config": config.to_json(), "layers": [], "annotations": {"k": 1}}, "annotations.k does not"),
    ):
        with pytest.raises(EncapsulateError, match=words):
            Manifest.parse(json.dumps({"schemaVersion": 2, **bad}).encode(), None, "x")


def test_index_and_platforms() -> None:
    _, config = _blob(_config(), MEDIA_CONFIG)
    _, m1 = _blob(_manifest(config), MEDIA_MANIFEST)
    _, m2 = _blob(_manifest(config, annotations={"two": "2"}), MEDIA_MANIFEST)
    entries = [
        {**m1.to_json(), "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {**m2.to_json(), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {**m1.to_json(), "platform": {"architecture": "amd64", "os": "linux"}},
    ]
    data, descriptor = _blob(
        {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}, MEDIA_INDEX
    )
    index = manifest_or_index(data, descriptor, "oci:x:multi")
    assert isinstance(index, ImageIndex)
    assert index.choose(Platform.of("armhf"), "i") == m2
    assert index.choose(Platform("arm"), "i") == m1
    assert index.choose(Platform("amd64"), "i") == m1
    # An index whose platform lacks its os is refused when read (the schema
    # requires it); read all the same, the entry counts as linux.
    no_os = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**m1.to_json(), "platform": {"architecture": "amd64"}}],
    }
    with pytest.raises(EncapsulateError, match=r"image index .*: manifests\[0\].platform does not follow"):
        manifest_or_index(json.dumps(no_os).encode(), None, "x")
    lenient = ImageIndex.from_json(no_os, "i")
    assert lenient.choose(Platform("amd64"), "i") == m1
    with pytest.raises(EncapsulateError, match=r"no linux/s390x image \(it has \?/amd64\)"):
        lenient.choose(Platform("s390x"), "i")
    # The document's own media type tells an index whatever its descriptor says.
    assert isinstance(manifest_or_index(data, None, "x"), ImageIndex)
    with pytest.raises(EncapsulateError, match="an image index, where an image manifest was expected"):
        Manifest.parse(data, None, "x")
    with pytest.raises(EncapsulateError, match="lists no manifests"):
        ImageIndex.from_json({"manifests": None}, "i")
