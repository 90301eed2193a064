"""``debchunk map``: the table, the JSON contract, and the library round trip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mapping import Mapping, build_mapping
from tests.conftest import RunCli


def test_map_json_matches_the_library_and_reads_back(run_cli: RunCli, sample_repos: dict[str, Path]) -> None:
    proc = run_cli("map", "--repo", str(sample_repos["bare-user"]), "sample", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["admindir"] == "usr/share/dpkg/database"
    glibc = next(c for c in data["components"] if c["name"] == "glibc")
    assert set(glibc) == {
        "name",
        "kind",
        "packages",
        "version",
        "size",
        "files",
        "change_probability",
        "upstream_change_probability",
    }
    assert glibc["packages"] == ["libc-bin", "libc6:amd64", "locales"]
    assert glibc["kind"] == "package" and glibc["version"] == "2.41-12"
    library = build_mapping(repo=str(sample_repos["bare-user"]), ref="sample")
    assert data["components"] == library.to_json()["components"]
    assert Mapping.from_json(data).components == library.components
    sizes = [c["size"] for c in data["components"]]
    assert sizes == sorted(sizes, reverse=True)


def test_map_table(run_cli: RunCli, sample_tree: Path) -> None:
    proc = run_cli("map", "--rootfs", str(sample_tree))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["COMPONENT", "KIND", "PACKAGES", "SIZE", "FILES", "P(WEEK)"]
    rows = [line.split()[0] for line in lines[1 : lines.index("")]]
    assert rows[:3] == ["linux-signed-amd64", "volatile:initramfs", "glibc"]
    glibc = next(line for line in lines if line.startswith("glibc "))
    # Split (mapping.split): glibc's usr/share data is its own part, and the
    # packages' dpkg info records are theirs.
    assert "libc-bin, libc6:amd64, locales" in glibc and "3.0 MiB" in glibc and " 12 " in glibc
    assert any(line.startswith("glibc:data ") for line in lines)
    assert any(line.startswith("17 components") for line in lines)


def test_container_encapsulate_defaults_and_refusals(
    run_cli: RunCli, sample_repos: dict[str, Path], tmp_path: Path
) -> None:
    repo = str(sample_repos["bare-user"])
    # A commit is written in the ostree layer format unless told otherwise.
    proc = run_cli("--repo", repo, "sample", f"oci:{tmp_path}/img", "--json", program="container-encapsulate")
    assert proc.returncode == 0, proc.stderr
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{tmp_path}/img"], capture_output=True, text=True, check=True
    )
    assert "ostree.commit" in json.loads(inspect.stdout)["Labels"]
    # A destination that cannot be created: one line, exit 1, nothing left behind.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_cli("--repo", repo, "sample", f"oci:{blocker}/out", program="container-encapsulate")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("container-encapsulate: error: ") and str(blocker) in proc.stderr
    assert blocker.read_text() == "x"
    assert run_cli("--repo", repo, program="container-encapsulate").returncode == 2
    assert run_cli("--help", program="container-encapsulate").returncode == 0
