"""Helpers for tests that build images: a build at a fixed time, reading
manifests and configs back from an OCI layout, and comparing unpacked trees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from encapsulate import BuildConfig, BuildResult, CommitOrigin, RootfsOrigin, build_image
from encapsulate.cli.main import encapsulate_parser
from encapsulate.cli.settings import config_from_args
from encapsulate.write.image import ImageResult
from mapping import read_tree
from mapping.tree import Entry
from tests.sample import Pkg, SampleTree, blob, day

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def build(origin: CommitOrigin | RootfsOrigin, destination: str, **fields: Any) -> ImageResult:
    """``build_image`` at ``EPOCH`` (unless ``epoch`` is given); the image written."""
    result = build_image(BuildConfig(origin=origin, destination=destination, **{"epoch": EPOCH, **fields}))
    assert result.image is not None
    return result.image


def digests(image: ImageResult) -> list[str]:
    """The image's layer digests, in order."""
    return [b.descriptor.digest for b in image.layers]


def components_of(image: ImageResult) -> dict[str, tuple[str, ...]]:
    """Each layer's components, by layer digest."""
    return {b.descriptor.digest: c for b, c in zip(image.layers, image.layer_components, strict=True)}


def _key(e: Entry) -> tuple[object, ...]:
    xattrs = tuple(x for x in e.xattrs if not x[0].startswith(b"user.rootlesscontainers"))
    return (e.type, e.mode, e.uid, e.gid, e.size, e.target, e.content_id, e.rdev, xattrs)


def hardlink_groups(tree: Path) -> list[list[str]]:
    """Paths sharing an inode, in groups."""
    groups: dict[str, list[str]] = {}
    for e in read_tree(RootfsOrigin(str(tree))):
        if e.hardlink:
            groups.setdefault(e.hardlink, []).append(e.path)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def assert_same_tree(source: Path, unpacked: Path, hardlinks: bool = True) -> None:
    """Every path of ``source`` is in ``unpacked`` with the same type, mode,
    owner, size, target, content, device and xattrs (and the same hardlinks)."""
    a = {e.path: e for e in read_tree(RootfsOrigin(str(source))) if e.path}
    b = {e.path: e for e in read_tree(RootfsOrigin(str(unpacked))) if e.path}
    assert sorted(a) == sorted(b)
    for path, e in a.items():
        assert _key(e) == _key(b[path]), path
    if hardlinks:
        assert hardlink_groups(source) == hardlink_groups(unpacked)


def umoci_unpack(layout: Path, tag: str, dest: Path) -> Path:
    """``umoci unpack`` the image; its root filesystem."""
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(dest)], check=True, capture_output=True
    )
    return dest / "rootfs"


def manifest(layout: Path, tag: str) -> dict[str, Any]:
    """The manifest tagged ``tag`` in an OCI layout, read from its file."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    data: dict[str, Any] = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    return data


def image_config(layout: Path, tag: str) -> dict[str, Any]:
    """The config of the image tagged ``tag`` in an OCI layout."""
    digest = manifest(layout, tag)["config"]["digest"]
    data: dict[str, Any] = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    return data


def image_labels(layout: Path, tag: str) -> dict[str, str]:
    """The config labels of the image tagged ``tag`` in an OCI layout."""
    return dict(image_config(layout, tag)["config"]["Labels"])


def tags(layout: Path) -> list[str]:
    """The layout's tags, in index order."""
    index = json.loads((layout / "index.json").read_text())
    return [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]


def packages_tree(root: Path, count: int, size_step: int, days_apart: int) -> Path:
    """A tree of ``count`` packages of growing sizes and staggered changelogs."""
    t = SampleTree(root)
    for i in range(count):
        t.add(
            Pkg(
                f"pkg{i:02d}",
                files={f"/usr/lib/pkg{i:02d}/data": blob(f"p{i}", size_step * (i + 1))},
                changelog=[day(i * days_apart)],
            )
        )
    return t.finish()


def check_ostree_image(layout: Path, tag: str, repo: Path, checksum: str, work: Path) -> None:
    """umoci unpacks it; the repository merged from its layers passes ostree fsck,
    holds the same commit, and checks out to the same tree as the source."""
    rootfs = umoci_unpack(layout, tag, work / "unpacked")
    merged = rootfs / "sysroot/ostree/repo"
    assert "mode=bare-split-xattrs" in (merged / "config").read_text()
    fsck = subprocess.run(["ostree", "fsck", f"--repo={merged}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert (merged / "objects" / checksum[:2] / f"{checksum[2:]}.commit").is_file()
    for where, source in ((work / "from-image", merged), (work / "from-source", repo)):
        subprocess.run(["ostree", f"--repo={source}", "checkout", checksum, str(where)], check=True)
    assert_same_tree(work / "from-source", work / "from-image")
    config = image_config(layout, tag)
    labels = config["config"]["Labels"]
    diff_ids = config["rootfs"]["diff_ids"]
    assert labels["ostree.commit"] == checksum and labels["ostree.final-diffid"] == diff_ids[-1]
    layers = manifest(layout, tag)["layers"]
    assert isinstance(layers, list)
    assert "ostree.components" not in layers[0].get("annotations", {}) and all(
        layer["annotations"]["ostree.components"] for layer in layers[1:]
    )


def rev_parse(repo: Path, ref: str) -> str:
    """The checksum of ``ref`` in ``repo``."""
    return subprocess.run(
        ["ostree", "rev-parse", f"--repo={repo}", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_args(*args: str, epoch: int | None = EPOCH) -> BuildResult:
    """``build_image`` of the ``BuildConfig`` that ``container-encapsulate ARGS``
    makes (through the CLI's settings table, in this process), at ``epoch``."""
    return build_image(config_from_args(encapsulate_parser().parse_intermixed_args(list(args)), epoch))
