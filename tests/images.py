"""Helpers for tests that build images: a build at a fixed time, reading
manifests and configs back from an OCI layout, and comparing unpacked trees."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
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


def layer_entries(layout: Path, digest: str) -> dict[str, tuple[bytes, int, int, int, str, str]]:
    """A layer blob's tar entries, read with tarfile (any compression):
    path -> (type, mode, uid, gid, link target, sha256 of the content)."""
    out = {}
    with tarfile.open(layout / "blobs" / "sha256" / digest.split(":")[1], "r:*") as tar:
        for m in tar:
            h = hashlib.sha256()
            data = tar.extractfile(m) if m.isreg() else None
            if data is not None:
                while block := data.read(1 << 20):
                    h.update(block)
            out[m.name] = (m.type, m.mode, m.uid, m.gid, m.linkname, h.hexdigest())
    return out


def held_again(base_layout: Path, base_layers: list[str], layout: Path, layers: list[str]) -> list[str]:
    """The entries of ``layers`` (blobs of ``layout``) that the base's layers
    hold as they are (type, mode, owner, target and content): what a
    ``--keep-base`` image must not carry again.  Directories, which come
    again as the parents of new files, and the targets of hardlinks in the
    same layer, which must be there, are left out."""
    in_base: dict[str, tuple[bytes, int, int, int, str, str]] = {}
    for digest in base_layers:
        in_base.update(layer_entries(base_layout, digest))
    again: list[str] = []
    for digest in layers:
        entries = layer_entries(layout, digest)
        targets = {e[4] for e in entries.values() if e[0] == tarfile.LNKTYPE}
        again += [
            name
            for name, e in entries.items()
            if e[0] != tarfile.DIRTYPE and name not in targets and in_base.get(name) == e
        ]
    return again


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


# Component names and versions a hostile image may carry: a line break
# before a fake verdict, terminal escape sequences (colour, title, clear),
# a lone surrogate (as JSON's "\ud800" reads), a bidi override, markup.
HOSTILE_NAMES = (
    "evil\nOK: valid",
    "\x1b[32mgreen\x1b[0m",
    "title\x1b]0;pwned\x07",
    "lone\ud800",
    "bidi\u202eevil",
    "<script>alert(1)</script>",
    "tab\tcr\rdel\x7f",
)
HOSTILE_VERSION = "1\x1b[2J\n2"


def put_blob(layout: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` in the layout's blobs; its digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar layer of regular files (names taken as they are)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def store_image(
    layout: Path,
    descriptors: list[dict[str, Any]],
    document: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config ``document`` and a manifest of ``descriptors`` (with
    ``annotations``) stored as blobs of ``layout``; their descriptors."""
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **put_blob(layout, json.dumps(document).encode()),
    }
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descriptors,
        **({"annotations": annotations} if annotations else {}),
    }
    return config, {"mediaType": manifest["mediaType"], **put_blob(layout, json.dumps(manifest).encode())}


def write_index(layout: Path, entry: dict[str, Any], tag: str = "t") -> str:
    """``layout``'s oci-layout and index.json, its one entry tagged ``tag``; its IMGREF."""
    entry = {**entry, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return f"oci:{layout}:{tag}"


def write_layout(
    layout: Path,
    layers: list[tuple[bytes, dict[str, str]]],
    labels: dict[str, Any],
    tag: str = "t",
    annotations: dict[str, str] | None = None,
) -> str:
    """An OCI layout written by hand holding one image: ``layers`` (uncompressed
    tar bytes and their annotations), a config with ``labels``, a manifest with
    ``annotations``; its IMGREF."""
    media_type = "application/vnd.oci.image.layer.v1.tar"
    descriptors = [
        {"mediaType": media_type, **put_blob(layout, data), **({"annotations": notes} if notes else {})}
        for data, notes in layers
    ]
    document = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
    }
    _, manifest = store_image(layout, descriptors, document, annotations)
    return write_index(layout, manifest, tag)


def hostile_image(
    layout: Path, names: tuple[str, ...] = HOSTILE_NAMES, version: str = HOSTILE_VERSION
) -> str:
    """An image whose debchunk labels and layer annotations name ``names``
    (two per layer after the first), each at ``version`` (its content digest
    named after the version too); its IMGREF."""
    groups = [list(names[k : k + 2]) for k in range(0, len(names), 2)]
    digest = "sha256:" + hashlib.sha256(version.encode("utf-8", "surrogatepass")).hexdigest()
    components = {
        n: {"size": 1000 * (k + 1), "change_probability": 0.1, "version": version, "digest": digest}
        for k, n in enumerate(names)
    }
    labels = {
        "org.debchunk.plan": json.dumps(groups),
        "org.debchunk.components": json.dumps(components),
        "org.opencontainers.image.title": names[0],
    }
    layers: list[tuple[bytes, dict[str, str]]] = [(tar_of({"etc/first": b"1"}), {})]
    layers += [
        (tar_of({f"usr/share/c{k}/evil\n\x1b[31mname": b"x" * k}), {"ostree.components": ",".join(g)})
        for k, g in enumerate(groups)
    ]
    return write_layout(layout, layers, labels, annotations={"note": names[1]})
