"""container-encapsulate's rpm-ostree-style options, dry runs, Ctrl-C, missing tools."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunCli, snapshot
from tests.sample import build_sample, commit
from tests.test_encapsulate import encapsulate, manifest


@pytest.fixture(scope="module")
def versioned_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def _config(layout: Path, tag: str) -> dict[str, object]:
    digest = manifest(layout, tag)["config"]["digest"]  # type: ignore[index]
    data: dict[str, object] = json.loads((layout / "blobs/sha256" / digest[7:]).read_text())
    return data


def test_metadata_config_cmd_and_contentmeta(run_cli: RunCli, versioned_repo: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"author": "builder", "config": {"Env": ["A=1"], "Labels": {"x": "y"}}}))
    encapsulate(
        run_cli,
        "--repo",
        str(versioned_repo),
        "v",
        f"oci:{tmp_path}/img:1",
        "--copymeta",
        "version",
        "--copymeta-opt",
        "absent",
        "--image-config",
        str(cfg),
        "--cmd",
        "/usr/bin/bash",
        "--cmd=-l",
        "--write-contentmeta-json",
        str(tmp_path / "cm.json"),
        "-l",
        "org.example=1",
    )
    config = _config(tmp_path / "img", "1")
    runtime = config["config"]
    assert isinstance(runtime, dict)
    assert (
        config["author"] == "builder"
        and runtime["Env"] == ["A=1"]
        and runtime["Cmd"] == ["/usr/bin/bash", "-l"]
    )
    labels = runtime["Labels"]
    assert labels["version"] == labels["org.opencontainers.image.version"] == "13.2"
    assert labels["x"] == "y" and labels["org.example"] == "1" and "absent" not in labels
    # The commit's timestamp is the image's when SOURCE_DATE_EPOCH is not set... (here it is)
    assert config["created"] == "2026-01-01T00:00:00Z"
    content = json.loads((tmp_path / "cm.json").read_text())
    assert {"identifier", "name", "srcid", "change_time_offset", "change_frequency"} <= set(content[0])
    assert "glibc" in [c["name"] for c in content]


def test_commit_timestamp_without_source_date_epoch(
    run_cli: RunCli, versioned_repo: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())",
            "--repo",
            str(versioned_repo),
            "v",
            f"oci:{tmp_path}/img",
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert _config(tmp_path / "img", "latest")["created"] == "2026-02-01T00:00:00Z"


def test_dry_run_compare_and_refusals(run_cli: RunCli, versioned_repo: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "--repo",
        str(versioned_repo),
        "v",
        f"oci:{tmp_path}/dry",
        "--dry-run",
        "--max-layers",
        "5",
        program="container-encapsulate",
    )
    assert proc.returncode == 0 and "of at most 5" in proc.stdout and not (tmp_path / "dry").exists()
    encapsulate(run_cli, "--repo", str(versioned_repo), "v", f"oci:{tmp_path}/img:1", "--max-layers", "8")
    proc = run_cli(
        "--repo",
        str(versioned_repo),
        "v",
        f"oci:{tmp_path}/img:2",
        "--max-layers",
        "9",
        "--compare-with-build",
        f"oci:{tmp_path}/img:1",
        program="container-encapsulate",
    )
    assert proc.returncode == 0 and "layers reused" in proc.stdout
    for args, words in ((("--copymeta", "missing"), "--copymeta missing"),):
        bad = run_cli(
            "--repo",
            str(versioned_repo),
            "v",
            f"oci:{tmp_path}/img:3",
            *args,
            program="container-encapsulate",
        )
        assert bad.returncode == 1 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_skopeo_missing(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "--rootfs",
        str(sample_tree),
        "docker-archive:/tmp/never.tar",
        program="container-encapsulate",
        env={"PATH": str(tmp_path)},
    )
    assert proc.returncode == 1 and "needs skopeo" in proc.stderr and not Path("/tmp/never.tar").exists()
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ctrl_c_leaves_the_layout_as_it_was(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    layout = tmp_path / "img"
    encapsulate(run_cli, "--rootfs", str(sample_tree), f"oci:{layout}:keep")
    big = tmp_path / "big"
    subprocess.run(["cp", "-a", str(sample_tree), str(big)], check=True)
    with open(big / "usr/lib/firmware/huge.bin", "wb") as f:
        for _ in range(300):
            f.write(os.urandom(1 << 20))
    before = snapshot(layout, dir_mtimes=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from encapsulate.cli.main import container_encapsulate_main as m; sys.exit(m())",
            "--rootfs",
            str(big),
            f"oci:{layout}:new",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"},
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["container-encapsulate: error: interrupted; nothing was written"]
    assert snapshot(layout, dir_mtimes=False) == before


def test_disk_full_leaves_the_layout_as_it_was(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    """A 3 MiB filesystem holds a small image; writing the sample there runs out
    of space: one line, exit 1, the small image and its layout untouched."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(tiny)], check=True)
    try:
        small = tmp_path / "small"
        (small / "etc").mkdir(parents=True)
        (small / "etc/hostname").write_text("small\n")
        encapsulate(run_cli, "--rootfs", str(small), f"oci:{tiny}/img:small")
        before = snapshot(tiny, dir_mtimes=False)
        proc = run_cli(
            "--rootfs",
            str(sample_tree),
            f"oci:{tiny}/img:big",
            program="container-encapsulate",
            env={"SOURCE_DATE_EPOCH": "1767225600"},
        )
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left" in lines[0].lower(), lines
        assert snapshot(tiny, dir_mtimes=False) == before
        subprocess.run(["skopeo", "inspect", f"oci:{tiny}/img:small"], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", str(tiny)], check=True)
