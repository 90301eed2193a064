"""Acceptance on a real Debian tree: mmdebstrap trixie minbase + systemd + kernel,
laid out as an OSTree image builder does and committed with ``ostree commit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benches.debtrees import TreeSpec, build_tree, ostree_commit, ostreeify
from encapsulate import CommitOrigin, Format, RootfsOrigin
from mapping import Mapping, build_mapping
from tests.images import assert_same_tree, build, check_ostree_image, hardlink_groups, manifest, umoci_unpack

pytestmark = pytest.mark.realtree


@pytest.fixture(scope="module")
def real_commit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(laid-out tree, repo holding it as ``debian/trixie``)."""
    work = tmp_path_factory.mktemp("real")
    tree = ostreeify(build_tree(TreeSpec("trixie")), work / "tree")
    repo = work / "repo"
    ostree_commit(tree, repo, "debian/trixie")
    return tree, repo


@pytest.fixture(scope="module")
def real_mapping(real_commit: tuple[Path, Path]) -> Mapping:
    return build_mapping(CommitOrigin(str(real_commit[1]), "debian/trixie"))


def _bytes(m: Mapping, *kinds: str) -> int:
    return sum(c.size for c in m.components if c.kind in kinds)


def test_packages_own_the_bytes(real_mapping: Mapping) -> None:
    total = _bytes(real_mapping, "package", "component", "bigfile", "volatile", "unpackaged")
    packaged = _bytes(real_mapping, "package")
    volatile = _bytes(real_mapping, "volatile")
    # Everything that is not rewritten by every build belongs to a package.
    assert packaged / (total - volatile) >= 0.99
    # What is volatile is the initramfs and the dpkg database, not package content.
    assert volatile / total < 0.2
    print(
        f"\npackage bytes: {packaged / (total - volatile):.4%} of non-volatile, {packaged / total:.2%} of all"
    )


def test_glibc_is_one_component(real_mapping: Mapping) -> None:
    glibc = real_mapping.component("glibc")
    assert {"libc6:amd64", "libc-bin", "locales"} <= set(glibc.packages)
    assert real_mapping.owner("usr/lib/x86_64-linux-gnu/libc.so.6") == glibc
    assert real_mapping.owner("usr/sbin/ldconfig") == glibc
    assert real_mapping.owner("usr/etc/locale.alias") == glibc
    assert not any(
        c.kind == "package"
        and c.name != "glibc"
        and c.part_of != "glibc"
        and set(c.packages) & set(glibc.packages)
        for c in real_mapping.components
    )


def test_kernel_image_is_one_component(real_mapping: Mapping) -> None:
    assert real_mapping.tree is not None
    kernels = [c for c in real_mapping.components if any(p.startswith("linux-image-") for p in c.packages)]
    assert len(kernels) == 1
    kernel = kernels[0]
    (moddir,) = [
        e.path for e in real_mapping.tree if e.path.startswith("usr/lib/modules/") and e.path.count("/") == 3
    ]
    assert real_mapping.owner(f"{moddir}/vmlinuz") == kernel
    modules = [
        e for e in real_mapping.tree if e.path.startswith(f"{moddir}/kernel/") and e.type.value == "file"
    ]
    assert len(modules) > 1000
    assert all(real_mapping.owner(e.path) == kernel for e in modules)
    assert kernel.size > 50_000_000


def test_initramfs_and_dpkg_database_are_volatile(real_mapping: Mapping) -> None:
    assert real_mapping.tree is not None
    assert real_mapping.admindir == "usr/share/dpkg/database"
    (initramfs,) = [e.path for e in real_mapping.tree if e.path.endswith("/initramfs.img")]
    assert real_mapping.owner(initramfs) == real_mapping.component("volatile:initramfs")
    volatile = real_mapping.component("volatile:dpkg")
    db = [
        e.path
        for e in real_mapping.tree
        if e.path.startswith("usr/share/dpkg/database/") and e.type.value == "file"
    ]
    # A package's own records (info/NAME.list, .md5sums, scripts) go with the
    # package (mapping.split): they change exactly when it does.
    info = [p for p in db if p.startswith("usr/share/dpkg/database/info/")]
    assert (
        len(info) > 100
        and len(db) > len(info)
        and all(real_mapping.owner(p) == volatile for p in db if p not in info)
    )
    for p in info:
        owner = real_mapping.owner(p)
        assert owner is not None
        name = p.rpartition("/")[2].rpartition(".")[0].partition(":")[0]
        assert owner == volatile or name in {b.partition(":")[0] for b in owner.packages}, p
    assert real_mapping.owner("usr/share/dpkg/database/info/libc6:amd64.list") == real_mapping.component(
        "glibc"
    )
    assert real_mapping.owner("usr/etc/ld.so.cache") == real_mapping.component("volatile")
    assert all(real_mapping.component(n).kind == "volatile" for n in ("volatile", "volatile:dpkg"))


def test_rootfs_gives_the_same_components(real_commit: tuple[Path, Path], real_mapping: Mapping) -> None:
    by_rootfs = build_mapping(RootfsOrigin(str(real_commit[0])))
    assert by_rootfs.to_json()["components"] == real_mapping.to_json()["components"]


def test_commit_passes_fsck_and_reads_back(real_commit: tuple[Path, Path], real_mapping: Mapping) -> None:
    subprocess.run(["ostree", "fsck", f"--repo={real_commit[1]}"], check=True, capture_output=True)
    listing = subprocess.run(
        ["ostree", "ls", "-R", f"--repo={real_commit[1]}", "debian/trixie"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert real_mapping.tree is not None
    assert len(listing) == len(real_mapping.tree)


def test_encapsulated_real_commit(real_commit: tuple[Path, Path], tmp_path: Path) -> None:
    """Both layer formats of the real commit at --max-layers 64: the plain image
    unpacks to the source tree, the ostree image to the same commit."""
    tree, repo = real_commit
    (tmp_path / "o").mkdir()
    checksum = subprocess.run(
        ["ostree", "rev-parse", f"--repo={repo}", "debian/trixie"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for fmt in (Format.OSTREE, Format.PLAIN):
        commit = CommitOrigin(str(repo), "debian/trixie")
        build(commit, f"oci:{tmp_path}/img:{fmt}", max_layers=64, format=fmt)
        layers = manifest(tmp_path / "img", fmt)["layers"]
        assert isinstance(layers, list) and 32 < len(layers) <= 64
        subprocess.run(["skopeo", "inspect", f"oci:{tmp_path}/img:{fmt}"], check=True, capture_output=True)
    check_ostree_image(tmp_path / "img", "ostree", repo, checksum, tmp_path / "o")
    # The plain image of a commit is its checkout, with identical objects as one
    # inode, as in an OSTree deployment.
    plain = umoci_unpack(tmp_path / "img", "plain", tmp_path / "p")
    assert_same_tree(tmp_path / "o/from-source", plain, hardlinks=False)
    objects: dict[str, list[str]] = {}
    for e in build_mapping(CommitOrigin(str(repo), "debian/trixie")).tree or ():
        if e.type.value == "file" and e.content_id:
            objects.setdefault(e.content_id, []).append(e.path)
    assert hardlink_groups(plain) == sorted(sorted(g) for g in objects.values() if len(g) > 1)
    # And the laid-out directory itself, encapsulated with --rootfs, comes back as it was.
    build(RootfsOrigin(str(tree)), f"oci:{tmp_path}/img:rootfs")
    assert_same_tree(tree, umoci_unpack(tmp_path / "img", "rootfs", tmp_path / "r"))


def test_plan_from_a_saved_mapping_equals_plan_from_the_tree(
    real_commit: tuple[Path, Path], tmp_path: Path
) -> None:
    """``debchunk plan --mapping`` of ``debchunk map --json`` output plans what
    ``plan --rootfs`` and ``plan --repo`` plan: the saved mapping carries the split."""
    tree, repo = real_commit
    debchunk = str(Path(sys.executable).parent / "debchunk")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}

    def run(*args: str) -> str:
        return subprocess.run([debchunk, *args], capture_output=True, text=True, check=True, env=env).stdout

    saved = tmp_path / "mapping.json"
    saved.write_text(run("map", "--rootfs", str(tree), "--json"))
    from_file = json.loads(run("plan", "--mapping", str(saved), "--json"))
    assert from_file == json.loads(run("plan", "--rootfs", str(tree), "--json"))
    assert len(from_file["layers"]) > 32
    assert any(name.endswith(":data") for layer in from_file["layers"] for name in layer["components"])
    (tmp_path / "commit.json").write_text(run("map", "--repo", str(repo), "debian/trixie", "--json"))
    from_commit_file = json.loads(run("plan", "--mapping", str(tmp_path / "commit.json"), "--json"))
    assert from_commit_file == json.loads(run("plan", "--repo", str(repo), "debian/trixie", "--json"))
