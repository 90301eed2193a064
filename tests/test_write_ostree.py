"""encapsulate.write.ostree: ostree-ext's chunked layers; the repository merged
from them passes ostree fsck and checks out to the commit written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from encapsulate import CommitOrigin, ConfigError, Format, RootfsOrigin, build_image
from encapsulate.config import BuildConfig
from tests.images import build, check_ostree_image, digests, manifest, rev_parse
from tests.sample import commit


def test_ostree_format(sample_repos: dict[str, Path], tmp_path: Path) -> None:
    repo = sample_repos["bare-user"]
    checksum = rev_parse(repo, "sample")
    origin = CommitOrigin(str(repo), "sample")
    first = build(origin, f"oci:{tmp_path}/img:v1", max_layers=10)
    again = build(origin, f"oci:{tmp_path}/again:v1", max_layers=10)
    assert first.manifest == again.manifest
    # Into the layout holding it, every layer is taken, none written again.
    reused = build(origin, f"oci:{tmp_path}/img:v2", max_layers=10)
    assert reused.manifest == first.manifest
    assert all(b.reused for b in reused.layers)
    layers = manifest(tmp_path / "img", "v1")["layers"]
    assert len(layers) <= 10 and [d["digest"] for d in layers] == digests(first)
    check_ostree_image(tmp_path / "img", "v1", repo, checksum, tmp_path)
    # Every content object is in exactly one layer.
    seen: list[str] = []
    for digest in digests(first):
        with tarfile.open(tmp_path / "img/blobs/sha256" / digest[7:]) as tar:
            seen += [n for n in tar.getnames() if n.endswith(".file")]
    assert len(seen) == len(set(seen)) > 10


def test_a_root_tree_is_not_written_in_the_ostree_format(tmp_path: Path) -> None:
    config = BuildConfig(RootfsOrigin(str(tmp_path)), f"oci:{tmp_path}/x", format=Format.OSTREE)
    with pytest.raises(ConfigError, match="--format ostree needs an OSTree commit"):
        build_image(config)
    assert not (tmp_path / "x").exists()


def test_podman_pulls_both_formats(sample_repos: dict[str, Path], tmp_path: Path) -> None:
    origin = CommitOrigin(str(sample_repos["bare-user"]), "sample")
    # podman wants a short runroot path; a private store keeps the machine's untouched.
    run = tempfile.mkdtemp(prefix="podrun-", dir="/tmp")
    store = ["podman", "--root", str(tmp_path / "root"), "--runroot", run, "--storage-driver", "vfs"]
    try:
        for fmt in Format:
            build(origin, f"oci:{tmp_path}/img:{fmt}", format=fmt)
            proc = subprocess.run(
                [*store, "pull", "-q", f"oci:{tmp_path}/img:{fmt}"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr
            image_id = proc.stdout.strip().splitlines()[-1]
            inspect = subprocess.run(
                [*store, "image", "inspect", image_id], capture_output=True, text=True, check=True
            )
            labels = json.loads(inspect.stdout)[0]["Labels"]
            assert ("ostree.commit" in labels) == (fmt is Format.OSTREE)
    finally:
        subprocess.run([*store, "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", run])


def test_labels_annotations_and_history_as_ostree_ext_writes_them(sample_tree: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare-user"], check=True)
    subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={repo}",
            f"--tree=dir={sample_tree}",
            "-b",
            "os",
            "--timestamp=2026-01-01T00:00:00Z",
            "-s",
            "Debian 13.2 for the fleet",
            "--add-metadata-string=version=13.2",
            "--add-metadata-string=ostree.linux=6.12.57+deb13-amd64",
        ],
        check=True,
        capture_output=True,
    )
    result = build(CommitOrigin(str(repo), "os"), f"oci:{tmp_path}/img:v1", max_layers=8)
    m = manifest(tmp_path / "img", "v1")
    config = json.loads((tmp_path / "img/blobs/sha256" / m["config"]["digest"][7:]).read_text())
    labels = config["config"]["Labels"]
    assert labels["ostree.linux"] == "6.12.57+deb13-amd64"
    assert labels["org.opencontainers.image.version"] == "13.2"
    # The manifest carries the labels, less debchunk's two large layer labels.
    annotations = m["annotations"]
    assert annotations["org.opencontainers.image.version"] == "13.2"
    assert annotations["ostree.final-diffid"] == labels["ostree.final-diffid"]
    assert set(labels) - set(annotations) == {
        "org.debchunk.plan",
        "org.debchunk.components",
        "org.debchunk.layers",
    }
    assert all(labels[k] == v for k, v in annotations.items())
    # History: the commit subject names the commit layer, the components name the others.
    names = [h["created_by"] for h in config["history"]]
    assert names[0] == "Debian 13.2 for the fleet"
    layer_components = result.layer_components
    assert len(names) == len(layer_components) >= 3
    for name, components in zip(names[1:], layer_components[1:], strict=True):
        assert components
        if len(components) == 1:
            assert name == components[0]
        elif len(components) <= 5:
            assert name == " and ".join(components)
        else:
            assert name == f"{len(components)} components"


def test_format_version_2_writes_every_parent_in_every_layer(sample_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(sample_tree), str(tree)], check=True)
    private = tree / "usr/share/private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    (private / "key").write_bytes(b"secret")
    os.chown(private, 1000, 1000)
    os.setxattr(tree / "usr/share", "user.checked", b"yes")
    repo = tmp_path / "repo"
    checksum = commit(tree, repo, "os")
    origin = CommitOrigin(str(repo), "os")
    v1 = build(origin, f"oci:{tmp_path}/img:v1", max_layers=8)
    v2 = build(origin, f"oci:{tmp_path}/img:v2", max_layers=8, format_version=2)
    # The same objects in the same layers; version 2 adds directories only.
    assert v1.layer_components == v2.layer_components
    assert digests(v1)[0] == digests(v2)[0] and digests(v1)[1:] != digests(v2)[1:]
    check_ostree_image(tmp_path / "img", "v2", repo, checksum, tmp_path / "check")
    for image, parents in ((v1, False), (v2, True)):
        for digest in digests(image)[1:]:
            with tarfile.open(tmp_path / "img/blobs/sha256" / digest[7:]) as tar:
                members = {m.name.rstrip("/"): m for m in tar.getmembers()}
            checkouts = [
                n for n, m in members.items() if m.islnk() or (m.isfile() and not n.startswith("sysroot/"))
            ]
            assert checkouts
            for name in checkouts:
                parent = name.rpartition("/")[0]
                while parent:
                    assert (parent in members) == parents, (digest, name, parent)
                    if parents:
                        m = members[parent]
                        source = tree / (
                            "usr/etc" + parent[3:] if parent == "etc" or parent.startswith("etc/") else parent
                        )
                        st = os.lstat(source)
                        assert m.isdir() and (m.mode, m.uid, m.gid) == (
                            stat.S_IMODE(st.st_mode),
                            st.st_uid,
                            st.st_gid,
                        )
                        xattrs = {
                            k[len("SCHILY.xattr.") :] for k in m.pax_headers if k.startswith("SCHILY.xattr.")
                        }
                        assert {x for x in os.listxattr(source) if x.startswith("user.")} <= xattrs
                    parent = parent.rpartition("/")[0]
