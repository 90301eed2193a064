"""mapping.commit: an OSTree commit read through libostree: its entries, its
metadata and timestamp, and content checked against its checksums."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mapping import EntryType, MappingError
from mapping.commit import CommitTree
from tests.sample import commit


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, sample_tree: Path) -> Path:
    """The sample committed with metadata, in a bare-user repo."""
    repo = tmp_path_factory.mktemp("commit-repo")
    metadata = (
        "--add-metadata-string=version=13.1",
        "--add-metadata=ostree.container-cmd=['/usr/bin/bash', '-l']",
        "--add-metadata=ostree.bootable=true",
    )
    commit(sample_tree, repo, "meta", options=metadata)
    return repo


def test_metadata_and_timestamp(repo: Path) -> None:
    tree = CommitTree(str(repo), "meta")
    # tests.sample.commit's time: 2026-01-01T00:00:00Z.
    assert tree.timestamp == 1767225600 and isinstance(tree.timestamp, int)
    assert tree.metadata["version"] == "13.1"
    assert tree.metadata["ostree.container-cmd"] == ["/usr/bin/bash", "-l"]
    assert tree.metadata["ostree.bootable"] is True
    assert tree.subject == "sample"
    assert tree.description == f"{repo}:meta"
    checksum = subprocess.run(
        ["ostree", "rev-parse", f"--repo={repo}", "meta"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tree.checksum == checksum
    assert CommitTree(str(repo), checksum).metadata == tree.metadata


def test_content_ids_are_ostree_checksums(repo: Path) -> None:
    tree = CommitTree(str(repo), "meta", threads=2)
    ls = subprocess.run(
        ["ostree", "ls", f"--repo={repo}", "-C", "meta", "/usr/bin/bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    bash = tree.get("usr/bin/bash")
    assert bash is not None and bash.type is EntryType.FILE
    assert bash.content_id == ls[4] and bash.hardlink == bash.content_id
    data = tree.read_bytes("bin/bash")  # through the usrmerge link
    assert data is not None and len(data) == bash.size
    with bash.open() as f:
        assert f.read() == data
    assert tree.read_bytes("bin/bash", limit=10) == data[:10]
    # One thread or several: the same entries.
    assert list(CommitTree(str(repo), "meta", threads=1)) == list(tree)


def test_a_changed_object_is_caught_when_read(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(repo), str(copy)], check=True)
    tree = CommitTree(str(copy), "meta")
    status = tree.get("usr/share/dpkg/database/status")
    assert status is not None and status.content_id is not None
    victim = copy / "objects" / status.content_id[:2] / f"{status.content_id[2:]}.file"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes().replace(b"Package:", b"Packaxe:", 1))
    with pytest.raises(MappingError, match=rf"{status.content_id}.*checksum mismatch.*ostree fsck"):
        tree.read_bytes(status.path)
