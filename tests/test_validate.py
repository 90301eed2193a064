"""debchunk validate: images written by debchunk, umoci and skopeo pass; copies
damaged in one way each fail with exit 1, naming the blob or field at fault."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunCli, debchunk_bytes, printable_lines, snapshot
from tests.images import build_args, tar_of, write_layout

EPOCH = "1767225600"  # 2026-01-01
REF_NAME = "org.opencontainers.image.ref.name"
Json = dict[str, Any]


def _encapsulate(*args: str) -> None:
    build_args(*args, epoch=int(EPOCH))


@pytest.fixture(scope="module")
def images(
    tmp_path_factory: pytest.TempPathFactory, sample_tree: Path, sample_repos: dict[str, Path]
) -> dict[str, Path]:
    """Layouts (and one archive) of the sample: plain gzip and zstd, ostree, umoci's."""
    root = tmp_path_factory.mktemp("validate")
    tree = str(sample_tree)
    _encapsulate("--rootfs", tree, f"oci:{root}/plain:v1", "--max-layers", "8")
    _encapsulate("--rootfs", tree, f"oci:{root}/zstd:v1", "--max-layers", "8", "--compression", "zstd")
    _encapsulate(
        "--repo", str(sample_repos["bare-user"]), "sample", f"oci:{root}/ostree:v1", "--max-layers", "8"
    )
    _encapsulate("--rootfs", tree, f"oci-archive:{root}/archive.tar:v1", "--max-layers", "8")
    layout = root / "umoci"
    some = root / "somedir"
    (some / "etc").mkdir(parents=True)
    (some / "etc/hostname").write_text("umoci\n")
    (some / "bin").mkdir()
    (some / "bin/tool").write_bytes(os.urandom(4096))
    for cmd in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:v1"],
        ["umoci", "insert", "--image", f"{layout}:v1", str(some), "/"],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    return {
        "plain": root / "plain",
        "zstd": root / "zstd",
        "ostree": root / "ostree",
        "umoci": layout,
        "archive": root / "archive.tar",
    }


def _manifest(layout: Path, tag: str = "v1") -> Json:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"][REF_NAME] == tag]
    data: Json = json.loads(_blob(layout, entry["digest"]).read_bytes())
    return data


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest.removeprefix("sha256:")


def _put(layout: Path, value: Json) -> Json:
    """Store a JSON blob; its digest and size."""
    data = json.dumps(value).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _rewrite(
    layout: Path,
    manifest: Callable[[Json], object] | None = None,
    config: Callable[[Json], object] | None = None,
    tag: str = "v1",
) -> None:
    """Edit image ``tag``'s config and/or manifest, storing them under their new
    digests and fixing the descriptors that point at them: only the edit is wrong."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"][REF_NAME] == tag]
    m = json.loads(_blob(layout, entry["digest"]).read_bytes())
    if config is not None:
        c = json.loads(_blob(layout, m["config"]["digest"]).read_bytes())
        config(c)
        m["config"].update(_put(layout, c))
    if manifest is not None:
        manifest(m)
    entry.update(_put(layout, m))
    (layout / "index.json").write_text(json.dumps(index))


def _validate(run_cli: RunCli, ref: str) -> tuple[int, str, str]:
    proc = run_cli("validate", ref)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("name", ["plain", "zstd", "ostree", "umoci"])
def test_layouts_are_valid(run_cli: RunCli, images: dict[str, Path], name: str) -> None:
    ref = f"oci:{images[name]}:v1"
    code, out, err = _validate(run_cli, ref)
    assert (code, err) == (0, ""), err
    layers = len(_manifest(images[name])["layers"])
    # manifest, config and every layer
    assert re.fullmatch(
        rf"{re.escape(ref)}: valid: {layers + 2} blobs, {layers} layers?, [0-9.]+ (B|KiB|MiB|GiB)\n", out
    ), out
    assert run_cli("validate", "--quiet", ref).stdout == ""


def test_archive_and_skopeo_transports_are_valid(
    run_cli: RunCli, images: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = _validate(run_cli, f"oci-archive:{images['archive']}:v1")
    assert code == 0 and "valid: " in out, err
    # Through skopeo: Docker's archive format, copied back into a layout by skopeo.
    docker = tmp_path / "docker.tar"
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{images['plain']}:v1", f"docker-archive:{docker}:x/y:v1"], check=True
    )
    code, out, err = _validate(run_cli, f"docker-archive:{docker}")
    assert code == 0 and "valid: " in out, err


def test_registry_image_is_valid(run_cli: RunCli, images: dict[str, Path], registry: str) -> None:
    ref = f"{registry}/validate/plain:v1"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{images['plain']}:v1", f"docker://{ref}"],
        check=True,
    )
    proc = run_cli("validate", f"registry:{ref}", "--tls-verify", "false")
    assert proc.returncode == 0 and f"registry:{ref}: valid: " in proc.stdout, proc.stderr


@pytest.mark.invalid_images
def test_image_index(run_cli: RunCli, images: dict[str, Path], tmp_path: Path) -> None:
    """A tag pointing at an image index: the index, then its linux/amd64 manifest."""
    layout = tmp_path / "img"
    shutil.copytree(images["plain"], layout)
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    platform = {"architecture": "amd64", "os": "linux"}
    image_index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": entry["mediaType"],
                "digest": entry["digest"],
                "size": entry["size"],
                "platform": platform,
            }
        ],
    }
    index["manifests"][0] = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        **_put(layout, image_index),
        "annotations": {REF_NAME: "v1"},
    }
    (layout / "index.json").write_text(json.dumps(index))
    code, out, err = _validate(run_cli, f"oci:{layout}:v1")
    layers = len(_manifest(images["plain"])["layers"])
    assert code == 0 and f"valid: {layers + 3} blobs" in out, err
    # A platform without its required os.
    del platform["os"]
    index["manifests"][0].update(_put(layout, image_index))
    (layout / "index.json").write_text(json.dumps(index))
    code, out, err = _validate(run_cli, f"oci:{layout}:v1")
    assert code == 1 and "image index" in err and "manifests[0].platform" in err and "'os'" in err, err


def _second_layer(layout: Path) -> Path:
    return _blob(layout, _manifest(layout)["layers"][1]["digest"])


def _truncate(layout: Path) -> None:
    path = _second_layer(layout)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(layout: Path) -> None:
    path = _second_layer(layout)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _size(layout: Path) -> None:
    def edit(m: Json) -> None:
        m["layers"][1]["size"] += 1

    _rewrite(layout, manifest=edit)


def _diff_id(layout: Path) -> None:
    def edit(c: Json) -> None:
        c["rootfs"]["diff_ids"][1] = "sha256:" + hashlib.sha256(b"another layer").hexdigest()

    _rewrite(layout, config=edit)


def _no_schema_version(layout: Path) -> None:
    _rewrite(layout, manifest=lambda m: m.pop("schemaVersion"))


def _media_type(layout: Path) -> None:
    def edit(m: Json) -> None:
        m["layers"][1]["mediaType"] = "application/vnd.example.layer.v1.tar+lz4"

    _rewrite(layout, manifest=edit)


def _missing(layout: Path) -> None:
    _second_layer(layout).unlink()


def _undecodable(layout: Path) -> None:
    """Not gzip at all, with a descriptor that matches those bytes."""
    garbage = _put(layout, {"not": "a layer"})

    def edit(m: Json) -> None:
        m["layers"][1].update(garbage)

    _rewrite(layout, manifest=edit)


def _final_diffid(layout: Path) -> None:
    def edit(c: Json) -> None:
        c["config"]["Labels"]["ostree.final-diffid"] = c["rootfs"]["diff_ids"][0]

    _rewrite(layout, config=edit)


def _annotation(layout: Path) -> None:
    def edit(m: Json) -> None:
        m["layers"][2]["annotations"]["ostree.components"] = "somethingelse"

    _rewrite(layout, manifest=edit)


def _no_annotation(layout: Path) -> None:
    _rewrite(layout, manifest=lambda m: m["layers"][1].pop("annotations"))


@pytest.mark.invalid_images  # each test damages a copy of a good image
@pytest.mark.parametrize(
    ("image", "damage", "expected"),
    [
        ("plain", _truncate, r"layer 2 of \d+ \(sha256:.*\): blob is \d+ bytes \(truncated\)"),
        ("plain", _flip, r"layer 2 of \d+ \(sha256:.*\): digest mismatch"),
        ("zstd", _flip, r"layer 2 of \d+ \(sha256:.*\): digest mismatch"),
        (
            "plain",
            _size,
            r"layer 2 of \d+ \(.*\): the descriptor says \d+ bytes, the blob \(digest matching\) is \d+",
        ),
        (
            "plain",
            _diff_id,
            r"config rootfs\.diff_ids\[1\]: sha256:[0-9a-f]{64}, but layer 2 uncompresses to",
        ),
        ("plain", _no_schema_version, r"manifest sha256:.*: .*'schemaVersion' is a required property"),
        (
            "plain",
            _media_type,
            r"layer 2 of \d+ .*: media type 'application/vnd\.example\.layer.*' is not a known",
        ),
        ("plain", _missing, r"layer 2 of \d+ \(sha256:.*\): blob missing"),
        ("plain", _undecodable, r"layer 2 of \d+ \(sha256:.*\): not valid gzip data"),
        (
            "ostree",
            _final_diffid,
            r"config label ostree\.final-diffid: sha256:[0-9a-f]{64}, but the last diff_id",
        ),
        (
            "ostree",
            _annotation,
            r"layer 3 of \d+ .*: annotation ostree\.components='somethingelse' disagrees",
        ),
        ("ostree", _no_annotation, r"layer 2 of \d+ .*: no ostree\.components annotation"),
    ],
    ids=[
        "truncated",
        "flipped-byte",
        "flipped-byte-zstd",
        "descriptor-size",
        "diff-id",
        "schema",
        "media-type",
        "missing-blob",
        "undecodable",
        "final-diffid",
        "annotation",
        "no-annotation",
    ],
)
def test_damage_is_named(
    run_cli: RunCli,
    images: dict[str, Path],
    tmp_path: Path,
    image: str,
    damage: Callable[[Path], None],
    expected: str,
) -> None:
    original = images[image]
    before = snapshot(original)
    layout = tmp_path / "copy"
    shutil.copytree(original, layout)
    assert _validate(run_cli, f"oci:{layout}:v1")[0] == 0
    damage(layout)
    code, out, err = _validate(run_cli, f"oci:{layout}:v1")
    assert code == 1 and out == "", err
    lines = err.splitlines()
    assert lines[0].startswith(f"debchunk: error: oci:{layout}:v1: ") and len(lines) <= 7, err
    assert re.search(expected, err), err
    assert "Traceback" not in err
    assert snapshot(original) == before


@pytest.mark.invalid_images
def test_several_problems_are_listed(run_cli: RunCli, images: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "copy"
    shutil.copytree(images["plain"], layout)
    for layer in _manifest(layout)["layers"]:
        _blob(layout, layer["digest"]).unlink()
    code, _, err = _validate(run_cli, f"oci:{layout}:v1")
    lines = err.splitlines()
    layers = len(_manifest(layout)["layers"])
    assert code == 1 and lines[0] == f"debchunk: error: oci:{layout}:v1: {layers} problems:", err
    assert all("blob missing" in line for line in lines[1:6])
    assert lines[6:] == ([f"  ... and {layers - 5} more"] if layers > 5 else [])


def test_unreadable_input_is_one_line(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "notalayout").mkdir()
    (tmp_path / "notalayout/file").write_text("x")
    for ref, what in (
        (f"oci:{tmp_path}/missing:v1", "missing"),
        (f"oci:{tmp_path}/notalayout", "notalayout: not an OCI image layout"),
        (f"oci-archive:{tmp_path}/missing.tar", "no such archive"),
    ):
        code, out, err = _validate(run_cli, ref)
        assert code == 1 and out == "", err
        assert err.count("\n") == 1 and err.startswith("debchunk: error: ") and what in err, err


def test_schemas_are_package_data() -> None:
    """The schemas load from the installed package and are valid draft 2020-12."""
    from importlib import resources

    from jsonschema import Draft202012Validator

    from encapsulate.oci.model import SCHEMAS, schema_problems

    for name in SCHEMAS:
        schema = json.loads(resources.files("encapsulate").joinpath("schemas", f"{name}.json").read_text())
        Draft202012Validator.check_schema(schema)
        assert "OCI image-spec v1.1" in schema["$comment"]
    digest = "sha256:" + "a" * 64
    good = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 1}
    manifest = {"schemaVersion": 2, "config": {**good, "annotations": {"k": "v"}}, "layers": [good]}
    assert schema_problems("manifest", manifest, "m") == []
    for bad, where in (
        ({**good, "digest": "sha256:ABC"}, "layers[0].digest"),
        ({**good, "size": -1}, "layers[0].size"),
        ({**good, "mediaType": "not a media type"}, "layers[0].mediaType"),
        ({**good, "annotations": {"k": 1}}, "layers[0].annotations.k"),
        ({**good, "annotations": {"a.b\n": 1}}, 'layers[0].annotations["a.b\\n"]'),
    ):
        problems = schema_problems("manifest", {**manifest, "layers": [bad]}, "m")
        assert len(problems) == 1 and f"at {where}:" in problems[0], problems
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}}
    assert schema_problems("config", config, "c") == []
    assert schema_problems("config", {**config, "config": {"Cmd": None, "Labels": None}}, "c") == []
    problems = schema_problems("config", {**config, "created": "yesterday", "rootfs": {"type": "x"}}, "c")
    assert [p.split(":")[1].strip() for p in problems] == [
        "does not follow the OCI config schema at created",
        "does not follow the OCI config schema at rootfs",
        "does not follow the OCI config schema at rootfs.type",
    ], problems


@pytest.mark.invalid_images
def test_problems_quoting_the_image_are_printable_lines(tmp_path: Path) -> None:
    """Labels holding line breaks and escape sequences (a fake "valid" line,
    a screen clear): each problem is one printable line on stderr."""
    labels = {
        "ostree.commit": "0" * 63 + "\x1b",
        "ostree.final-diffid": "x\nOK: valid\x1b[2J",
        "k\n\x1b[31mOK": 1,
    }
    ref = write_layout(tmp_path / "img", [(tar_of({"a": b"a"}), {})], labels)
    proc = debchunk_bytes("validate", ref)
    assert proc.returncode == 1 and proc.stdout == b"", proc
    lines = printable_lines(proc.stderr)
    assert lines[0] == f"debchunk: error: {ref}: 3 problems:", lines
    assert len(lines) == 4, lines
    assert r'at config.Labels["k\n\u001b[31mOK"]: 1 is not of type' in lines[1], lines
    assert r"ostree.commit: '000" in lines[2] and r"0\x1b' is not an ostree commit checksum" in lines[2]
    assert r"ostree.final-diffid: x\nOK: valid\x1b[2J, but the last diff_id is sha256:" in lines[3], lines
