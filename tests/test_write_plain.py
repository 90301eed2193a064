"""encapsulate.write.plain: rootfs layers that real umoci and skopeo read back
as the tree they came from."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from encapsulate import RootfsOrigin
from tests.images import assert_same_tree, build, digests, manifest, umoci_unpack
from tests.sample import build_sample


@pytest.fixture(scope="module")
def odd_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample with devices, a fifo, long names and links, a Latin-1 name,
    sticky and setgid modes."""
    root = build_sample(tmp_path_factory.mktemp("odd") / "tree")
    d = root / "usr/share/odd"
    d.mkdir(parents=True)
    os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(d / "sda", stat.S_IFBLK | 0o660, os.makedev(8, 0))
    os.mkfifo(d / "fifo", 0o600)
    long_dir = d / ("x" * 120) / ("y" * 120)
    long_dir.mkdir(parents=True)
    (long_dir / ("z" * 200)).write_bytes(b"deep")
    os.symlink("t" * 300, d / "long-link")
    with open(os.fsencode(str(d)) + b"/caf\xe9", "wb") as f:
        f.write(b"latin-1 name")
    sticky = d / "sticky"
    sticky.mkdir(mode=0o1777)
    os.chmod(sticky, 0o1777)
    (d / "setgid").write_bytes(b"g")
    os.chmod(d / "setgid", 0o2755)
    return root


def test_plain_image_round_trips_through_umoci(odd_sample: Path, tmp_path: Path) -> None:
    image = build(RootfsOrigin(str(odd_sample)), f"oci:{tmp_path}/img:v1", max_layers=8)
    layers = manifest(tmp_path / "img", "v1")["layers"]
    assert len(layers) <= 8 and [d["digest"] for d in layers] == digests(image)
    inspect = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci:{tmp_path}/img:v1"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert inspect["Digest"] == image.manifest.digest
    assert json.loads(inspect["Labels"]["org.debchunk.plan"])
    assert_same_tree(odd_sample, umoci_unpack(tmp_path / "img", "v1", tmp_path / "unpacked"))


def test_every_layer_holds_the_parents_of_its_entries(sample_tree: Path, tmp_path: Path) -> None:
    """Layers unpack in any order: each holds the parent directories of what
    it holds, with the modes and owners of the tree."""
    image = build(RootfsOrigin(str(sample_tree)), f"oci:{tmp_path}/img", max_layers=6)
    directories: dict[str, tuple[int, int, int]] = {}
    for k, digest in enumerate(digests(image)):
        with tarfile.open(tmp_path / "img/blobs/sha256" / digest[7:], mode="r:gz") as tar:
            members = {m.name.rstrip("/"): m for m in tar.getmembers()}
        assert members, k
        for name, m in members.items():
            parent = name.rpartition("/")[0]
            while parent:
                assert parent in members and members[parent].isdir(), (k, name, parent)
                parent = parent.rpartition("/")[0]
            if m.isdir():
                st = os.lstat(sample_tree / name)
                seen = directories.setdefault(name, (m.mode, m.uid, m.gid))
                assert seen == (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (m.mode, m.uid, m.gid)
        # Layer 0 is the skeleton: directories only; the others hold content.
        assert all(m.isdir() for m in members.values()) == (k == 0), k


def test_file_over_8_gib_and_sparse(tmp_path: Path) -> None:
    """A 9 GiB sparse file with data at its end: the layer's PAX size record
    carries it and its content comes back byte for byte."""
    root = tmp_path / "tree"
    (root / "data").mkdir(parents=True)
    big = root / "data/big.img"
    size = 9 * (1 << 30) + 12345
    with open(big, "wb") as f:
        f.truncate(size)
        f.seek(size - 5)
        f.write(b"tail!")
    assert os.stat(big).st_blocks * 512 < 1 << 20  # sparse on disk
    image = build(RootfsOrigin(str(root)), f"oci:{tmp_path}/img", max_layers=3)
    zeros = bytes(1 << 20)
    want = hashlib.sha256()
    remaining = size - 5
    while remaining:
        chunk = min(remaining, len(zeros))
        want.update(zeros[:chunk])
        remaining -= chunk
    want.update(b"tail!")
    for digest in digests(image):
        with tarfile.open(tmp_path / "img/blobs/sha256" / digest[7:], mode="r|gz") as tar:
            for member in tar:
                if member.name == "data/big.img":
                    assert member.size == size
                    got = hashlib.sha256()
                    content = tar.extractfile(member)
                    assert content is not None
                    while block := content.read(1 << 22):
                        got.update(block)
                    assert got.hexdigest() == want.hexdigest()
                    return
    raise AssertionError("data/big.img is in no layer")


def _retag(layout: Path, tag: str, new_tag: str, order: list[int]) -> None:
    """Tag in ``layout`` an image of ``tag``'s layers taken in ``order``."""
    m = manifest(layout, tag)
    config = json.loads((layout / "blobs/sha256" / m["config"]["digest"][7:]).read_text())
    config["rootfs"]["diff_ids"] = [config["rootfs"]["diff_ids"][k] for k in order]
    config["history"] = [config["history"][k] for k in order]
    blobs = layout / "blobs/sha256"

    def add(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    new = {**m, "layers": [m["layers"][k] for k in order]}
    new.pop("annotations", None)
    new["config"] = add(json.dumps(config).encode(), m["config"]["mediaType"])
    entry = add(json.dumps(new).encode(), m["mediaType"])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append({**entry, "annotations": {"org.opencontainers.image.ref.name": new_tag}})
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.invalid_images  # derived images hold the layers in other orders than the plan label
def test_every_layer_order_unpacks_the_directories_of_the_tree(odd_sample: Path, tmp_path: Path) -> None:
    """Each layer alone, and all of them in reverse order, unpacked by umoci:
    every directory there has the mode, owner and xattrs it has in the tree,
    never the defaults an unpacker gives a missing parent."""
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-a", str(odd_sample), str(tree)], check=True)
    private = tree / "usr/share/doc/private"
    private.mkdir(parents=True, mode=0o700)
    os.chmod(private, 0o700)
    (private / "note").write_bytes(b"kept")
    os.chown(private, 1000, 1000)
    os.setxattr(tree / "usr/share/doc", "user.checked", b"yes")
    os.chmod(tree / "usr/lib", 0o750)
    image = build(RootfsOrigin(str(tree)), f"oci:{tmp_path}/img:all", max_layers=6)
    n = len(image.layers)
    orders = {f"only{k}": [k] for k in range(n)} | {"reversed": list(range(n))[::-1]}
    for tag, order in orders.items():
        _retag(tmp_path / "img", "all", tag, order)
        rootfs = umoci_unpack(tmp_path / "img", tag, tmp_path / tag)
        directories = [Path(top) for top, _, _ in os.walk(rootfs)][1:]
        assert directories, tag
        for path in directories:
            source = tree / path.relative_to(rootfs)
            a, b = os.lstat(source), os.lstat(path)
            assert (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid) == (
                stat.S_IMODE(a.st_mode),
                a.st_uid,
                a.st_gid,
            ), (
                tag,
                path,
            )
            xattrs = sorted(
                (x, os.getxattr(source, x)) for x in os.listxattr(source) if x.startswith("user.")
            )
            assert xattrs == sorted(
                (x, os.getxattr(path, x))
                for x in os.listxattr(path)
                if x.startswith("user.") and "rootless" not in x
            ), (tag, path)
    assert stat.S_IMODE(os.lstat(tmp_path / "reversed/rootfs/usr/share/doc/private").st_mode) == 0o700
