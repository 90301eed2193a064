"""container-encapsulate, plain format: real umoci and skopeo read what we write."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mapping import read_tree
from mapping.tree import Entry
from tests.conftest import RunCli, snapshot
from tests.sample import Pkg, SampleTree, blob, build_sample, day

EPOCH = "1767225600"  # 2026-01-01


def _key(e: Entry) -> tuple[object, ...]:
    xattrs = tuple(x for x in e.xattrs if not x[0].startswith(b"user.rootlesscontainers"))
    return (e.type, e.mode, e.uid, e.gid, e.size, e.target, e.content_id, e.rdev, xattrs)


def hardlink_groups(tree: Path) -> list[list[str]]:
    """Paths sharing an inode, in groups."""
    groups: dict[str, list[str]] = {}
    for e in read_tree(rootfs=str(tree)):
        if e.hardlink:
            groups.setdefault(e.hardlink, []).append(e.path)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def assert_same_tree(source: Path, unpacked: Path, hardlinks: bool = True) -> None:
    a = {e.path: e for e in read_tree(rootfs=str(source)) if e.path}
    b = {e.path: e for e in read_tree(rootfs=str(unpacked)) if e.path}
    assert sorted(a) == sorted(b)
    for path, e in a.items():
        assert _key(e) == _key(b[path]), path

    if hardlinks:
        assert hardlink_groups(source) == hardlink_groups(unpacked)


def umoci_unpack(layout: Path, tag: str, dest: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(dest)], check=True, capture_output=True
    )
    return dest / "rootfs"


def manifest(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    data: dict[str, object] = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    return data


def encapsulate(run_cli: RunCli, *args: str) -> dict[str, object]:
    proc = run_cli(*args, "--json", program="container-encapsulate", env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.fixture(scope="module")
def odd_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def test_plain_image_round_trips_through_umoci(run_cli: RunCli, odd_sample: Path, tmp_path: Path) -> None:
    out = encapsulate(run_cli, "--rootfs", str(odd_sample), f"oci:{tmp_path}/img:v1", "--max-layers", "8")
    m = manifest(tmp_path / "img", "v1")
    layers = m["layers"]
    assert isinstance(layers, list) and len(layers) <= 8 and len(layers) == len(out["layers"])  # type: ignore[arg-type]
    inspect = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci:{tmp_path}/img:v1"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert inspect["Digest"] == out["manifest"]
    assert json.loads(inspect["Labels"]["org.debchunk.plan"])
    assert_same_tree(odd_sample, umoci_unpack(tmp_path / "img", "v1", tmp_path / "unpacked"))


def test_layer_count_never_exceeds_max_layers(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    for n in (2, 3, 5, 64):
        encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:n{n}", "--max-layers", str(n))
        layers = manifest(tmp_path / "img", f"n{n}")["layers"]
        assert isinstance(layers, list) and 2 <= len(layers) <= n


def _reordered_copy(src: Path, dst: Path) -> None:
    """The same tree created in another order, with other mtimes."""
    rng = random.Random(5)
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)
    paths = sorted(dst.rglob("*"), key=lambda p: rng.random())
    for p in paths:
        if not p.is_symlink():
            t = rng.randint(10**8, 2 * 10**9)
            os.utime(p, (t, t))
    # Recreate files in shuffled order so directories list them differently.
    for p in [p for p in paths if p.is_file() and not p.is_symlink() and os.stat(p).st_nlink == 1]:
        data, st = p.read_bytes(), p.stat()
        xattrs = {n: os.getxattr(p, n) for n in os.listxattr(p)}
        p.unlink()
        p.write_bytes(data)
        os.chmod(p, stat.S_IMODE(st.st_mode))
        for n, v in xattrs.items():
            os.setxattr(p, n, v)


def test_reproducible(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    a = encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/a")
    b = encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/b")
    copy = tmp_path / "copy"
    _reordered_copy(sample_tree, copy)
    c = encapsulate(run_cli, "--rootfs", str(copy), f"oci:{tmp_path}/c")
    assert a["manifest"] == b["manifest"] == c["manifest"]
    # Byte-identical blobs, not just equal digests in JSON.
    for layer in a["layers"]:  # type: ignore[attr-defined]
        digest = layer["digest"][7:]
        assert (tmp_path / "a/blobs/sha256" / digest).read_bytes() == (
            tmp_path / "c/blobs/sha256" / digest
        ).read_bytes()


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


def test_prior_keeps_unchanged_layers(run_cli: RunCli, tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 12, 50_000, 10)
    plan = tmp_path / "plan.json"
    first = encapsulate(
        run_cli, "--rootfs", str(root), f"oci:{tmp_path}/img:1", "--max-layers", "8", "--plan-json", str(plan)
    )
    # One package changes: new content and a new version in the dpkg database.
    (root / "usr/lib/pkg05/data").write_bytes(blob("changed", 123_456))
    status = root / "usr/share/dpkg/database/status"
    status.write_text(status.read_text().replace("Package: pkg05\n", "Package: pkg05\n", 1))
    second = encapsulate(
        run_cli,
        "--rootfs",
        str(root),
        f"oci:{tmp_path}/img:2",
        "--max-layers",
        "8",
        "--prior-plan",
        str(plan),
    )
    old = {layer["digest"] for layer in first["layers"]}  # type: ignore[attr-defined]
    changed = [layer for layer in second["layers"] if layer["digest"] not in old]  # type: ignore[attr-defined]
    assert len(changed) == 1 and "pkg05" in changed[0]["components"]
    # Both images stay in the layout.
    tags = [
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((tmp_path / "img/index.json").read_text())["manifests"]
    ]
    assert tags == ["1", "2"]
    # The components label tells which component changed, without the layers.
    labels = [image_labels(tmp_path / "img", tag) for tag in tags]
    before, after = (json.loads(lab["org.debchunk.components"]) for lab in labels)
    assert before.keys() == after.keys()
    assert [n for n in after if after[n]["digest"] != before[n]["digest"]] == ["pkg05"]
    assert after["pkg05"]["size"] - before["pkg05"]["size"] == 123_456 - 6 * 50_000


def test_layers_already_in_the_layout_are_reused(run_cli: RunCli, tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 12, 50_000, 10)
    first = encapsulate(run_cli, "--rootfs", str(root), f"oci:{tmp_path}/img:1", "--max-layers", "8")
    assert not any(layer["reused"] for layer in first["layers"])  # type: ignore[attr-defined]
    again = encapsulate(run_cli, "--rootfs", str(root), f"oci:{tmp_path}/img:again", "--max-layers", "8")
    assert again["manifest"] == first["manifest"]
    assert all(layer["reused"] for layer in again["layers"])  # type: ignore[attr-defined]
    # One package changes: its layer is written, the others are taken from the
    # layout, and the image is the one a build into an empty layout makes.
    (root / "usr/lib/pkg05/data").write_bytes(blob("changed", 123_456))
    # A damaged blob is not taken: its layer is written again, and repaired.
    old = {layer["digest"]: layer for layer in first["layers"]}  # type: ignore[attr-defined]
    damaged = next(
        d for d, layer in old.items() if "pkg05" not in layer["components"] and layer["components"]
    )
    damaged_path = tmp_path / "img/blobs/sha256" / damaged[7:]
    damaged_path.write_bytes(damaged_path.read_bytes()[:100])
    args = ["--rootfs", str(root), "--max-layers", "8", "--prior", f"oci:{tmp_path}/img:1"]
    second = encapsulate(run_cli, *args[:2], f"oci:{tmp_path}/img:2", *args[2:])
    fresh = encapsulate(run_cli, *args[:2], f"oci:{tmp_path}/fresh:2", *args[2:])
    assert second["manifest"] == fresh["manifest"]
    layers: list[dict[str, Any]] = second["layers"]  # type: ignore[assignment]
    written = [layer for layer in layers if not layer["reused"]]
    new = {layer["digest"] for layer in layers if layer["digest"] not in old}
    assert {layer["digest"] for layer in written} == {damaged} | new
    assert any("pkg05" in layer["components"] for layer in written)
    assert damaged_path.stat().st_size == old[damaged]["size"]
    validate = run_cli("validate", f"oci:{tmp_path}/img:2")
    assert validate.returncode == 0, validate.stderr


def image_labels(layout: Path, tag: str) -> dict[str, str]:
    """The config labels of image ``tag`` in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    (manifest,) = [
        m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    ]
    blobs = layout / "blobs/sha256"
    body = json.loads((blobs / manifest["digest"].split(":")[1]).read_text())
    config = json.loads((blobs / body["config"]["digest"].split(":")[1]).read_text())
    return dict(config["config"]["Labels"])


def test_existing_layout_keeps_other_tags(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:keep", "--max-layers", "4")
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:other", "--max-layers", "6")
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:other", "--max-layers", "5")
    index = json.loads((tmp_path / "img/index.json").read_text())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == [
        "keep",
        "other",
    ]
    subprocess.run(["skopeo", "inspect", f"oci:{tmp_path}/img:keep"], check=True, capture_output=True)


def _one_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("container-encapsulate: error: "), proc.stderr
    for w in words:
        assert w in lines[0]


def test_bad_destinations_leave_things_as_they_were(
    run_cli: RunCli, sample_tree: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    before = snapshot(junk)
    _one_error(
        run_cli("--rootfs", str(sample_tree), f"oci:{junk}", program="container-encapsulate"),
        str(junk),
        "not an OCI layout",
    )
    assert snapshot(junk) == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_error(
        run_cli("--rootfs", str(sample_tree), f"oci:{afile}", program="container-encapsulate"),
        "not a directory",
    )
    assert afile.read_text() == "x"
    _one_error(
        run_cli("--rootfs", str(tmp_path / "nope"), f"oci:{tmp_path}/out", program="container-encapsulate"),
        "nope",
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out/blobs/sha256").iterdir())
    assert run_cli("--rootfs", str(sample_tree), "ftp:x", program="container-encapsulate").returncode == 2
    assert run_cli("--rootfs", str(sample_tree), "nowhere", program="container-encapsulate").returncode == 2


def test_no_temporary_files_left(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img")
    leftovers = [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []
    # Every blob is named by its content.
    import hashlib

    for p in (tmp_path / "img/blobs/sha256").iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name


def test_prior_from_image_label_archive_and_manifest(run_cli: RunCli, tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t", 10, 40_000, 7)
    first = encapsulate(run_cli, "--rootfs", str(root), f"oci:{tmp_path}/img:1", "--max-layers", "6")
    old = {layer["digest"] for layer in first["layers"]}  # type: ignore[attr-defined]
    (root / "usr/lib/pkg03/data").write_bytes(blob("new", 99_999))
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{tmp_path}/img:1", f"oci-archive:{tmp_path}/img.tar"], check=True
    )
    m = manifest(tmp_path / "img", "1")
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    results = []
    for option in (
        ("--prior", f"oci:{tmp_path}/img:1"),
        ("--prior", f"oci-archive:{tmp_path}/img.tar"),
        ("--previous-build-manifest", str(tmp_path / "manifest.json")),
    ):
        out = encapsulate(run_cli, "--rootfs", str(root), f"oci:{tmp_path}/out", "--max-layers", "6", *option)
        changed = [layer for layer in out["layers"] if layer["digest"] not in old]  # type: ignore[attr-defined]
        assert len(changed) == 1 and "pkg03" in changed[0]["components"], option
        results.append(out["manifest"])
    # The label and the annotations carry the same plan.
    assert len(set(results)) == 1
    bad = run_cli(
        "--rootfs",
        str(root),
        f"oci:{tmp_path}/out",
        "--prior",
        f"oci:{tmp_path}/missing",
        program="container-encapsulate",
    )
    _one_error(bad, "missing", "not an OCI image layout")


def test_transports(run_cli: RunCli, sample_tree: Path, tmp_path: Path, registry: str) -> None:
    local = encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v1")
    digest = local["manifest"]
    # oci-archive: written here, reproducible byte for byte, readable by skopeo.
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci-archive:{tmp_path}/a.tar:v1")
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci-archive:{tmp_path}/b.tar:v1")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{tmp_path}/a.tar:v1"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)["Digest"] == digest
    # A real registry: push, pull back, same manifest digest.
    target = f"{registry}/debchunk/sample:v1"
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"registry:{target}", "--dest-tls-verify", "false")
    remote = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(remote.stdout)["Digest"] == digest
    subprocess.run(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path}/back:v1"],
        check=True,
    )
    assert manifest(tmp_path / "back", "v1") == manifest(tmp_path / "img", "v1")
    # docker-archive through skopeo.
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"docker-archive:{tmp_path}/d.tar:debchunk/sample:v1")
    subprocess.run(["skopeo", "inspect", f"docker-archive:{tmp_path}/d.tar"], check=True, capture_output=True)
    # Nothing temporary is left beside the archives.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_registry_down_is_one_line(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli(
        "--rootfs",
        str(sample_tree),
        f"docker://127.0.0.1:{port}/x:y",
        "--dest-tls-verify",
        "false",
        program="container-encapsulate",
    )
    _one_error(proc, f"127.0.0.1:{port}", "connection refused")
    assert "level=fatal" not in proc.stderr


def _config(layout: Path, tag: str) -> dict[str, object]:
    m = manifest(layout, tag)
    digest = m["config"]["digest"]  # type: ignore[index]
    data: dict[str, object] = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    return data


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
    config = _config(layout, tag)
    labels = config["config"]["Labels"]  # type: ignore[index]
    diff_ids = config["rootfs"]["diff_ids"]  # type: ignore[index]
    assert labels["ostree.commit"] == checksum and labels["ostree.final-diffid"] == diff_ids[-1]
    layers = manifest(layout, tag)["layers"]
    assert isinstance(layers, list)
    assert "ostree.components" not in layers[0].get("annotations", {}) and all(
        layer["annotations"]["ostree.components"] for layer in layers[1:]
    )


def test_ostree_format(run_cli: RunCli, sample_repos: dict[str, Path], tmp_path: Path) -> None:
    repo = sample_repos["bare-user"]
    checksum = subprocess.run(
        ["ostree", "rev-parse", f"--repo={repo}", "sample"], capture_output=True, text=True, check=True
    ).stdout.strip()
    first = encapsulate(
        run_cli, "--repo", str(repo), "sample", f"oci:{tmp_path}/img:v1", "--max-layers", "10"
    )
    again = encapsulate(
        run_cli, "--repo", str(repo), "sample", f"oci:{tmp_path}/again:v1", "--max-layers", "10"
    )
    assert first["manifest"] == again["manifest"]
    # Into the layout holding it, every layer is taken, none written again.
    reused = encapsulate(
        run_cli, "--repo", str(repo), "sample", f"oci:{tmp_path}/img:v2", "--max-layers", "10"
    )
    assert reused["manifest"] == first["manifest"]
    assert all(layer["reused"] for layer in reused["layers"])  # type: ignore[attr-defined]
    layers = manifest(tmp_path / "img", "v1")["layers"]
    assert isinstance(layers, list) and len(layers) <= 10
    check_ostree_image(tmp_path / "img", "v1", repo, checksum, tmp_path)
    # Every content object is in exactly one layer.
    import tarfile

    seen: list[str] = []
    for layer in layers:
        with tarfile.open(tmp_path / "img/blobs/sha256" / layer["digest"][7:]) as tar:
            seen += [n for n in tar.getnames() if n.endswith(".file")]
    assert len(seen) == len(set(seen)) > 10
    # A --rootfs tree cannot be written in the ostree format.
    bad = run_cli(
        "--rootfs", str(tmp_path), f"oci:{tmp_path}/x", "--format", "ostree", program="container-encapsulate"
    )
    assert bad.returncode == 2 and "--format ostree" in bad.stderr


@pytest.mark.parametrize("layer_format", ["plain", "ostree"])
def test_a_new_date_changes_only_the_first_layer(
    run_cli: RunCli, sample_repos: dict[str, Path], sample_tree: Path, tmp_path: Path, layer_format: str
) -> None:
    # Two builds of the same content a day apart (SOURCE_DATE_EPOCH or, for a
    # commit, its timestamp): the component layers are the same blobs, so a
    # client holding the first image downloads only the first layer.
    source = (
        ["--rootfs", str(sample_tree)]
        if layer_format == "plain"
        else ["--repo", str(sample_repos["bare-user"]), "sample"]
    )
    digests = []
    for build, epoch in enumerate(("1767225600", "1767312000")):
        proc = run_cli(
            *source,
            f"oci:{tmp_path}/img:{build}",
            "--max-layers",
            "8",
            "--format",
            layer_format,
            "--json",
            program="container-encapsulate",
            env={"SOURCE_DATE_EPOCH": epoch},
        )
        assert proc.returncode == 0, proc.stderr
        digests.append([layer["digest"] for layer in json.loads(proc.stdout)["layers"]])
    before, after = digests
    assert len(before) == len(after) > 2
    assert before[0] != after[0] and before[1:] == after[1:]


def test_podman_pulls_both_formats(run_cli: RunCli, sample_repos: dict[str, Path], tmp_path: Path) -> None:
    import tempfile

    repo = str(sample_repos["bare-user"])
    # podman wants a short runroot path; a private store keeps the machine's untouched.
    run = tempfile.mkdtemp(prefix="podrun-", dir="/tmp")
    store = ["podman", "--root", str(tmp_path / "root"), "--runroot", run, "--storage-driver", "vfs"]
    try:
        for fmt in ("ostree", "plain"):
            encapsulate(run_cli, "--repo", repo, "sample", f"oci:{tmp_path}/img:{fmt}", "--format", fmt)
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
            assert ("ostree.commit" in labels) == (fmt == "ostree")
    finally:
        subprocess.run([*store, "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", run])


def test_file_over_8_gib_and_sparse(run_cli: RunCli, tmp_path: Path) -> None:
    """A 9 GiB sparse file with data at its end: the layer's PAX size record
    carries it and its content comes back byte for byte."""
    import hashlib
    import tarfile

    root = tmp_path / "tree"
    (root / "data").mkdir(parents=True)
    big = root / "data/big.img"
    size = 9 * (1 << 30) + 12345
    with open(big, "wb") as f:
        f.truncate(size)
        f.seek(size - 5)
        f.write(b"tail!")
    assert os.stat(big).st_blocks * 512 < 1 << 20  # sparse on disk
    out = encapsulate(run_cli, "--rootfs", str(root), f"oci:{tmp_path}/img", "--max-layers", "3")
    zeros = bytes(1 << 20)
    want = hashlib.sha256()
    remaining = size - 5
    while remaining:
        chunk = min(remaining, len(zeros))
        want.update(zeros[:chunk])
        remaining -= chunk
    want.update(b"tail!")
    for layer in out["layers"]:  # type: ignore[attr-defined]
        with tarfile.open(tmp_path / "img/blobs/sha256" / layer["digest"][7:], mode="r|gz") as tar:
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


def test_containers_storage(run_cli: RunCli, sample_tree: Path) -> None:
    """Written through skopeo into a private containers-storage, where podman lists it."""
    import tempfile

    root, run = tempfile.mkdtemp(prefix="csroot-", dir="/tmp"), tempfile.mkdtemp(prefix="csrun-", dir="/tmp")
    store = ["podman", "--root", root, "--runroot", run, "--storage-driver", "vfs"]
    try:
        encapsulate(
            run_cli, "--rootfs", str(sample_tree), f"containers-storage:[vfs@{root}+{run}]localhost/dc/s:v1"
        )
        images = subprocess.run(
            [*store, "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        assert "localhost/dc/s:v1" in images.stdout
    finally:
        subprocess.run([*store, "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", root, run])
