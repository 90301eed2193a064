"""The previous build read back (``encapsulate.oci.prior``): its plan from an
image's label or its layers' annotations, through a tag that points at an OCI
image index too, as ``debchunk inspect`` reads it; from a raw manifest file;
and its layer digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from chunker import Plan
from encapsulate import RootfsOrigin
from encapsulate.errors import EncapsulateError
from encapsulate.oci.imgref import DEFAULT_REGISTRY
from encapsulate.oci.labels import PLAN_LABEL, REF_NAME_ANNOTATION
from encapsulate.oci.layout import MAX_MANIFEST_BYTES
from encapsulate.oci.model import MEDIA_INDEX, Descriptor, Digest, Manifest
from encapsulate.oci.platform import Platform
from encapsulate.oci.prior import image_layer_digests, plan_from_image, prior_from_manifest_file, prior_plan
from encapsulate.oci.read import open_image
from tests.images import build

EPOCH = "1767225600"  # 2026-01-01
REF_NAME = REF_NAME_ANNOTATION
INDEX = MEDIA_INDEX


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> Path:
    """The sample as ``oci:LAYOUT:v1``."""
    root = tmp_path_factory.mktemp("prior") / "img"
    build(RootfsOrigin(str(sample_tree)), f"oci:{root}:v1", max_layers=6, epoch=int(EPOCH))
    return root


def _put(layout: Path, value: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(value).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _tag_index(layout: Path, tag: str, platforms: list[dict[str, str]]) -> None:
    """Tag ``tag``: an image index listing image v1 once per platform."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"][REF_NAME] == "v1"]
    image_index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {"mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"], "platform": p}
            for p in platforms
        ],
    }
    index["manifests"].append(
        {"mediaType": INDEX, **_put(layout, image_index), "annotations": {REF_NAME: tag}}
    )
    (layout / "index.json").write_text(json.dumps(index))


def _plan_label(layout: Path) -> list[list[str]]:
    with open_image(f"oci:{layout}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        groups: list[list[str]] = json.loads(image.config.labels[PLAN_LABEL])
    return groups


def test_prior_through_an_image_index(layout: Path) -> None:
    _tag_index(
        layout, "multi", [{"architecture": "arm64", "os": "linux"}, {"architecture": "amd64", "os": "linux"}]
    )
    groups = _plan_label(layout)
    assert len(groups) == 5 and all(groups)
    # Reading through the index gives the image's own plan (this raised
    # KeyError: 'config' when the prior had a reader of its own).
    plan = prior_plan(f"oci:{layout}:multi", DEFAULT_REGISTRY)
    assert plan == Plan.from_groups(groups) == prior_plan(f"oci:{layout}:v1", DEFAULT_REGISTRY)
    with open_image(f"oci:{layout}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        digests = [d.digest for d in image.layers]
    assert image_layer_digests(f"oci:{layout}:multi", DEFAULT_REGISTRY) == digests and len(digests) == 6


def test_index_without_the_platform(layout: Path) -> None:
    _tag_index(
        layout, "arm", [{"architecture": "arm64", "os": "linux"}, {"architecture": "s390x", "os": "linux"}]
    )
    with pytest.raises(EncapsulateError, match=r"no linux/amd64 image \(it has linux/arm64, linux/s390x\)"):
        prior_plan(f"oci:{layout}:arm", DEFAULT_REGISTRY)
    # The platform asked for is read.
    with open_image(f"oci:{layout}:arm", DEFAULT_REGISTRY, blobs=False, platform=Platform("s390x")) as image:
        assert len(image.layers) == 6


def test_prior_from_manifest_file(layout: Path, tmp_path: Path) -> None:
    """Without the config, the layers' ostree.components annotations give the plan."""
    with open_image(f"oci:{layout}:v1", DEFAULT_REGISTRY, blobs=False) as image:
        raw = image.manifest.raw
    path = tmp_path / "manifest.json"
    path.write_bytes(raw)
    assert prior_from_manifest_file(str(path)) == Plan.from_groups(_plan_label(layout))
    path.write_text("{not json")
    with pytest.raises(EncapsulateError, match=r"manifest\.json: manifest sha256:[0-9a-f]{64}: not JSON"):
        prior_from_manifest_file(str(path))
    with pytest.raises(EncapsulateError, match="cannot read the OCI manifest"):
        prior_from_manifest_file(str(tmp_path / "missing.json"))
    # Past containers/image's 4 MiB for a manifest: refused, not read whole.
    path.write_bytes(raw + b" " * (MAX_MANIFEST_BYTES + 1 - len(raw)))
    with pytest.raises(EncapsulateError, match=r"manifest\.json: larger than 4 MiB"):
        prior_from_manifest_file(str(path))
    path.write_bytes(raw + b" " * (MAX_MANIFEST_BYTES - len(raw)))
    assert prior_from_manifest_file(str(path)) == Plan.from_groups(_plan_label(layout))


def _manifest(layers: list[dict[str, Any]]) -> Manifest:
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:" + "c" * 64,
        "size": 2,
    }
    data = json.dumps({"schemaVersion": 2, "config": config, "layers": layers}).encode()
    return Manifest.parse(data, None, "m.json")


def _layer(annotations: dict[str, str]) -> dict[str, Any]:
    return Descriptor(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Digest.of(json.dumps(annotations).encode()),
        1,
        annotations,
    ).to_json()


def test_plan_from_annotations_and_no_plan() -> None:
    """Without a config, the layers' ostree.components give the groups (the
    first, unannotated layer holds none); an image with neither fails with advice."""
    manifest = _manifest(
        [_layer({}), _layer({"ostree.components": "a,b"}), _layer({"ostree.components": "c"})]
    )
    assert plan_from_image(manifest, None, "m.json") == Plan.from_groups([["a", "b"], ["c"]])
    with pytest.raises(
        EncapsulateError, match=r"m\.json: the image records no plan.*build without --prior once"
    ):
        plan_from_image(_manifest([_layer({})]), None, "m.json")


def test_a_build_reads_its_own_platforms_prior_from_an_index(
    layout: Path, sample_tree: Path, tmp_path: Path
) -> None:
    """An arm64 + amd64 index as --prior (and --compare-with-build) of an
    arm64 build: the arm64 image's plan and layers are read, not amd64's."""
    from dataclasses import replace

    from encapsulate import BuildConfig, build_image

    # An arm64 image of another plan (4 layers) beside v1 (amd64, 6 layers).
    build(
        RootfsOrigin(str(sample_tree)),
        f"oci:{layout}:arm",
        max_layers=4,
        epoch=int(EPOCH),
        platform=Platform("arm64"),
    )
    index = json.loads((layout / "index.json").read_text())
    entries = {m["annotations"][REF_NAME]: m for m in index["manifests"]}
    image_index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                **{k: entries["v1"][k] for k in ("mediaType", "digest", "size")},
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                **{k: entries["arm"][k] for k in ("mediaType", "digest", "size")},
                "platform": {"architecture": "arm64", "os": "linux"},
            },
        ],
    }
    index["manifests"].append(
        {"mediaType": INDEX, **_put(layout, image_index), "annotations": {REF_NAME: "both"}}
    )
    (layout / "index.json").write_text(json.dumps(index))
    # What a user gets: the arm64 build with the index as --prior is the image
    # the arm64 image as --prior gives (not the one amd64's plan gives), and
    # its comparison counts the arm64 image's layers.
    origin = RootfsOrigin(str(sample_tree))
    arm64 = Platform("arm64")
    results = {}
    for name, prior in (("both", "both"), ("arm", "arm"), ("amd", "v1")):
        results[name] = build_image(
            BuildConfig(
                origin,
                f"oci:{tmp_path}/{name}:x",
                prior=f"oci:{layout}:{prior}",
                compare_with_build=f"oci:{layout}:{prior}",
                max_layers=6,
                epoch=int(EPOCH),
                platform=arm64,
            )
        )
    digest = {name: r.image.manifest.digest for name, r in results.items() if r.image is not None}
    assert digest["both"] == digest["arm"] != digest["amd"]
    both, arm = results["both"].comparison, results["arm"].comparison
    assert both is not None and arm is not None
    assert replace(both, imgref=arm.imgref) == arm and both.reused_layers == both.layers
    # Without --arch, this machine's platform (amd64 here): amd64's image.
    default = build_image(
        BuildConfig(origin, f"oci:{tmp_path}/default:x", prior=f"oci:{layout}:both", epoch=int(EPOCH))
    )
    plain = build_image(
        BuildConfig(origin, f"oci:{tmp_path}/plain:x", prior=f"oci:{layout}:v1", epoch=int(EPOCH))
    )
    assert default.image is not None and plain.image is not None
    assert default.image.manifest.digest == plain.image.manifest.digest
