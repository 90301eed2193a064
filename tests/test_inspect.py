"""debchunk inspect and debchunk diff on real images: ours (plain and ostree,
gzip and zstd), one made by umoci, an oci-archive and a registry image; and the
update cost they report against benches.update_pairs for the same plan."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benches.update_cost import split_index
from benches.update_pairs import TreeIndex, download_bytes, row_content_id
from chunker import Plan
from mapping import EntryType, RootfsOrigin, build_mapping
from tests.conftest import RunCli, debchunk_bytes, printable_lines, snapshot
from tests.images import HOSTILE_NAMES, HOSTILE_VERSION, build_args, hostile_image, put_blob, write_layout
from tests.sample import Pkg, SampleTree, blob, day

EPOCH = "1767225600"  # 2026-01-01


def encapsulate(run_cli: RunCli, *args: str) -> dict[str, Any]:
    """The build's JSON (as ``container-encapsulate --json`` prints it), built in this process."""
    return build_args(*args, epoch=int(EPOCH)).to_json()


def debchunk_json(run_cli: RunCli, *args: str) -> dict[str, Any]:
    proc = run_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 1 and exactly one ``debchunk: error:`` line naming ``words``."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("debchunk: error: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def read_image(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of image ``tag`` in an OCI layout, read directly."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        m
        for m in index["manifests"]
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
    ]
    blobs = layout / "blobs/sha256"
    manifest = json.loads((blobs / entry["digest"][7:]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_text())
    return manifest, config


def non_directories(tree: Path) -> int:
    """Entries of a tree that are not directories (lstat, no symlink followed)."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        count += len(filenames) + sum(1 for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    return count


def check_layers(report: dict[str, Any], layout: Path, tag: str) -> None:
    """Digests and sizes are the manifest's; each uncompressed size is the size
    of the tar whose sha256 is the config's diff_id (decompressed here with the
    standard library, or the zstd decompressor)."""
    import zstandard

    manifest, config = read_image(layout, tag)
    assert [(x["digest"], x["size"]) for x in report["layers"]] == [
        (d["digest"], d["size"]) for d in manifest["layers"]
    ]
    assert [x["diff_id"] for x in report["layers"]] == config["rootfs"]["diff_ids"]
    for layer in report["layers"]:
        data = (layout / "blobs/sha256" / layer["digest"][7:]).read_bytes()
        if data[:2] == b"\x1f\x8b":
            tar = gzip.decompress(data)
        else:
            tar = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == layer["diff_id"]
        assert layer["uncompressed_size"] == len(tar)
    assert report["size"] == sum(d["size"] for d in manifest["layers"])
    assert report["uncompressed_size"] == sum(x["uncompressed_size"] for x in report["layers"])


def test_inspect_our_image(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    built = encapsulate(
        run_cli,
        "--rootfs",
        str(sample_tree),
        f"oci:{tmp_path}/img:v1",
        "--max-layers",
        "8",
        "--plan-json",
        str(plan_file),
    )
    report = debchunk_json(run_cli, "inspect", f"oci:{tmp_path}/img:v1")
    assert report["manifest"] == built["manifest"] and report["config"] == built["config"]
    assert report["debchunk"] is True
    check_layers(report, tmp_path / "img", "v1")
    assert [x["uncompressed_size"] for x in report["layers"]] == [
        x["uncompressed_size"] for x in built["layers"]
    ]
    # Every non-directory of the tree is in exactly one layer.
    assert report["files"] == non_directories(sample_tree)
    assert report["layers"][0]["files"] == 0  # the directories
    # Components, sizes and probabilities are the plan's.
    _, config = read_image(tmp_path / "img", "v1")
    labels = config["config"]["Labels"]
    components = json.loads(labels["org.debchunk.components"])
    plan = json.loads(plan_file.read_text())
    assert report["components"] == len(components)
    for layer, planned in zip(report["layers"][1:], plan["layers"], strict=True):
        names = [c["name"] for c in layer["components"]]
        assert layer["other_components"] == len(planned["components"]) - len(names)
        assert set(names) <= set(planned["components"])
        # The largest first, and these are the largest.
        sizes = [components[n]["size"] for n in planned["components"]]
        assert [c["size"] for c in layer["components"]] == sorted(sizes, reverse=True)[: len(names)]
        assert layer["content_size"] == planned["size"]
        assert layer["change_probability"] == pytest.approx(planned["change_probability"], abs=1e-5)
    assert report["layers"][0]["change_probability"] is None
    # The planner counts content bytes; inspect counts what a client downloads:
    # each layer's compressed size times its weekly change probability.
    content = sum(layer["content_size"] * layer["change_probability"] for layer in report["layers"][1:])
    assert content == pytest.approx(plan["expected_update_bytes"], rel=1e-5)
    downloaded = sum(layer["size"] * layer["change_probability"] for layer in report["layers"][1:])
    assert report["expected_download_bytes"] == pytest.approx(downloaded)
    # Named apart from the plan's content figure, never under its name.
    assert "expected_update_bytes" not in report and "expected_update_bytes" not in report["layers"][1]
    assert [layer["expected_download_bytes"] for layer in report["layers"][1:]] == pytest.approx(
        [layer["size"] * layer["change_probability"] for layer in report["layers"][1:]]
    )
    # The table: a header, one row per layer, the summary.
    text = run_cli("inspect", f"oci:{tmp_path}/img:v1")
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[1].split()[:5] == ["LAYER", "DIGEST", "SIZE", "UNPACKED", "FILES"]
    assert [line.split()[0] for line in lines[2:10]] == [str(k) for k in range(1, 9)]
    assert lines[2].split()[1] == report["layers"][0]["digest"][:19]
    assert (
        "8 layers" in lines[-1] and f"{report['files']} files" in lines[-1] and "expected update" in lines[-1]
    )
    # Manifest and config only.
    quick = debchunk_json(run_cli, "inspect", f"oci:{tmp_path}/img:v1", "--no-layers")
    assert quick["files"] is None and all(x["uncompressed_size"] is None for x in quick["layers"])
    assert quick["expected_download_bytes"] == report["expected_download_bytes"]


def test_inspect_zstd_and_ostree(run_cli: RunCli, sample_repos: dict[str, Path], tmp_path: Path) -> None:
    repo = str(sample_repos["bare-user"])
    gz = encapsulate(run_cli, "--repo", repo, "sample", f"oci:{tmp_path}/img:gz", "--max-layers", "6")
    zst = encapsulate(
        run_cli,
        "--repo",
        repo,
        "sample",
        f"oci:{tmp_path}/img:zst",
        "--max-layers",
        "6",
        "--compression",
        "zstd",
    )
    a = debchunk_json(run_cli, "inspect", f"oci:{tmp_path}/img:gz")
    b = debchunk_json(run_cli, "inspect", f"oci:{tmp_path}/img:zst")
    check_layers(a, tmp_path / "img", "gz")
    check_layers(b, tmp_path / "img", "zst")
    # The same tars, compressed two ways.
    assert [x["diff_id"] for x in a["layers"]] == [x["diff_id"] for x in gz["layers"]]
    assert [x["diff_id"] for x in b["layers"]] == [x["diff_id"] for x in zst["layers"]]
    assert [x["uncompressed_size"] for x in a["layers"]] == [x["uncompressed_size"] for x in b["layers"]]
    assert [x["files"] for x in a["layers"]] == [x["files"] for x in b["layers"]]
    assert all(x["files"] > 0 for x in a["layers"])
    # The ostree commit layer has no components; the others are the annotations'.
    manifest, _ = read_image(tmp_path / "img", "gz")
    for layer, descriptor in zip(a["layers"][1:], manifest["layers"][1:], strict=True):
        names = descriptor["annotations"]["ostree.components"].split(",")
        assert len(layer["components"]) + layer["other_components"] == len(names)
    # Switching compression downloads every layer: different blobs, same content.
    d = debchunk_json(run_cli, "diff", f"oci:{tmp_path}/img:gz", f"oci:{tmp_path}/img:zst")
    assert d["reused_layers"] == 0 and d["download_bytes"] == d["total_bytes"] == b["size"]
    assert d["components"] == {"added": [], "removed": [], "changed": []}
    assert d["ideal_bytes"] == 0


def test_inspect_umoci_image(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("umoci\n")
    (src / "bin").mkdir()
    (src / "bin/tool").write_bytes(blob("tool", 70_000))
    os.symlink("tool", src / "bin/alias")
    layout = tmp_path / "L"
    for args in (
        ["init", "--layout", str(layout)],
        ["new", "--image", f"{layout}:t"],
        ["insert", "--image", f"{layout}:t", str(src), "/"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    report = debchunk_json(run_cli, "inspect", f"oci:{layout}:t")
    check_layers(report, layout, "t")
    assert report["debchunk"] is False and report["components"] is None
    assert report["expected_download_bytes"] is None
    (layer,) = report["layers"]
    assert layer["files"] == 3 and layer["components"] == [] and layer["change_probability"] is None
    text = run_cli("inspect", f"oci:{layout}:t")
    assert text.returncode == 0 and "not written by debchunk" in text.stdout
    # From umoci's image to ours: everything is new; the components label is NEW's only.
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/ours:v1", "--max-layers", "4")
    d = debchunk_json(run_cli, "diff", f"oci:{layout}:t", f"oci:{tmp_path}/ours:v1")
    assert d["reused_layers"] == 0 and d["download_bytes"] == d["total_bytes"]
    assert d["components"] is None
    _, config = read_image(tmp_path / "ours", "v1")
    components = json.loads(config["config"]["Labels"]["org.debchunk.components"])
    assert d["download_content_bytes"] == sum(c["size"] for c in components.values())
    assert d["ideal_bytes"] is not None and d["ideal_bytes"] > 0


def test_archive_and_registry(run_cli: RunCli, sample_tree: Path, tmp_path: Path, registry: str) -> None:
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v1", "--max-layers", "6")
    local = debchunk_json(run_cli, "inspect", f"oci:{tmp_path}/img:v1")
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{tmp_path}/img:v1", f"oci-archive:{tmp_path}/img.tar:v1"], check=True
    )
    archive = debchunk_json(run_cli, "inspect", f"oci-archive:{tmp_path}/img.tar:v1")
    assert {**archive, "image": None} == {**local, "image": None}
    target = f"{registry}/debchunk/inspect:v1"
    subprocess.run(
        ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{tmp_path}/img:v1", f"docker://{target}"],
        check=True,
    )
    insecure = ("--tls-verify", "false")
    # Without the blobs: what the manifest and config say.
    remote = debchunk_json(run_cli, "inspect", f"registry:{target}", *insecure)
    assert remote["manifest"] == local["manifest"]
    assert remote["files"] is None and remote["uncompressed_size"] is None
    assert [(x["digest"], x["size"], x["components"]) for x in remote["layers"]] == [
        (x["digest"], x["size"], x["components"]) for x in local["layers"]
    ]
    assert remote["expected_download_bytes"] == local["expected_download_bytes"]
    # With them: everything.
    fetched = debchunk_json(run_cli, "inspect", f"docker://{target}", "--fetch", *insecure)
    assert {**fetched, "image": None} == {**local, "image": None}
    # Without --tls-verify false skopeo refuses plain HTTP: one line.
    one_error(run_cli("inspect", f"registry:{target}"), f"registry:{target}", "skopeo")
    # The registry copy is the local image: nothing to download, nothing read.
    d = debchunk_json(run_cli, "diff", f"oci:{tmp_path}/img:v1", f"registry:{target}", *insecure)
    assert d["download_bytes"] == 0 and d["ideal_bytes"] == 0 and d["new_layers"] == 0
    assert d["total_bytes"] == local["size"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_diff_against_itself(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    built = encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v1", "--max-layers", "8")
    ref = f"oci:{tmp_path}/img:v1"
    d = debchunk_json(run_cli, "diff", ref, ref)
    assert d["download_bytes"] == 0 and d["download_content_bytes"] == 0 and d["ideal_bytes"] == 0
    assert d["total_bytes"] == sum(x["size"] for x in built["layers"])
    assert d["reused_layers"] == len(built["layers"]) and d["new_layers"] == 0
    assert all(x["reused"] for x in d["layers"])
    assert d["components"] == {"added": [], "removed": [], "changed": []}
    text = run_cli("diff", ref, ref)
    assert text.returncode == 0 and "download 0 B of" in text.stdout and "none changed" in text.stdout


def packages_tree(root: Path) -> Path:
    """Twelve packages of growing sizes; pkg05 ships one file twice."""
    t = SampleTree(root)
    for i in range(12):
        files = {f"/usr/lib/pkg{i:02d}/data": blob(f"p{i}", 50_000 * (i + 1))}
        if i == 5:
            files["/usr/lib/pkg05/copy"] = files["/usr/lib/pkg05/data"]
        t.add(Pkg(f"pkg{i:02d}", files=files, changelog=[day(i * 10)]))
    return t.finish()


def tree_index(root: Path, name: str) -> TreeIndex:
    """The tree index ``benches.update_pairs.make_index`` records, made in memory."""
    m = build_mapping(RootfsOrigin(str(root)))
    assert m.tree is not None
    rows = sorted(
        (e.path, row_content_id(e.type, e.content_id, e.target, e.rdev), e.size, e.mode, m.components[o].name)
        for e, o in zip(m.tree.entries, m.owners, strict=True)
        if e.type is not EntryType.DIR
    )
    columns = list(zip(*rows, strict=True))
    return TreeIndex.of_rows("test", name, m.components, *columns)


def test_diff_after_one_package_changed(run_cli: RunCli, tmp_path: Path) -> None:
    root = packages_tree(tmp_path / "t")
    plan = tmp_path / "plan.json"
    layout, old_ref, new_ref = tmp_path / "img", f"oci:{tmp_path}/img:1", f"oci:{tmp_path}/img:2"
    encapsulate(run_cli, "--rootfs", str(root), old_ref, "--max-layers", "8", "--plan-json", str(plan))
    old_index = tree_index(root, "1")
    new_content = blob("changed", 123_456)
    for name in ("data", "copy"):
        (root / "usr/lib/pkg05" / name).write_bytes(new_content)
    new = encapsulate(run_cli, "--rootfs", str(root), new_ref, "--max-layers", "8", "--prior-plan", str(plan))
    new_index = tree_index(root, "2")
    d = debchunk_json(run_cli, "diff", old_ref, new_ref)
    old_manifest, _ = read_image(layout, "1")
    new_manifest, new_config = read_image(layout, "2")
    have = {x["digest"] for x in old_manifest["layers"]}
    fresh = [x for x in new_manifest["layers"] if x["digest"] not in have]
    # One layer changed: pkg05's.
    assert len(fresh) == 1 and d["new_layers"] == 1
    (changed,) = [x for x in new["layers"] if x["digest"] not in have]
    assert "pkg05" in changed["components"]
    assert d["download_bytes"] == sum(x["size"] for x in fresh)
    assert d["total_bytes"] == sum(x["size"] for x in new_manifest["layers"])
    assert [x["reused"] for x in d["layers"]] == [x["digest"] in have for x in new_manifest["layers"]]
    assert d["components"]["changed"] == [
        {
            "name": "pkg05",
            "status": "changed",
            "old_version": "1.0-1",
            "new_version": "1.0-1",
            "old_size": d["components"]["changed"][0]["old_size"],
            "new_size": d["components"]["changed"][0]["old_size"] + 123_456 - 6 * 50_000,
        }
    ]
    assert d["components"]["added"] == d["components"]["removed"] == []
    # The content of the downloaded layer, by the components label ...
    components = json.loads(new_config["config"]["Labels"]["org.debchunk.components"])
    assert d["download_content_bytes"] == sum(components[n]["size"] for n in changed["components"])
    # ... is what the update-cost experiment counts for the same two plans.
    groups = [
        json.loads(read_image(layout, tag)[1]["config"]["Labels"]["org.debchunk.plan"]) for tag in ("1", "2")
    ]
    old_view = split_index(old_index, Plan.from_groups(groups[0]))
    new_view = split_index(new_index, Plan.from_groups(groups[1]))
    assert d["download_content_bytes"] == download_bytes(old_view, groups[0], new_view, groups[1])
    # The new content, once, though two files hold it.
    assert d["ideal_bytes"] == 123_456
    text = run_cli("diff", old_ref, new_ref)
    assert text.returncode == 0
    assert "1 of 8 layers new, 7 reused" in text.stdout and "changed 1: pkg05" in text.stdout


@pytest.fixture
def layout_copy(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> Path:
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{tmp_path}/img:v1", "--max-layers", "4")
    return tmp_path / "img"


def test_missing_and_not_a_layout(run_cli: RunCli, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    one_error(run_cli("inspect", f"oci:{missing}:v1"), str(missing), "no such directory")
    assert not missing.exists()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    before = snapshot(junk)
    one_error(run_cli("inspect", f"oci:{junk}"), str(junk), "not an OCI image layout")
    one_error(run_cli("diff", f"oci:{junk}", f"oci:{junk}"), str(junk), "not an OCI image layout")
    assert snapshot(junk) == before
    one_error(run_cli("inspect", f"oci-archive:{tmp_path}/none.tar"), "none.tar", "no such archive")
    one_error(run_cli("inspect", f"ftp:{tmp_path}"), "unknown transport")
    assert run_cli("inspect").returncode == 2
    assert run_cli("diff", f"oci:{junk}").returncode == 2


def test_truncated_layer(run_cli: RunCli, layout_copy: Path, tmp_path: Path) -> None:
    manifest, _ = read_image(layout_copy, "v1")
    biggest = max(manifest["layers"], key=lambda x: x["size"])
    path = layout_copy / "blobs/sha256" / biggest["digest"][7:]
    path.write_bytes(path.read_bytes()[: biggest["size"] // 2])
    before = snapshot(layout_copy)
    k = manifest["layers"].index(biggest) + 1
    line = one_error(
        run_cli("inspect", f"oci:{layout_copy}:v1"), f"oci:{layout_copy}:v1", f"layer {k}", biggest["digest"]
    )
    assert f"truncated: {biggest['size'] // 2} of {biggest['size']} bytes" in line
    assert "fetch or build it again" in line
    # diff reads NEW's new layers for ideal_bytes: the same error.
    encapsulate(
        run_cli,
        "--rootfs",
        str(packages_tree(tmp_path / "t")),
        f"oci:{tmp_path}/other:v1",
        "--max-layers",
        "3",
    )
    one_error(run_cli("diff", f"oci:{tmp_path}/other:v1", f"oci:{layout_copy}:v1"), f"layer {k}", "truncated")
    # Manifest and config only: the layers are not read.
    assert run_cli("inspect", f"oci:{layout_copy}:v1", "--no-layers").returncode == 0
    assert snapshot(layout_copy) == before


def test_damaged_zstd_layer(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    encapsulate(
        run_cli,
        "--rootfs",
        str(sample_tree),
        f"oci:{tmp_path}/img:v1",
        "--max-layers",
        "3",
        "--compression",
        "zstd",
    )
    manifest, _ = read_image(tmp_path / "img", "v1")
    biggest = max(manifest["layers"], key=lambda x: x["size"])
    path = tmp_path / "img/blobs/sha256" / biggest["digest"][7:]
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    one_error(run_cli("inspect", f"oci:{tmp_path}/img:v1"), biggest["digest"], "truncated")
    # A blob one byte longer than its descriptor says.
    path.write_bytes(data + b"x")
    one_error(run_cli("inspect", f"oci:{tmp_path}/img:v1"), biggest["digest"], "not the manifest's")
    path.unlink()
    one_error(run_cli("inspect", f"oci:{tmp_path}/img:v1"), biggest["digest"], "the blob is missing")


def _store(layout: Path, data: bytes) -> dict[str, Any]:
    """Put ``data`` into the layout as a blob; its digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


@pytest.mark.invalid_images  # a document of a copy is damaged on purpose
@pytest.mark.parametrize("which", ["manifest", "config"])
def test_not_json(run_cli: RunCli, layout_copy: Path, which: str) -> None:
    """Bytes that are not JSON, under a descriptor that names them: the
    manifest or config is named, and what is wrong with it."""
    index = json.loads((layout_copy / "index.json").read_text())
    entry = index["manifests"][0]
    junk = _store(layout_copy, b"{not json")
    if which == "config":
        manifest = json.loads((layout_copy / "blobs/sha256" / entry["digest"][7:]).read_text())
        manifest["config"].update(junk)
        entry.update(_store(layout_copy, json.dumps(manifest).encode()))
    else:
        entry.update(junk)
    (layout_copy / "index.json").write_text(json.dumps(index))
    before = snapshot(layout_copy)
    one_error(run_cli("inspect", f"oci:{layout_copy}:v1"), f"{which} {junk['digest']}", "not JSON")
    one_error(run_cli("diff", f"oci:{layout_copy}:v1", f"oci:{layout_copy}:v1"), which, "not JSON")
    assert snapshot(layout_copy) == before


@pytest.mark.invalid_images  # a document of a copy is damaged on purpose
@pytest.mark.parametrize("which", ["manifest", "config"])
def test_bytes_not_their_digest(run_cli: RunCli, layout_copy: Path, which: str) -> None:
    """A manifest or config whose bytes are not the ones its descriptor names
    is refused before it is read (even when they are valid JSON)."""
    index = json.loads((layout_copy / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    if which == "config":
        digest = json.loads((layout_copy / "blobs/sha256" / digest[7:]).read_text())["config"]["digest"]
    path = layout_copy / "blobs/sha256" / digest[7:]
    document = json.loads(path.read_text())
    path.write_text(json.dumps(document, indent=2))
    line = one_error(run_cli("inspect", f"oci:{layout_copy}:v1"), f"{which} {digest}", "the image is damaged")
    assert "have digest sha256:" in line and "not the descriptor's" in line


def test_reading_changes_nothing(run_cli: RunCli, layout_copy: Path) -> None:
    before = snapshot(layout_copy)
    ref = f"oci:{layout_copy}:v1"
    for args in (
        ("inspect", ref),
        ("inspect", ref, "--json"),
        ("diff", ref, ref),
        ("diff", ref, ref, "--json"),
    ):
        assert run_cli(*args).returncode == 0
    assert snapshot(layout_copy) == before


def test_names_from_an_image_are_printed_escaped(tmp_path: Path) -> None:
    """Component names and versions holding line breaks, escape sequences,
    a lone surrogate or a bidi override reach the terminal escaped: each row
    of the table one printable line, no fake "OK" line; --json is the exact
    strings, as ASCII JSON."""
    old = hostile_image(tmp_path / "a")
    new = hostile_image(tmp_path / "b", version="2\x1b[0m")
    proc = debchunk_bytes("inspect", old)
    assert proc.returncode == 0 and proc.stderr == b"", proc
    lines = printable_lines(proc.stdout)
    assert len(lines) == 9 and lines[0].startswith(f"{old}: sha256:"), lines
    assert lines[3].endswith(r"  \x1b[32mgreen\x1b[0m, evil\nOK: valid"), lines
    assert lines[4].endswith(r"  lone\ud800, title\x1b]0;pwned\x07"), lines
    assert lines[6].endswith(r"  tab\tcr\rdel\x7f"), lines
    assert not any(line.startswith("OK") for line in lines)
    proc = debchunk_bytes("inspect", "--json", old)
    assert proc.returncode == 0 and proc.stdout.isascii(), proc
    printable_lines(proc.stdout)
    shown = [c for layer in json.loads(proc.stdout)["layers"] for c in layer["components"]]
    assert sorted(c["name"] for c in shown) == sorted(HOSTILE_NAMES)
    assert {c["version"] for c in shown} == {HOSTILE_VERSION}
    proc = debchunk_bytes("diff", old, new)
    assert proc.returncode == 0 and proc.stderr == b"", proc
    lines = printable_lines(proc.stdout)
    assert len(lines) == 11 and lines[0] == f"{old} -> {new}", lines
    assert lines[-1].startswith("components: changed 7: "), lines
    assert r"evil\nOK: valid 1\x1b[2J\n2 -> 2\x1b[0m" in lines[-1]
    proc = debchunk_bytes("diff", "--json", old, new)
    assert proc.returncode == 0 and proc.stdout.isascii(), proc
    changed = json.loads(proc.stdout)["components"]["changed"]
    assert sorted(c["name"] for c in changed) == sorted(HOSTILE_NAMES)


def test_an_error_quoting_an_image_is_one_line(tmp_path: Path) -> None:
    """An image index whose platforms hold a line break and escape sequences:
    the error naming them is one printable line."""
    layout = tmp_path / "img"
    write_layout(layout, [(b"", {})], {})
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    platform = {"os": "linux\nOK: valid\x1b[32m", "architecture": "arm64\ud800"}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{**entry, "annotations": {}, "platform": platform}],
    }
    top = {"mediaType": index["mediaType"], **put_blob(layout, json.dumps(index).encode())}
    top["annotations"] = {"org.opencontainers.image.ref.name": "t"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    proc = debchunk_bytes("inspect", f"oci:{layout}:t")
    assert proc.returncode == 1 and proc.stdout == b"", proc
    (line,) = printable_lines(proc.stderr)
    assert line.startswith(f"debchunk: error: oci:{layout}:t: image index sha256:"), line
    assert line.endswith(r"(it has linux\nOK: valid\x1b[32m/arm64\ud800); choose one of those"), line
