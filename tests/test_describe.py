"""encapsulate.describe: the image config built in one place: the
--image-config file, an image origin's config, the commit's command and
--cmd, labels, the image's time and its platform, each in its order of
precedence."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from encapsulate import BuildConfig, CommitOrigin, EncapsulateError, ImageOrigin, RootfsOrigin
from encapsulate.describe import (
    LAYER_LABELS,
    ImageDescription,
    base_config,
    describe_image,
    image_epoch,
    image_platform,
    kept_config,
    labels_asked,
    read_image_config_file,
)
from encapsulate.oci.model import MEDIA_CONFIG, Descriptor, Digest, ImageConfig
from encapsulate.oci.platform import Platform
from mapping import Mapping, Tree

ROOTFS = RootfsOrigin("tree")


class _Commit(Tree):
    """A tree with commit metadata, as a CommitTree has."""

    def __init__(self, metadata: dict[str, Any], timestamp: int | None) -> None:
        super().__init__("commit", ())
        self.metadata = metadata
        self.timestamp = timestamp


def _mapping(tree: Tree | None = None, date: dt.datetime | None = None) -> Mapping:
    return Mapping("tree", None, date, (), tree=tree if tree is not None else Tree("tree", ()), owners=())


def _config(**fields: Any) -> BuildConfig:
    return BuildConfig(**{"origin": ROOTFS, "destination": "oci:out", **fields})


def _write(tmp_path: Path, value: object) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(value))
    return str(path)


def _image_config(document: dict[str, Any]) -> ImageConfig:
    required = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    data = json.dumps({**required, **document}).encode()
    return ImageConfig.parse(data, Descriptor(MEDIA_CONFIG, Digest.of(data), len(data)), "test")


def test_image_config_file_whole_or_inner(tmp_path: Path) -> None:
    inner = {"Env": ["A=1"], "Labels": {"x": "y"}}
    assert read_image_config_file(_write(tmp_path, inner)) == {"config": inner}
    whole = {"author": "me", "config": inner}
    assert read_image_config_file(_write(tmp_path, whole)) == whole
    for bad, words in (
        ({"author": "me", "Env": []}, "mixes top-level keys (author) with runtime keys (Env)"),
        ({"Frobnicate": 1}, "unknown key 'Frobnicate'"),
        ({"config": []}, "config.json: config does not follow the OCI image-spec config schema"),
        ({"Cmd": 42}, "config.json: config.Cmd does not follow the OCI image-spec config schema"),
        ({"config": {"Labels": {"a": 1}}}, "config.json: config.Labels.a does not follow"),
        ({"author": 1}, "config.json: author does not follow"),
        ([1], "image config"),
    ):
        with pytest.raises(EncapsulateError, match=words.replace("(", r"\(").replace(")", r"\)")):
            read_image_config_file(_write(tmp_path, bad))


def test_an_image_origin_keeps_its_runtime_settings_not_its_layer_labels() -> None:
    source = {
        "architecture": "arm64",
        "variant": "v8",
        "author": "them",
        "config": {
            "Env": ["PATH=/usr/bin"],
            "Cmd": ["/bin/sh"],
            "Healthcheck": {"Test": ["NONE"]},
            "Labels": {"keep": "1", "drop": "2", **{name: "old" for name in LAYER_LABELS}},
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    kept = kept_config(_image_config(source), remove_labels=("drop",))
    assert kept == {
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Labels": {"keep": "1"}},
        "variant": "v8",
        "author": "them",
    }


def test_the_file_goes_over_the_origin_and_cmd_over_both() -> None:
    source = _image_config(
        {"config": {"Env": ["A=source"], "Cmd": ["old"], "Labels": {"a": "source", "b": "source"}}}
    )
    file = {"config": {"Env": ["A=file"], "Labels": {"b": "file"}}}
    document = base_config(_config(), _mapping(), file, source)
    assert document["config"] == {"Env": ["A=file"], "Cmd": ["old"], "Labels": {"a": "source", "b": "file"}}
    document = base_config(_config(cmd=("new", "x")), _mapping(), file, source)
    assert document["config"]["Cmd"] == ["new", "x"]


def test_the_commits_command_unless_cmd_is_given() -> None:
    commit = _mapping(_Commit({"ostree.container-cmd": ["/usr/bin/bash", "-l"]}, 1))
    config = _config(origin=CommitOrigin("repo", "ref"))
    assert base_config(config, commit, {"config": {"Cmd": ["file"]}}, None)["config"]["Cmd"] == [
        "/usr/bin/bash",
        "-l",
    ]
    assert base_config(_config(origin=config.origin, cmd=("mine",)), commit, None, None)["config"]["Cmd"] == [
        "mine"
    ]
    broken = _mapping(_Commit({"ostree.container-cmd": "bash"}, 1))
    with pytest.raises(EncapsulateError, match="not a list of strings"):
        base_config(config, broken, None, None)


def test_labels_copied_set_and_removed() -> None:
    commit = _mapping(_Commit({"version": "13.2", "rpmostree.inputhash": {"a": 1}}, 1))
    config = _config(
        origin=CommitOrigin("repo", "ref"),
        labels={"asked": "1", "gone": "x"},
        remove_labels=("gone",),
        copymeta=("version",),
        copymeta_opt=("rpmostree.inputhash", "absent"),
        bootc=True,
    )
    assert labels_asked(config, commit) == {
        "asked": "1",
        "version": "13.2",
        "rpmostree.inputhash": '{"a": 1}',
        "containers.bootc": "1",
    }
    with pytest.raises(EncapsulateError, match="--copymeta absent"):
        labels_asked(_config(origin=config.origin, copymeta=("absent",)), commit)


def test_the_images_time_never_the_wall_clock() -> None:
    date = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    commit = _Commit({}, 1_700_000_000)
    assert image_epoch(_config(epoch=42), _mapping(commit, date)) == 42
    assert image_epoch(_config(), _mapping(commit, date)) == 1_700_000_000
    assert image_epoch(_config(), _mapping(None, date)) == int(date.timestamp())
    with pytest.raises(EncapsulateError, match="SOURCE_DATE_EPOCH"):
        image_epoch(_config(), _mapping())


def test_the_platform_in_its_order() -> None:
    arm = _image_config({"architecture": "arm", "variant": "v7", "os": "linux"})
    dpkg = replace(_mapping(), architecture="arm64")
    assert image_platform(_config(platform=Platform.of("ppc64el")), dpkg, arm) == Platform("ppc64le")
    assert image_platform(_config(origin=ImageOrigin("oci:src")), dpkg, arm) == Platform("arm", "v7")
    assert image_platform(_config(), dpkg, None) == Platform("arm64")
    assert image_platform(_config(), replace(dpkg, architecture="armhf"), None) == Platform("arm", "v7")
    assert image_platform(_config(), _mapping(), None) == Platform.host()


def test_the_config_document_puts_the_layers_labels_last() -> None:
    description = ImageDescription(
        1_767_225_600,
        Platform("arm64", "v8"),
        {"asked": "1", "shared": "asked"},
        {
            "author": "me",
            "variant": "old",
            "rootfs": "old",
            "config": {"Labels": {"shared": "base", "b": "2"}},
        },
    )
    document = description.config_document(["sha256:a"], [{"created_by": "x"}], {"shared": "layers"})
    assert document == {
        "author": "me",
        "variant": "v8",
        "architecture": "arm64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Labels": {"shared": "layers", "b": "2", "asked": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:a"]},
        "history": [{"created_by": "x"}],
    }
    assert description.index_platform() == {"architecture": "arm64", "os": "linux", "variant": "v8"}


def test_describe_image_gathers_it_all(tmp_path: Path) -> None:
    file = read_image_config_file(_write(tmp_path, {"Env": ["A=1"]}))
    config = _config(epoch=7, labels={"l": "v"}, platform=Platform.of("aarch64"))
    description = describe_image(config, _mapping(), file, None)
    assert description == ImageDescription(7, Platform("arm64"), {"l": "v"}, {"config": {"Env": ["A=1"]}})
