"""``--from IMGREF --format ostree``: an image's flattened tree laid out as an
OSTree image builder lays a tree out, committed with libostree and written
in ostree-ext's chunked format.

The real images are those of ``tests/containerfiles.py`` (built with buildah);
the layout's corner cases (a kernel, devices, names that are not UTF-8) come
from hand-made layers.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from encapsulate import BuildConfig, BuildResult, ConfigError, Format, ImageOrigin, build_image
from encapsulate.tools.diff import diff_images
from encapsulate.write.ostree_commit import ostree_layout
from mapping import Entry, EntryType, Tree, read_tree
from tests.conftest import RunCli
from tests.containerfiles import BuiltImages, build_test_images
from tests.images import EPOCH, image_config, manifest, umoci_unpack
from tests.test_rechunk_origin import TAR, make_image

MAX_LAYERS = 16
REPO = "sysroot/ostree/repo"
# What the layout empties or moves; everything else is committed as it is.
LAID_OUT = ("etc", "var", "dev", "proc", "sys", "run", "tmp", "boot")


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    """The images of ``tests/containerfiles.py``, built once (and kept between runs)."""
    return build_test_images(tmp_path_factory.mktemp("containerfiles"))


def rechunk_ostree(imgref: str, destination: str, **fields: Any) -> BuildResult:
    """``build_image`` of an image origin in the ostree format, at most ``MAX_LAYERS`` layers."""
    settings = {"max_layers": MAX_LAYERS, "epoch": EPOCH, "format": Format.OSTREE, **fields}
    result = build_image(BuildConfig(origin=ImageOrigin(imgref), destination=destination, **settings))
    assert result.image is not None
    return result


def checkout(layout: Path, tag: str, work: Path) -> tuple[Path, str]:
    """The repository merged from the image's layers (umoci unpack) passes
    ``ostree fsck``; the commit its ``ostree.commit`` label names, checked
    out, and that checksum."""
    merged = umoci_unpack(layout, tag, work / "unpacked") / REPO
    assert "mode=bare-split-xattrs" in (merged / "config").read_text()
    fsck = subprocess.run(["ostree", "fsck", f"--repo={merged}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    checksum = image_config(layout, tag)["config"]["Labels"]["ostree.commit"]
    assert (merged / "objects" / checksum[:2] / f"{checksum[2:]}.commit").is_file()
    subprocess.run(
        ["ostree", f"--repo={merged}", "checkout", checksum, str(work / "checkout")],
        check=True,
        capture_output=True,
    )
    return work / "checkout", checksum


def _key(e: Entry) -> tuple[object, ...]:
    xattrs = tuple(x for x in e.xattrs if not x[0].startswith(b"user.rootlesscontainers"))
    return (e.type, e.mode, e.uid, e.gid, e.size, e.target, e.content_id, xattrs)


def test_an_image_is_written_as_an_ostree_commit(images: BuiltImages, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = rechunk_ostree(images.a.oci, f"oci:{out}:r")
    assert result.image is not None
    config = image_config(out, "r")
    labels = config["config"]["Labels"]
    assert labels["ostree.final-diffid"] == config["rootfs"]["diff_ids"][-1]
    # What the source image's config passes on is kept.
    assert labels["org.opencontainers.image.title"] == "test" and labels["containers.bootc"] == "1"
    assert "A=1" in config["config"]["Env"] and config["config"]["Cmd"] == ["/bin/bash"]
    layers = manifest(out, "r")["layers"]
    assert 2 < len(layers) <= MAX_LAYERS
    # The first layer holds the commit, every other one content objects.
    for i, d in enumerate(layers):
        with tarfile.open(out / "blobs/sha256" / d["digest"][7:]) as tar:
            names = tar.getnames()
        assert f"{REPO}/config" in names
        suffix = ".commit" if i == 0 else ".file"
        assert any(n.startswith(f"{REPO}/objects/") and n.endswith(suffix) for n in names), i
        assert (i == 0) != ("ostree.components" in d.get("annotations", {}))

    tree, _ = checkout(out, "r", tmp_path)
    source = umoci_unpack(images.a.layout, images.a.tag, tmp_path / "source")
    before = {e.path: e for e in read_tree(rootfs=str(source)) if e.path}
    after = {e.path: e for e in read_tree(rootfs=str(tree)) if e.path}
    # Everything outside what the layout moves is committed as it was: type,
    # mode (setuid too), owner, size, content, symlink target, xattrs.
    kept = {p for p in before if p.partition("/")[0] not in LAID_OUT and before[p].type is not EntryType.FIFO}
    assert kept == {
        p for p in after if p.partition("/")[0] not in LAID_OUT and not p.startswith("usr/etc")
    } - {p for p in after if p.startswith("usr/share/dpkg/database")}
    for path in kept:
        assert _key(before[path]) == _key(after[path]), path
    assert (after["srv/data/f"].mode, after["srv/data/f"].uid, after["srv/data/f"].gid) == (
        0o4711,
        1234,
        5678,
    )
    assert "srv/fifo" in before and "srv/fifo" not in after
    # /etc is usr/etc, entry for entry.
    etc = {p[4:]: e for p, e in after.items() if p.startswith("usr/etc/")}
    assert "etc" not in after and sorted(etc) == sorted(p for p in before if p.startswith("etc/"))
    for path, e in etc.items():
        assert _key(before[path]) == _key(e), path
    assert (tree / "usr/etc/passwd").read_bytes() == (source / "etc/passwd").read_bytes()
    # The dpkg database is under usr/, var holds var/tmp and the symlink to it.
    database = {
        p[len("usr/share/dpkg/database/") :] for p in after if p.startswith("usr/share/dpkg/database/")
    }
    assert database == {p[len("var/lib/dpkg/") :] for p in before if p.startswith("var/lib/dpkg/")}
    assert (tree / "usr/share/dpkg/database/status").read_bytes() == (
        source / "var/lib/dpkg/status"
    ).read_bytes()
    assert sorted(p for p in after if p.startswith("var/")) == ["var/lib", "var/lib/dpkg", "var/tmp"]
    assert os.readlink(tree / "var/lib/dpkg") == "../../usr/share/dpkg/database"
    assert after["var/tmp"].mode == 0o1777
    for name in ("dev", "proc", "sys", "run", "tmp"):
        assert after[name].type is EntryType.DIR and not os.listdir(tree / name), name


def test_two_builds_give_the_same_image(images: BuiltImages, tmp_path: Path) -> None:
    # Without SOURCE_DATE_EPOCH: the commit's time is the newest changelog date.
    one = rechunk_ostree(images.a.oci, f"oci:{tmp_path}/one:r", epoch=None)
    two = rechunk_ostree(images.a.oci, f"oci:{tmp_path}/two:r", epoch=None)
    assert one.image is not None and two.image is not None
    assert one.image.manifest.digest == two.image.manifest.digest
    assert one.epoch == two.epoch and one.epoch == int(one.mapping.reference_date.timestamp())  # type: ignore[union-attr]
    created = image_config(tmp_path / "one", "r")["created"]
    _, checksum = checkout(tmp_path / "one", "r", tmp_path / "co")
    log = subprocess.run(
        ["ostree", "show", f"--repo={tmp_path}/co/unpacked/rootfs/{REPO}", checksum],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The commit's date is the image's.
    assert created.startswith(log.split("Date:")[1].split()[0])


def test_an_update_built_with_prior_reuses_layers(images: BuiltImages, tmp_path: Path) -> None:
    rechunk_ostree(images.a.oci, f"oci:{tmp_path}:old")
    rechunk_ostree(images.a2.oci, f"oci:{tmp_path}:new", prior=f"oci:{tmp_path}:old")
    d = diff_images(f"oci:{tmp_path}:old", f"oci:{tmp_path}:new")
    # The commit layer and the layers of what changed are pulled; so is a layer
    # one of whose objects the new packages also ship (the ostree writer puts
    # every path of an object beside it).  The stable packages' layers are kept.
    assert not d.reused[0]
    for layer, reused in zip(d.new.layers, d.reused, strict=True):
        if {"glibc", "openssl", "perl", "util-linux"} & set(layer.components):
            assert reused, layer.components
    assert sum(d.reused) >= len(d.reused) // 2
    assert 0 < d.download_bytes < d.total_bytes / 3


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: Any
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _image(where: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return make_image(where, [(TAR, out.getvalue())], {"architecture": "amd64", "variant": None})


KERNEL = "6.12.0-1-amd64"
# A Debian-style tree with a kernel in /boot, devices in /dev, state in /var.
BOOTABLE = [
    _member(d, tarfile.DIRTYPE)
    for d in ("boot", "dev", "etc", "usr", "usr/lib", "usr/lib/modules", f"usr/lib/modules/{KERNEL}", "var",
              "var/cache", "var/lib", "var/lib/dpkg", "var/tmp")
] + [
    _member(f"boot/vmlinuz-{KERNEL}", data=b"kernel" * 100),
    _member(f"boot/initrd.img-{KERNEL}", data=b"initrd" * 100),
    _member(f"boot/config-{KERNEL}", data=b"CONFIG_X=y\n"),
    _member("vmlinuz", tarfile.SYMTYPE, linkname=f"boot/vmlinuz-{KERNEL}"),
    _member("initrd.img", tarfile.SYMTYPE, linkname=f"boot/initrd.img-{KERNEL}"),
    _member(f"usr/lib/modules/{KERNEL}/modules.dep", data=b"\n"),
    _member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
    _member("etc/hostname", data=b"box\n", mode=0o600),
    _member("etc/fifo", tarfile.FIFOTYPE),
    _member("var/cache/junk", data=b"junk"),
    _member("var/lib/dpkg/status", data=b"Package: x\n"),
]  # fmt: skip


def test_a_kernel_makes_the_commit_bootable(tmp_path: Path) -> None:
    source = _image(tmp_path / "src", BOOTABLE)
    result = rechunk_ostree(source, f"oci:{tmp_path}/out:r", max_layers=4)
    labels = image_config(tmp_path / "out", "r")["config"]["Labels"]
    assert labels["ostree.bootable"] == "true" and labels["containers.bootc"] == "1"
    assert result.mapping.tree is not None
    assert result.mapping.tree.metadata["ostree.linux"] == KERNEL
    tree, _ = checkout(tmp_path / "out", "r", tmp_path)
    modules = tree / "usr/lib/modules" / KERNEL
    assert (modules / "vmlinuz").read_bytes() == b"kernel" * 100
    assert (modules / "initramfs.img").read_bytes() == b"initrd" * 100
    assert os.listdir(tree / "boot") == [] and os.listdir(tree / "dev") == []
    assert not (tree / "vmlinuz").is_symlink() and not (tree / "initrd.img").is_symlink()
    assert stat.S_IMODE((tree / "usr/etc/hostname").stat().st_mode) == 0o600
    assert not (tree / "usr/etc/fifo").exists() and not (tree / "etc").exists()
    assert sorted(os.listdir(tree / "var")) == ["lib", "tmp"]
    assert (tree / "var/lib/dpkg/status").read_bytes() == b"Package: x\n"


def test_a_tree_already_laid_out_passes_unchanged(tmp_path: Path) -> None:
    source = _image(tmp_path / "src", BOOTABLE)
    rechunk_ostree(source, f"oci:{tmp_path}/out:r", max_layers=4)
    tree, _ = checkout(tmp_path / "out", "r", tmp_path)
    laid_out = read_tree(rootfs=str(tree))
    again = ostree_layout(laid_out)
    assert [(e.path, _key(e)) for e in again] == [(e.path, _key(e)) for e in laid_out]
    # usr/etc and an etc of its own (a bootc base keeps /etc in the image):
    # etc's entries win, as ostree-ext's import writes etc/ at usr/etc/.
    entries = [
        Entry("", EntryType.DIR, 0o755, 0, 0),
        Entry("etc", EntryType.DIR, 0o755, 0, 0),
        Entry("etc/a", EntryType.FILE, 0o600, 0, 0, 1, content_id="new"),
        Entry("usr", EntryType.DIR, 0o755, 0, 0),
        Entry("usr/etc", EntryType.DIR, 0o755, 0, 0),
        Entry("usr/etc/a", EntryType.FILE, 0o644, 0, 0, 1, content_id="old"),
        Entry("usr/etc/b", EntryType.FILE, 0o644, 0, 0, 1, content_id="b"),
    ]
    merged = {e.path: e for e in ostree_layout(Tree("t", entries))}
    assert "etc" not in merged and merged["usr/etc/a"].content_id == "new" and "usr/etc/b" in merged


def test_a_name_that_is_not_utf8_is_one_error(run_cli: RunCli, tmp_path: Path) -> None:
    name = b"srv/caf\xe9".decode("utf-8", "surrogateescape")
    source = _image(tmp_path / "src", [_member("srv", tarfile.DIRTYPE), _member(name, data=b"x")])
    epoch = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    proc = run_cli(
        "--from",
        source,
        f"oci:{tmp_path}/out",
        "--format",
        "ostree",
        program="container-encapsulate",
        env=epoch,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("container-encapsulate: error: "), proc.stderr
    assert "srv/caf\\xe9" in lines[0] and "not UTF-8" in lines[0]
    assert not (tmp_path / "out").exists()
    # The plain format holds it.
    plain = run_cli("--from", source, f"oci:{tmp_path}/plain", program="container-encapsulate", env=epoch)
    assert plain.returncode == 0, plain.stderr


def test_keep_base_is_refused_with_the_ostree_format() -> None:
    config = BuildConfig(ImageOrigin("oci:/x"), "oci:/y", format=Format.OSTREE, keep_base="oci:/z")
    with pytest.raises(ConfigError, match="--keep-base keeps the base's plain layers"):
        config.check()
    BuildConfig(ImageOrigin("oci:/x"), "oci:/y", format=Format.OSTREE).check()
