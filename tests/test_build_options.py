"""encapsulate.build_image's options: the previous build (a plan, an image
label, an archive, a manifest), commit metadata, image config, cmd, content
metadata, comparison with another build, the image's time."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from encapsulate import (
    BuildConfig,
    CommitOrigin,
    EncapsulateError,
    Format,
    Platform,
    RootfsOrigin,
    build_image,
)
from encapsulate.cli.render import format_plan, format_result
from tests.conftest import RunCli
from tests.images import (
    EPOCH,
    build,
    components_of,
    digests,
    image_config,
    image_labels,
    manifest,
    packages_tree,
    tags,
)
from tests.sample import blob, build_sample, commit


@pytest.fixture(scope="module")
def versioned_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample committed as ``sample``, then as ``v`` with a version and a later timestamp."""
    root = tmp_path_factory.mktemp("versioned")
    repo = root / "repo"
    commit(build_sample(root / "tree"), repo, "sample")
    subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={repo}",
            "--tree=ref=sample",
            "-b",
            "v",
            "-s",
            "v",
            "--add-metadata-string=version=13.2",
            "--timestamp=2026-02-01T00:00:00Z",
        ],
        check=True,
        capture_output=True,
    )
    return repo


def test_prior_keeps_unchanged_layers(tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 12, 50_000, 10)
    origin = RootfsOrigin(str(root))
    plan = tmp_path / "plan.json"
    first = build(origin, f"oci:{tmp_path}/img:1", max_layers=8, plan_json=str(plan))
    # One package changes: new content and a new version in the dpkg database.
    (root / "usr/lib/pkg05/data").write_bytes(blob("changed", 123_456))
    status = root / "usr/share/dpkg/database/status"
    status.write_text(status.read_text().replace("Package: pkg05\n", "Package: pkg05\n", 1))
    second = build(origin, f"oci:{tmp_path}/img:2", max_layers=8, prior_plan=str(plan))
    old = set(digests(first))
    changed = [c for d, c in components_of(second).items() if d not in old]
    assert len(changed) == 1 and "pkg05" in changed[0]
    # Both images stay in the layout.
    assert tags(tmp_path / "img") == ["1", "2"]
    # The components label tells which component changed, without the layers.
    before, after = (json.loads(image_labels(tmp_path / "img", t)["org.debchunk.components"]) for t in "12")
    assert before.keys() == after.keys()
    assert [n for n in after if after[n]["digest"] != before[n]["digest"]] == ["pkg05"]
    assert after["pkg05"]["size"] - before["pkg05"]["size"] == 123_456 - 6 * 50_000


def test_prior_from_image_label_archive_and_manifest(tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 10, 40_000, 7)
    origin = RootfsOrigin(str(root))
    first = build(origin, f"oci:{tmp_path}/img:1", max_layers=6)
    old = set(digests(first))
    (root / "usr/lib/pkg03/data").write_bytes(blob("new", 99_999))
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{tmp_path}/img:1", f"oci-archive:{tmp_path}/img.tar"], check=True
    )
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(tmp_path / "img", "1")))
    results = []
    for option in (
        {"prior": f"oci:{tmp_path}/img:1"},
        {"prior": f"oci-archive:{tmp_path}/img.tar"},
        {"previous_build_manifest": str(tmp_path / "manifest.json")},
    ):
        image = build(origin, f"oci:{tmp_path}/out", max_layers=6, **option)
        changed = [c for d, c in components_of(image).items() if d not in old]
        assert len(changed) == 1 and "pkg03" in changed[0], option
        results.append(image.manifest.digest)
    # The label and the annotations carry the same plan.
    assert len(set(results)) == 1
    with pytest.raises(EncapsulateError, match=r"missing.*not an OCI image layout"):
        build(origin, f"oci:{tmp_path}/out", prior=f"oci:{tmp_path}/missing")


def test_metadata_config_cmd_and_contentmeta(versioned_repo: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"author": "builder", "config": {"Env": ["A=1"], "Labels": {"x": "y"}}}))
    build(
        CommitOrigin(str(versioned_repo), "v"),
        f"oci:{tmp_path}/img:1",
        copymeta=("version",),
        copymeta_opt=("absent",),
        image_config=str(cfg),
        cmd=("/usr/bin/bash", "-l"),
        write_contentmeta_json=str(tmp_path / "cm.json"),
        labels={"org.example": "1"},
    )
    config = image_config(tmp_path / "img", "1")
    runtime = config["config"]
    assert (
        config["author"] == "builder"
        and runtime["Env"] == ["A=1"]
        and runtime["Cmd"] == ["/usr/bin/bash", "-l"]
    )
    labels = runtime["Labels"]
    assert labels["version"] == labels["org.opencontainers.image.version"] == "13.2"
    assert labels["x"] == "y" and labels["org.example"] == "1" and "absent" not in labels
    # The epoch given is the image's time, not the commit's timestamp.
    assert config["created"] == "2026-01-01T00:00:00Z"
    content = json.loads((tmp_path / "cm.json").read_text())
    assert {"identifier", "name", "srcid", "change_time_offset", "change_frequency"} <= set(content[0])
    assert "glibc" in [c["name"] for c in content]


def test_commit_timestamp_without_source_date_epoch(versioned_repo: Path, tmp_path: Path) -> None:
    result = build_image(
        BuildConfig(CommitOrigin(str(versioned_repo), "v"), f"oci:{tmp_path}/img", epoch=None)
    )
    assert result.epoch == 1_769_904_000  # 2026-02-01, the commit's timestamp
    assert image_config(tmp_path / "img", "latest")["created"] == "2026-02-01T00:00:00Z"


def test_dry_run_compare_and_refusals(versioned_repo: Path, tmp_path: Path) -> None:
    origin = CommitOrigin(str(versioned_repo), "v")
    dry = build_image(BuildConfig(origin, f"oci:{tmp_path}/dry", max_layers=5, dry_run=True, epoch=EPOCH))
    assert dry.image is None and "of at most 5" in format_plan(dry.plan)
    assert not (tmp_path / "dry").exists()
    first = build(origin, f"oci:{tmp_path}/img:1", max_layers=8)
    result = build_image(
        BuildConfig(
            origin,
            f"oci:{tmp_path}/img:2",
            max_layers=9,
            compare_with_build=f"oci:{tmp_path}/img:1",
            epoch=EPOCH,
        )
    )
    assert result.image is not None and result.comparison is not None
    have = set(digests(first))
    fresh = [b for b in result.image.layers if b.descriptor.digest not in have]
    assert result.comparison.to_json() == {
        "imgref": f"oci:{tmp_path}/img:1",
        "reused_layers": len(result.image.layers) - len(fresh),
        "layers": len(result.image.layers),
        "download_bytes": sum(b.descriptor.size for b in fresh),
        "total_bytes": sum(b.descriptor.size for b in result.image.layers),
    }
    assert result.comparison.reused_layers > 0 and "layers reused" in format_result(result)
    with pytest.raises(EncapsulateError, match="--copymeta missing"):
        build(origin, f"oci:{tmp_path}/img:3", copymeta=("missing",))
    assert tags(tmp_path / "img") == ["1", "2"]


@pytest.mark.parametrize("layer_format", list(Format))
def test_a_new_date_changes_only_the_first_layer(
    sample_repos: dict[str, Path], sample_tree: Path, tmp_path: Path, layer_format: Format
) -> None:
    # Two builds of the same content a day apart (SOURCE_DATE_EPOCH or, for a
    # commit, its timestamp): the component layers are the same blobs, so a
    # client holding the first image downloads only the first layer.
    origin = (
        RootfsOrigin(str(sample_tree))
        if layer_format is Format.PLAIN
        else CommitOrigin(str(sample_repos["bare-user"]), "sample")
    )
    before, after = (
        digests(build(origin, f"oci:{tmp_path}/img:{n}", max_layers=8, format=layer_format, epoch=epoch))
        for n, epoch in enumerate((EPOCH, EPOCH + 86_400))
    )
    assert len(before) == len(after) > 2
    assert before[0] != after[0] and before[1:] == after[1:]


def _platform(layout: Path, tag: str) -> tuple[dict[str, str], dict[str, object]]:
    """The tag's index entry platform and its image config."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    return entry["platform"], image_config(layout, tag)


def test_architecture_from_the_tree_and_from_arch(tmp_path: Path) -> None:
    tree = build_sample(tmp_path / "tree")
    origin = RootfsOrigin(str(tree))
    (tree / "usr/share/dpkg/database/arch-native").write_text("arm64\n")
    build(origin, f"oci:{tmp_path}/img:tree")
    platform, config = _platform(tmp_path / "img", "tree")
    assert platform == {"architecture": "arm64", "os": "linux"}
    assert (config["architecture"], config.get("variant")) == ("arm64", None)
    # Debian's and the kernel's names are given as OCI's.
    for arch, expected in (
        ("armhf", ("arm", "v7")),
        ("x86_64", ("amd64", None)),
        ("ppc64el", ("ppc64le", None)),
    ):
        build(origin, f"oci:{tmp_path}/img:{arch}", platform=Platform.of(arch))
        platform, config = _platform(tmp_path / "img", arch)
        assert (config["architecture"], config.get("variant")) == expected
        assert (platform["architecture"], platform.get("variant")) == expected
    # Without arch-native, dpkg's own architecture (the installed dpkg package) names it.
    (tree / "usr/share/dpkg/database/arch-native").unlink()
    status = tree / "usr/share/dpkg/database/status"
    status.write_text(
        status.read_text()
        + "\nPackage: dpkg\nStatus: install ok installed\nVersion: 1.22.21\nArchitecture: riscv64\n"
    )
    info = tree / "usr/share/dpkg/database/info"
    (info / "dpkg.list").write_text("")
    build(origin, f"oci:{tmp_path}/img:status")
    assert _platform(tmp_path / "img", "status")[1]["architecture"] == "riscv64"


def test_cmd_from_the_commit_metadata(versioned_repo: Path, tmp_path: Path) -> None:
    subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={versioned_repo}",
            "--tree=ref=sample",
            "-b",
            "with-cmd",
            "--timestamp=2026-02-01T00:00:00Z",
            "--add-metadata=ostree.container-cmd=['/usr/bin/bash', '-l']",
        ],
        check=True,
        capture_output=True,
    )
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"Cmd": ["/bin/sh"], "Env": ["A=1"]}))
    origin = CommitOrigin(str(versioned_repo), "with-cmd")
    # The commit's command wins over the image config's, as ostree-ext takes it ...
    build(origin, f"oci:{tmp_path}/img:meta", image_config=str(cfg))
    runtime = image_config(tmp_path / "img", "meta")["config"]
    assert runtime["Cmd"] == ["/usr/bin/bash", "-l"] and runtime["Env"] == ["A=1"]
    # ... and --cmd over both.
    build(origin, f"oci:{tmp_path}/img:cli", image_config=str(cfg), cmd=("/sbin/init",))
    assert image_config(tmp_path / "img", "cli")["config"]["Cmd"] == ["/sbin/init"]


def test_bootc_labels_a_root_tree_bootable(run_cli: RunCli, tmp_path: Path) -> None:
    tree = build_sample(tmp_path / "tree")
    proc = run_cli(
        "--rootfs",
        str(tree),
        f"oci:{tmp_path}/img:b",
        "--bootc",
        program="container-encapsulate",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    assert proc.returncode == 0, proc.stderr
    assert image_labels(tmp_path / "img", "b")["containers.bootc"] == "1"
    assert manifest(tmp_path / "img", "b")["annotations"]["containers.bootc"] == "1"
    build(RootfsOrigin(str(tree)), f"oci:{tmp_path}/img:plain")
    assert "containers.bootc" not in image_labels(tmp_path / "img", "plain")


def test_the_destination_is_the_prior(tmp_path: Path) -> None:
    """Without a previous build given, the image the destination's tag holds
    is the previous build: a rebuild into the same tag gives what --prior of
    that image gives, and says so; --no-prior plans from scratch."""
    from encapsulate import ConfigError

    root = packages_tree(tmp_path / "t", 12, 50_000, 10)
    origin = RootfsOrigin(str(root))
    build(origin, f"oci:{tmp_path}/img:t", max_layers=8)
    subprocess.run(["skopeo", "copy", "-q", f"oci:{tmp_path}/img:t", f"oci:{tmp_path}/old:t"], check=True)
    (root / "usr/lib/pkg05/data").write_bytes(blob("changed", 123_456))
    with_prior = build(origin, f"oci:{tmp_path}/explicit:t", max_layers=8, prior=f"oci:{tmp_path}/old:t")
    fresh = build(origin, f"oci:{tmp_path}/fresh:t", max_layers=8)
    result = build_image(BuildConfig(origin, f"oci:{tmp_path}/img:t", max_layers=8, epoch=EPOCH))
    assert result.prior_source == f"oci:{tmp_path}/img:t" and result.image is not None
    assert result.image.manifest.digest == with_prior.manifest.digest
    assert "previous build: the image" in format_result(result)
    assert result.to_json()["prior_from_destination"] == f"oci:{tmp_path}/img:t"
    scratch = build_image(
        BuildConfig(origin, f"oci:{tmp_path}/img:t", max_layers=8, epoch=EPOCH, no_prior=True)
    )
    assert scratch.prior_source is None and scratch.image is not None
    assert scratch.image.manifest.digest == fresh.manifest.digest
    # Another tag of the same layout is no previous build.
    other = build_image(BuildConfig(origin, f"oci:{tmp_path}/img:u", max_layers=8, epoch=EPOCH))
    assert other.prior_source is None
    with pytest.raises(ConfigError, match="--no-prior and --prior"):
        BuildConfig(origin, f"oci:{tmp_path}/x", prior=f"oci:{tmp_path}/old:t", no_prior=True).check()
