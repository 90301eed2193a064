"""encapsulate.rechunk: an image as the origin of a build: its layers, what its
config passes on, and what is refused (hand-made images; tests/test_rechunk.py
has the real ones)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from encapsulate import (
    BuildConfig,
    ConfigError,
    EncapsulateError,
    Format,
    ImageOrigin,
    RootfsOrigin,
    build_image,
)
from encapsulate.describe import LAYER_LABELS, kept_config
from encapsulate.oci.model import INVALID_HINT, MEDIA_CONFIG, Descriptor, Digest, ImageConfig
from mapping import MappingError
from tests.conftest import RunCli, snapshot
from tests.images import (
    assert_same_tree,
    layer_entries,
    manifest,
    put_blob,
    store_image,
    tar_of,
    umoci_unpack,
    write_index,
)

EPOCH = 1_767_225_600


def make_image(
    layout: Path,
    layers: list[tuple[str, bytes]],
    config: dict[str, Any] | None = None,
    tag: str = "t",
) -> str:
    """An OCI layout holding one image of ``layers`` (media type, blob bytes);
    a key of ``config`` given as None is left out."""
    descriptors = [{"mediaType": media_type, **put_blob(layout, data)} for media_type, data in layers]
    document: dict[str, Any] = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
        **(config or {}),
    }
    document = {k: v for k, v in document.items() if v is not None}
    _, manifest = store_image(layout, descriptors, document)
    return write_index(layout, manifest, tag)


TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.mark.invalid_images  # the source carries old layer labels that do not fit it
def test_config_is_carried_over(tmp_path: Path) -> None:
    labels = {"containers.bootc": "1", "org.opencontainers.image.title": "t", "gone": "x"}
    labels |= {name: "old" for name in LAYER_LABELS}
    source = make_image(
        tmp_path / "src",
        [(TAR, tar_of({"etc/hostname": b"box\n", "usr/bin/tool": b"#!/bin/sh\n"}))],
        {
            "config": {
                "Env": ["A=1"],
                "Cmd": ["/bin/sh"],
                "Entrypoint": ["/init"],
                "WorkingDir": "/root",
                "User": "0",
                "ExposedPorts": {"8080/tcp": {}},
                "Volumes": {"/data": {}},
                "StopSignal": "SIGTERM",
                "Labels": labels,
            }
        },
    )
    result = build_image(
        BuildConfig(
            ImageOrigin(source),
            f"oci:{tmp_path / 'out'}:r",
            labels={"new": "y"},
            remove_labels=("gone",),
            epoch=EPOCH,
            max_layers=4,
        )
    )
    assert result.image is not None
    blobs = tmp_path / "out/blobs/sha256"
    config = json.loads((blobs / result.image.config.digest[7:]).read_text())
    runtime = config["config"]
    assert runtime["Env"] == ["A=1"] and runtime["Cmd"] == ["/bin/sh"] and runtime["Entrypoint"] == ["/init"]
    assert runtime["WorkingDir"] == "/root" and runtime["User"] == "0" and runtime["StopSignal"] == "SIGTERM"
    assert runtime["ExposedPorts"] == {"8080/tcp": {}} and runtime["Volumes"] == {"/data": {}}
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    out = runtime["Labels"]
    assert (
        out["containers.bootc"] == "1" and out["org.opencontainers.image.title"] == "t" and out["new"] == "y"
    )
    assert "gone" not in out and "ostree.final-diffid" not in out and "ostree.commit" not in out
    # debchunk's own labels describe the new layers, not the old ones.
    assert out["org.debchunk.plan"] != "old" and out["org.debchunk.components"] != "old"
    # The content is the old image's.
    assert sum(c.files for c in result.mapping.components) == 2


def test_kept_config_keeps_only_what_describes_the_content() -> None:
    document = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {
            "Env": ["A=1"],
            "Healthcheck": {"Test": ["x"]},
            "Labels": {"a": "1", "ostree.commit": "c"},
        },
    }
    data = json.dumps(document).encode()
    kept = kept_config(
        ImageConfig.parse(data, Descriptor(MEDIA_CONFIG, Digest.of(data), len(data)), "test"), ("a",)
    )
    assert kept == {"config": {"Env": ["A=1"], "Labels": {}}}


@pytest.mark.parametrize(
    ("media_type", "words"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "is encrypted"),
        ("application/vnd.example.not-a-layer", "not a tar layer"),
    ],
)
def test_refused_layers(tmp_path: Path, media_type: str, words: str) -> None:
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a"})), (media_type, b"opaque")])
    out = tmp_path / "out"
    with pytest.raises(EncapsulateError, match=words) as raised:
        build_image(BuildConfig(ImageOrigin(source), f"oci:{out}", epoch=EPOCH))
    assert "layer 2" in str(raised.value)
    assert not out.exists()


def test_a_layer_is_checked_against_its_diff_id(tmp_path: Path) -> None:
    """A config whose diff_id is not the layer's uncompressed digest (its
    blob digest right) is refused, as are diff_ids that are not one per
    layer; nothing is written."""
    layer = gzip.compress(tar_of({"etc/passwd": b"root:x:0:0\n"}), mtime=0)
    wrong = "sha256:" + hashlib.sha256(b"another stream").hexdigest()
    out = tmp_path / "out"
    for name, rootfs, words in (
        ("altered", {"type": "layers", "diff_ids": [wrong]}, f"the image's config says {wrong}"),
        ("short", {"type": "layers", "diff_ids": []}, "lists 0 diff_ids for 1 layers"),
    ):
        source = make_image(tmp_path / name, [(TAR + "+gzip", layer)], {"rootfs": rootfs})
        with pytest.raises((EncapsulateError, MappingError), match=words) as raised:
            build_image(BuildConfig(ImageOrigin(source), f"oci:{out}", epoch=EPOCH))
        assert "\n" not in str(raised.value)
        assert not out.exists()
    right = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    good = make_image(
        tmp_path / "good", [(TAR + "+gzip", layer)], {"rootfs": {"type": "layers", "diff_ids": [right]}}
    )
    assert build_image(BuildConfig(ImageOrigin(good), f"oci:{out}", epoch=EPOCH)).image is not None


def test_a_layer_is_checked_against_its_descriptor_size(tmp_path: Path) -> None:
    """A manifest whose layer size is not the blob's (its digest right) is refused."""
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a" * 5000}))])
    document = json.loads((tmp_path / "src/index.json").read_text())
    path = tmp_path / "src/blobs/sha256" / document["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(path.read_bytes())
    manifest["layers"][0]["size"] += 1
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "src/blobs/sha256" / digest).write_bytes(data)
    document["manifests"][0] |= {"digest": f"sha256:{digest}", "size": len(data)}
    (tmp_path / "src/index.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    with pytest.raises(MappingError, match=r"the blob has \d+ bytes, and the manifest says \d+"):
        build_image(BuildConfig(ImageOrigin(source), f"oci:{out}", epoch=EPOCH))
    assert not out.exists()


def test_a_corrupt_layer_writes_nothing(tmp_path: Path) -> None:
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a" * 5000}))])
    blob = next(p for p in (tmp_path / "src/blobs/sha256").iterdir() if p.stat().st_size > 5000)
    data = bytearray(blob.read_bytes())
    data[600] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(MappingError, match=blob.name[:12]):
        build_image(BuildConfig(ImageOrigin(source), f"oci:{out}", epoch=EPOCH))
    assert not out.exists()


def test_a_missing_image(tmp_path: Path) -> None:
    with pytest.raises(EncapsulateError, match="nothing"):
        build_image(BuildConfig(ImageOrigin(f"oci:{tmp_path / 'nothing'}"), f"oci:{tmp_path / 'out'}"))
    assert not (tmp_path / "out").exists()


def test_the_command_line(run_cli: RunCli, tmp_path: Path, sample_tree: Path) -> None:
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a"}))])
    before = snapshot(tmp_path / "src")
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    one = run_cli(
        "--from", source, f"oci:{tmp_path}/out:one", "--json", program="container-encapsulate", env=env
    )
    two = run_cli("rechunk", source, f"oci:{tmp_path}/out:two", "--json", env=env)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert json.loads(one.stdout)["manifest"] == json.loads(two.stdout)["manifest"]
    library = build_image(BuildConfig(ImageOrigin(source), f"oci:{tmp_path}/lib", epoch=EPOCH))
    assert library.image is not None and library.image.manifest.digest == json.loads(one.stdout)["manifest"]
    assert snapshot(tmp_path / "src") == before
    both = run_cli(
        "--from", source, "--rootfs", str(sample_tree), f"oci:{tmp_path}/x", program="container-encapsulate"
    )
    assert both.returncode == 2 and "--rootfs DIR and --from IMGREF: give one origin" in both.stderr
    with pytest.raises(ConfigError, match="--keep-base keeps the base's plain layers"):
        BuildConfig(ImageOrigin(source), "oci:x", format=Format.OSTREE, keep_base=source).check()


def _layer(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar layer: (name, content) files, (name/, None) directories."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_keep_base_keeps_the_base_layers_and_chunks_what_was_added(tmp_path: Path) -> None:
    base_layer = _layer(
        [("etc/", None), ("etc/a", b"a" * 300), ("etc/b", b"b" * 300), ("srv/", None), ("srv/d/", None),
         ("srv/d/x", b"x"), ("srv/e", b"e")]
    )  # fmt: skip
    added = _layer(
        [("etc/", None), ("etc/a", b"A" * 300), ("etc/.wh.b", b""), ("opt/", None), ("opt/new", b"n" * 5000),
         ("srv/", None), ("srv/.wh.d", b""), ("srv/d", b"now a file"), ("srv/e/", None), ("srv/e/f", b"f")]
    )  # fmt: skip
    base = make_image(tmp_path / "base", [(TAR, base_layer)], tag="base")
    image = make_image(tmp_path / "img", [(TAR, base_layer), (TAR, added)], tag="img")
    out = tmp_path / "out"
    result = build_image(
        BuildConfig(ImageOrigin(image), f"oci:{out}:r", keep_base=base, max_layers=5, epoch=EPOCH)
    )
    assert result.image is not None
    base_digest = json.loads((tmp_path / "base/index.json").read_text())["manifests"][0]["digest"]
    base_manifest = json.loads((tmp_path / "base/blobs/sha256" / base_digest[7:]).read_text())
    new = manifest(out, "r")
    # The base's layer is the same blob: a client holding the base pulls nothing for it.
    assert new["layers"][0]["digest"] == base_manifest["layers"][0]["digest"]
    assert 2 <= len(new["layers"]) <= 5
    # Only what was added is planned above it.
    planned = {c.name: c.files for c in result.mapping.components}
    assert sum(planned.values()) == 4  # etc/a, opt/new, srv/d (a file now), srv/e/f
    # The image unpacks to what the original unpacks to: whiteouts and replacements hold.
    assert_same_tree(
        umoci_unpack(tmp_path / "img", "img", tmp_path / "u1"), umoci_unpack(out, "r", tmp_path / "u2")
    )
    assert not (tmp_path / "u2/rootfs/etc/b").exists()
    assert (tmp_path / "u2/rootfs/srv/d").read_bytes() == b"now a file"


def test_keep_base_writes_nothing_the_base_holds_again(tmp_path: Path) -> None:
    """The layers above a kept base hold what the image added or changed, and
    no entry the base holds as it is: a client holding the base downloads the
    added file and a few tar headers, not the base again."""
    bash, curl = bytes(range(256)) * 400, b"curl" * 4000
    base_layer = _layer([("usr/", None), ("usr/bin/", None), ("usr/bin/bash", bash), ("etc/", None),
                         ("etc/hostname", b"host\n")])  # fmt: skip
    added = _layer([("usr/", None), ("usr/bin/", None), ("usr/bin/curl", curl)])
    base = make_image(tmp_path / "base", [(TAR, base_layer)], tag="base")
    image = make_image(tmp_path / "img", [(TAR, base_layer), (TAR, added)], tag="img")
    out = tmp_path / "out"
    build_image(BuildConfig(ImageOrigin(image), f"oci:{out}:r", keep_base=base, max_layers=5, epoch=EPOCH))
    layers = manifest(out, "r")["layers"]
    base_layers = manifest(tmp_path / "base", "base")["layers"]
    assert layers[0]["digest"] == base_layers[0]["digest"]
    in_base = layer_entries(tmp_path / "base", base_layers[0]["digest"])
    above = [layer_entries(out, layer["digest"]) for layer in layers[1:]]
    files = [name for entries in above for name, e in entries.items() if e[0] != tarfile.DIRTYPE]
    assert files == ["usr/bin/curl"]
    for entries in above:
        for name, e in entries.items():
            assert e[0] == tarfile.DIRTYPE or in_base.get(name) != e, name
    # What a client holding the base downloads: the added file's layer and
    # the layer of directories, compressed; nothing near the base's size.
    download = sum(layer["size"] for layer in layers[1:])
    assert download < len(gzip.compress(curl)) + 2 * 1024, download
    assert download < base_layers[0]["size"] / 4
    assert_same_tree(
        umoci_unpack(tmp_path / "img", "img", tmp_path / "u1"), umoci_unpack(out, "r", tmp_path / "u2")
    )


def test_keep_base_matches_layers_by_diff_id_and_keeps_the_bases_blobs(tmp_path: Path) -> None:
    """The base as other blobs than the image's first layers (gzip here, an
    uncompressed tar there, as containers-storage and a registry give the
    same layer): matched by diff_id, and the new image keeps the base's own
    blob, so a client holding the base downloads nothing for it."""
    base_tar = _layer([("etc/", None), ("etc/a", b"a" * 3000)])
    added = _layer([("etc/", None), ("etc/b", b"b" * 300)])
    diff_id = "sha256:" + hashlib.sha256(base_tar).hexdigest()
    rootfs = {"type": "layers", "diff_ids": [diff_id]}
    base = make_image(
        tmp_path / "base", [(TAR + "+gzip", gzip.compress(base_tar, mtime=0))], {"rootfs": rootfs}, "base"
    )
    image = make_image(tmp_path / "img", [(TAR, base_tar), (TAR, added)], tag="img")
    out = tmp_path / "out"
    build_image(BuildConfig(ImageOrigin(image), f"oci:{out}:r", keep_base=base, max_layers=5, epoch=EPOCH))
    base_layer = manifest(tmp_path / "base", "base")["layers"][0]
    new = manifest(out, "r")
    assert new["layers"][0] == {k: base_layer[k] for k in ("mediaType", "digest", "size")}
    assert (
        json.loads((out / "blobs/sha256" / new["config"]["digest"][7:]).read_text())["rootfs"]["diff_ids"][0]
        == diff_id
    )
    files = [
        n
        for layer in new["layers"][1:]
        for n, e in layer_entries(out, layer["digest"]).items()
        if e[0] != tarfile.DIRTYPE
    ]
    assert files == ["etc/b"]
    assert_same_tree(
        umoci_unpack(tmp_path / "img", "img", tmp_path / "u1"), umoci_unpack(out, "r", tmp_path / "u2")
    )
    # A base blob that is not what its diff_id says is refused, and nothing is written.
    lying = make_image(
        tmp_path / "lying", [(TAR + "+gzip", gzip.compress(added, mtime=0))], {"rootfs": rootfs}, "base"
    )
    with pytest.raises(MappingError, match="uncompressed stream is sha256:"):
        build_image(
            BuildConfig(
                ImageOrigin(image), f"oci:{tmp_path}/no:r", keep_base=lying, max_layers=5, epoch=EPOCH
            )
        )
    assert not (tmp_path / "no").exists()


def test_an_image_without_changelogs_takes_its_configs_created_time(tmp_path: Path) -> None:
    """No SOURCE_DATE_EPOCH and no Debian changelog (a slim image, or not a
    Debian one): the image's time is the source config's ``created``, so two
    builds give the same digest; without it, one clear error."""
    layer = _layer([("etc/", None), ("etc/os-release", b"ID=slim\n")])
    image = make_image(tmp_path / "img", [(TAR, layer)], {"created": "2025-03-04T05:06:07.987654321Z"})
    digests = []
    for run in ("one", "two"):
        result = build_image(BuildConfig(ImageOrigin(image), f"oci:{tmp_path}/{run}:r"))
        assert result.epoch == 1_741_064_767
        digests.append(manifest(tmp_path / run, "r"))
        config = json.loads(
            (tmp_path / run / "blobs/sha256" / digests[-1]["config"]["digest"][7:]).read_text()
        )
        assert config["created"] == "2025-03-04T05:06:07Z"
    assert digests[0] == digests[1]
    for created in (None, "0001-01-01T00:00:00Z"):
        bare = make_image(tmp_path / f"bare{created is None}", [(TAR, layer)], {"created": created})
        with pytest.raises(EncapsulateError, match=r"no timestamp for the image: .* no created time"):
            build_image(BuildConfig(ImageOrigin(bare), f"oci:{tmp_path}/none:r"))
    assert not (tmp_path / "none").exists()


def test_keep_base_refuses_an_unrelated_base(tmp_path: Path) -> None:
    base = make_image(tmp_path / "base", [(TAR, _layer([("a", b"a")]))], tag="base")
    image = make_image(
        tmp_path / "img", [(TAR, _layer([("b", b"b")])), (TAR, _layer([("c", b"c")]))], tag="img"
    )
    with pytest.raises(EncapsulateError, match=r"its layer 1 is not layer 1 of .*base: diff_id sha256:"):
        build_image(BuildConfig(ImageOrigin(image), f"oci:{tmp_path}/out", keep_base=base, epoch=EPOCH))
    with pytest.raises(ConfigError, match="--keep-base needs an image origin"):
        BuildConfig(RootfsOrigin(str(tmp_path)), "oci:x", keep_base=base).check()


def test_an_image_of_a_tree_rechunks_to_the_image_of_the_tree(sample_tree: Path, tmp_path: Path) -> None:
    """A one-layer image of the sample tree (as a squashed Containerfile build
    gives), re-chunked, is byte for byte the image --rootfs makes of the tree:
    the same entries, owners, plan and layers."""
    layer = subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--format=posix",
            "-C",
            str(sample_tree),
            "-cf",
            "-",
            ".",
        ],
        check=True,
        capture_output=True,
    ).stdout
    source = make_image(tmp_path / "src", [(TAR, layer)], {"architecture": "amd64", "variant": None})
    from_image = build_image(BuildConfig(ImageOrigin(source), f"oci:{tmp_path}/a", max_layers=8, epoch=EPOCH))
    from_tree = build_image(
        BuildConfig(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/b", max_layers=8, epoch=EPOCH)
    )
    assert from_image.image is not None and from_tree.image is not None
    assert [b.descriptor.digest for b in from_image.image.layers] == [
        b.descriptor.digest for b in from_tree.image.layers
    ]
    assert from_image.plan == from_tree.plan
    assert from_image.image.manifest.digest == from_tree.image.manifest.digest


def _raw_tar(members: list[tarfile.TarInfo]) -> bytes:
    """A tar layer of header-only members, names taken as they are."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.size else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, 0o644, link
    return info


def _bad_images(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Each kind of bad image the issue names: (IMGREF, words of its error line)."""
    good = (TAR, tar_of({"a": b"a" * 5000}))
    images = {
        "climbs": ([good, (TAR, _raw_tar([_member("../escape")]))], "climbs out of the root"),
        "absolute": ([good, (TAR, _raw_tar([_member("/etc/escape")]))], "absolute path"),
        "hardlink": (
            [(TAR, _raw_tar([_member("b", tarfile.LNKTYPE, link="missing")]))],
            "its target is not",
        ),
        "unknown": ([good, ("application/vnd.example.not-a-layer", b"x")], "not a tar layer"),
        "encrypted": (
            [good, ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", b"x")],
            "is encrypted",
        ),
    }
    out = {name: (make_image(tmp_path / name, layers), words) for name, (layers, words) in images.items()}
    corrupt = make_image(tmp_path / "corrupt", [good])
    blob = next(p for p in (tmp_path / "corrupt/blobs/sha256").iterdir() if p.stat().st_size > 5000)
    blob.write_bytes(blob.read_bytes()[:3000])  # truncated: its digest no longer matches
    out["truncated"] = (corrupt, blob.name[:12])
    out["missing"] = (f"oci:{tmp_path / 'nothing'}:t", "nothing")
    return out


def test_bad_images_give_one_line_exit_1_and_write_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    # A destination already holding an image: nothing of it may change.
    ok = make_image(tmp_path / "ok", [(TAR, tar_of({"a": b"a"}))])
    first = run_cli(
        "--from", ok, f"oci:{dest}:kept", program="container-encapsulate", env={"SOURCE_DATE_EPOCH": "1"}
    )
    assert first.returncode == 0, first.stderr
    before = snapshot(dest)
    for name, (ref, words) in _bad_images(tmp_path).items():
        proc = run_cli("--from", ref, f"oci:{dest}:{name}", program="container-encapsulate")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (name, proc.stderr)
        assert lines[0].startswith("container-encapsulate: error:") and words in lines[0], (name, lines[0])
        assert snapshot(dest) == before, name


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"config": {"Cmd": 42}}, "config.Cmd"),
        ({"config": {"Env": "x"}}, "config.Env"),
        ({"config": {"Labels": []}}, "config.Labels"),
        ({"config": {"ExposedPorts": 3}}, "config.ExposedPorts"),
        ({"config": {"Volumes": ["/v"]}}, "config.Volumes"),
        ({"history": "x"}, "history"),
        ({"history": [{"created_by": 1}]}, "history[0].created_by"),
        ({"architecture": 7}, "architecture"),
        ({"os.features": [1]}, '["os.features"][0]'),
    ],
)
def test_a_source_config_against_the_schema(
    run_cli: RunCli, tmp_path: Path, config: dict[str, Any], field: str
) -> None:
    """A field of the wrong type in the origin's config is refused (exit 1,
    one line naming the image, the field and what to do), not copied into an
    image that ``debchunk validate`` would reject; nothing is written."""
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a"}))], config)
    dest = tmp_path / "dest"
    proc = run_cli("rechunk", source, f"oci:{dest}:t", env={"SOURCE_DATE_EPOCH": "1"})
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"debchunk: error: {source}: config sha256:"), proc.stderr
    assert f": {field} does not follow the OCI image-spec config schema: " in proc.stderr
    assert proc.stderr.endswith(f"; {INVALID_HINT}\n")
    assert not dest.exists()


def test_base_and_prior_configs_against_the_schema(tmp_path: Path) -> None:
    """--keep-base's and --prior's configs are checked as the origin's is."""
    layer = (TAR, _layer([("a", b"a")]))
    image = make_image(tmp_path / "img", [layer, (TAR, _layer([("b", b"b")]))], tag="img")
    bad = make_image(tmp_path / "bad", [layer], {"config": {"Labels": {"k": ["v"]}}}, tag="bad")
    for config in (
        BuildConfig(ImageOrigin(image), f"oci:{tmp_path}/out", epoch=EPOCH, keep_base=bad),
        BuildConfig(ImageOrigin(image), f"oci:{tmp_path}/out", epoch=EPOCH, prior=bad),
    ):
        with pytest.raises(EncapsulateError) as refused:
            build_image(config)
        message = str(refused.value)
        assert message.startswith(f"{bad}: config sha256:") and ": config.Labels.k does not follow" in message
        assert not (tmp_path / "out").exists()


def test_a_source_manifest_against_the_schema(tmp_path: Path) -> None:
    """The manifest is checked too: an annotation that is not a string is named."""
    source = make_image(tmp_path / "src", [(TAR, tar_of({"a": b"a"}))])
    layout = tmp_path / "src"
    index = json.loads((layout / "index.json").read_text())
    old = index["manifests"][0]
    document = json.loads((layout / "blobs/sha256" / old["digest"][7:]).read_text())
    document["annotations"] = {"n": 1}
    index["manifests"][0] = {**old, **put_blob(layout, json.dumps(document).encode())}
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(EncapsulateError, match=r"manifest sha256:\w+: annotations.n does not follow"):
        build_image(BuildConfig(ImageOrigin(source), f"oci:{tmp_path}/out", epoch=EPOCH))
