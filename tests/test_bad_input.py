"""Bad input to the mapping: a clear error naming what is at fault (one line,
exit status 1, from the command line), warnings for what it works around, no
traceback, nothing on disk changed."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from encapsulate import RootfsOrigin
from mapping import CommitOrigin, MappingError, build_mapping
from tests.conftest import RunCli, snapshot
from tests.sample import Pkg, SampleTree, build_sample, commit


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The process failed with exit 1 and exactly one error line naming ``words``."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("debchunk: error: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def map_rootfs(root: Path, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, Any], list[str]]:
    """A root tree mapped as ``debchunk map`` maps it (its packages split as the
    plan sees them): its JSON and the warnings it logged."""
    with caplog.at_level(logging.WARNING, logger="debchunk"):
        mapping = build_mapping(RootfsOrigin(str(root)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return mapping.to_json(), warnings


@pytest.fixture
def repo_copy(tmp_path: Path, sample_repos: dict[str, Path]) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(sample_repos["bare"], dst, symlinks=True)
    return dst


def test_missing_ref_is_one_line(run_cli: RunCli, repo_copy: Path) -> None:
    before = snapshot(repo_copy)
    line = one_error(run_cli("map", "--repo", str(repo_copy), "no/such/ref"), str(repo_copy), "no/such/ref")
    assert "ostree refs" in line
    assert snapshot(repo_copy) == before


def test_missing_ref(repo_copy: Path) -> None:
    before = snapshot(repo_copy)
    where = re.escape(str(repo_copy))
    with pytest.raises(MappingError, match=rf"^{where}: .*'no/such/ref'.*'ostree refs --repo={where}'"):
        build_mapping(CommitOrigin(str(repo_copy), "no/such/ref"))
    assert snapshot(repo_copy) == before


def test_missing_repo(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=rf"^{re.escape(str(tmp_path / 'nope'))}: .*--repo"):
        build_mapping(CommitOrigin(str(tmp_path / "nope"), "sample"))


def test_not_a_repo(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk/file").write_text("x")
    before = snapshot(tmp_path / "junk")
    with pytest.raises(
        MappingError, match=rf"^{re.escape(str(tmp_path / 'junk'))}: not an OSTree repository"
    ):
        build_mapping(CommitOrigin(str(tmp_path / "junk"), "sample"))
    assert snapshot(tmp_path / "junk") == before


def _objects(repo: Path, suffix: str) -> list[Path]:
    return sorted(p for p in (repo / "objects").rglob(f"*.{suffix}"))


@pytest.mark.parametrize("kind", ["commit", "dirtree", "dirmeta"])
def test_truncated_metadata_object(repo_copy: Path, kind: str) -> None:
    victim = _objects(repo_copy, kind)[0]
    os.truncate(victim, victim.stat().st_size // 2)
    before = snapshot(repo_copy)
    with pytest.raises(MappingError, match=rf"{kind}.* {victim.parent.name}.*damaged.*ostree fsck"):
        build_mapping(CommitOrigin(str(repo_copy), "sample"))
    assert snapshot(repo_copy) == before


def test_truncated_file_object_read_by_the_mapping(repo_copy: Path) -> None:
    # The dpkg status file is read by the mapping: its object is checked.
    checksum = subprocess.run(
        ["ostree", "ls", f"--repo={repo_copy}", "-C", "sample", "/usr/share/dpkg/database/status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[4]
    victim = repo_copy / "objects" / checksum[:2] / f"{checksum[2:]}.file"
    os.truncate(victim, 10)
    with pytest.raises(MappingError, match=rf"{checksum}.*ostree fsck"):
        build_mapping(CommitOrigin(str(repo_copy), "sample"))


def test_truncated_status_paragraph(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("aaa", files={"/usr/bin/aaa": b"a"}))
    t.add(Pkg("zzz", files={"/usr/bin/zzz": b"z"}))
    status = t.finish()
    data = (tmp_path / "t/usr/share/dpkg/database/status").read_bytes()
    cut = data.index(b"Status:", data.index(b"Package: zzz")) + 5  # mid-field of the last paragraph
    (tmp_path / "t/usr/share/dpkg/database/status").write_bytes(data[:cut])
    before = snapshot(status)
    mapping, (warning,) = map_rootfs(status, caplog)
    assert "usr/share/dpkg/database/status" in warning and "zzz" in warning and "truncated" in warning
    components = {c["name"]: c for c in mapping["components"]}
    # aaa's binary and its own dpkg file list (a package's records go with it)
    assert components["aaa"]["files"] == 2
    assert "zzz" not in components and components["unpackaged"]["files"] >= 1
    assert snapshot(status) == before


def test_list_naming_absent_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = SampleTree(tmp_path / "t")
    t.add(Pkg("ghost", files={"/usr/bin/ghost": b"g", "/usr/share/ghost/a": b"a"}))
    root = t.finish()
    os.unlink(root / "usr/bin/ghost")
    os.unlink(root / "usr/share/ghost/a")
    mapping, (warning,) = map_rootfs(root, caplog)
    assert "2 file(s)" in warning and "ghost" in warning and "absent" in warning
    assert mapping["components"][0]["name"] == "volatile:dpkg"


def test_symlinks_pointing_outside_are_never_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The host has a dpkg database at /var/lib/dpkg; a tree whose var/lib/dpkg
    climbs out of the tree must not read it."""
    assert Path("/var/lib/dpkg/status").exists()
    root = tmp_path / "t"
    (root / "var/lib").mkdir(parents=True)
    os.symlink("../../../../../../../../../var/lib/dpkg", root / "var/lib/dpkg")
    (root / "usr/share/doc").mkdir(parents=True)
    os.symlink("/usr/share/doc/libc6", root / "usr/share/doc/x")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/tool").write_bytes(b"t")
    before = snapshot(root)
    mapping, warnings = map_rootfs(root, caplog)
    assert mapping["admindir"] is None
    # Only the tree's own files: its tool, and the dangling var/lib/dpkg link.
    assert {c["name"]: c["files"] for c in mapping["components"]} == {"unpackaged": 2, "volatile": 1}
    assert any("outside the tree" in w for w in warnings)
    assert any("no dpkg database" in w for w in warnings)
    assert snapshot(root) == before


def test_unreadable_file(run_cli: RunCli, tmp_path: Path) -> None:
    root = build_sample(tmp_path / "t")
    secret = root / "usr/bin/bash"
    secret.chmod(0)
    before = snapshot(root)
    # Root reads anything: drop the capabilities that let it, as an unprivileged
    # user would be (a child process, so this one keeps them).
    proc = run_cli(
        "map",
        "--rootfs",
        str(root),
        prefix=("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"),
    )
    one_error(proc, str(secret), "cannot read", "permissions")
    assert snapshot(root) == before


def test_rootfs_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(MappingError, match=rf"^{re.escape(str(tmp_path / 'f'))}: not a directory"):
        build_mapping(RootfsOrigin(str(tmp_path / "f")))
    with pytest.raises(MappingError, match=rf"^{re.escape(str(tmp_path / 'missing'))}: "):
        build_mapping(RootfsOrigin(str(tmp_path / "missing")))


def test_bad_source_date_epoch(run_cli: RunCli, sample_tree: Path) -> None:
    # The environment is read by the command line only (BuildConfig.epoch in the library).
    one_error(
        run_cli("map", "--rootfs", str(sample_tree), env={"SOURCE_DATE_EPOCH": "yesterday"}),
        "SOURCE_DATE_EPOCH",
    )


def test_usage_errors_exit_2(run_cli: RunCli, sample_tree: Path) -> None:
    proc = run_cli("map", "--rootfs", str(sample_tree), "--repo", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert run_cli("map").returncode == 2


def test_archive_repo_truncated_object(tmp_path: Path, sample_tree: Path) -> None:
    repo = tmp_path / "archive"
    commit(sample_tree, repo, "sample", "archive")
    victim = _objects(repo, "dirtree")[-1]
    os.truncate(victim, 3)
    with pytest.raises(MappingError, match=r"dirtree.*ostree fsck"):
        build_mapping(CommitOrigin(str(repo), "sample"))
