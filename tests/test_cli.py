"""``debchunk map``: the table, the JSON contract, and the library round trip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from mapping import CommitOrigin, Mapping, build_mapping
from tests.conftest import RunCli
from tests.sample import day


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
        "date",
    }
    # The newest date of glibc's changelog in the sample (day 0), as seconds.
    assert glibc["date"] == int(day(0).timestamp())
    assert glibc["packages"] == ["libc-bin", "libc6:amd64", "locales"]
    assert glibc["kind"] == "package" and glibc["version"] == "2.41-12"
    library = build_mapping(CommitOrigin(str(sample_repos["bare-user"]), "sample"))
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


def test_tls_verify_takes_only_booleans(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    for word in ("maybe", "on", ""):
        proc = run_cli(
            "--rootfs",
            str(sample_tree),
            f"oci:{tmp_path}/x",
            "--dest-tls-verify",
            word,
            program="container-encapsulate",
        )
        assert proc.returncode == 2, (word, proc.stderr)
        assert "is not a boolean: give true or false" in proc.stderr
    assert not (tmp_path / "x").exists()
    for option in ("--tls-verify", "--dest-tls-verify"):
        proc = run_cli(
            "--rootfs",
            str(sample_tree),
            f"oci:{tmp_path}/y",
            option,
            "FALSE",
            "--dry-run",
            program="container-encapsulate",
        )
        assert proc.returncode == 0, proc.stderr


def test_usage_errors_exit_2_before_anything_is_written(
    run_cli: RunCli, sample_tree: Path, sample_repos: dict[str, Path], tmp_path: Path
) -> None:
    repo = str(sample_repos["bare-user"])
    out = tmp_path / "out"
    cases = [
        (
            ["--repo", repo, "sample", "--rootfs", str(sample_tree), f"oci:{out}"],
            "--repo REPO REF and --rootfs DIR: give one origin",
        ),
        (["--rootfs", str(sample_tree), f"oci:{out}:bad tag!"], "bad tag!"),
        (
            ["--rootfs", str(sample_tree), f"oci:{out}", "--plan-json", str(tmp_path / "no/such/plan.json")],
            "no directory",
        ),
        (
            ["--rootfs", str(sample_tree), f"oci:{out}", "--write-contentmeta-json", str(tmp_path)],
            "is a directory",
        ),
        (["--rootfs", str(sample_tree), f"oci:{out}", "--format-version", "3"], "versions 1 and 2"),
        (["--rootfs", str(sample_tree), f"oci:{out}", "--max-layers", "501"], "--max-layers 501"),
        (["--rootfs", str(sample_tree), f"oci:{out}", "--label", "novalue"], "--label 'novalue'"),
        (
            ["--rootfs", str(sample_tree), f"oci:{out}", "--format", "ostree"],
            "--format ostree needs an OSTree commit",
        ),
    ]
    for args, message in cases:
        proc = run_cli(*args, program="container-encapsulate")
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("container-encapsulate: error: ")
        assert not out.exists()


def test_plan_json_into_a_missing_directory_tags_nothing(
    run_cli: RunCli, sample_tree: Path, tmp_path: Path
) -> None:
    proc = run_cli(
        "--rootfs",
        str(sample_tree),
        f"oci:{tmp_path}/out:t",
        "--plan-json",
        str(tmp_path / "missing/plan.json"),
        program="container-encapsulate",
    )
    assert proc.returncode == 2 and "internal error" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_version(run_cli: RunCli) -> None:
    for program in ("debchunk", "container-encapsulate"):
        proc = run_cli("--version", program=program)
        assert proc.returncode == 0
        assert proc.stdout.strip() == f"{program} 0.1.0"


def test_contentmeta_is_rpm_ostree_shaped(run_cli: RunCli, sample_tree: Path, tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    proc = run_cli(
        "--rootfs",
        str(sample_tree),
        f"oci:{tmp_path}/out",
        "--write-contentmeta-json",
        str(path),
        "--dry-run",
        program="container-encapsulate",
    )
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(path.read_text())
    # ostree-ext's ObjectSourceMetaSized: the source metadata flattened, plus size.
    assert all(
        set(e) == {"identifier", "name", "srcid", "change_time_offset", "change_frequency", "size"}
        for e in entries
    )
    mapped = json.loads(run_cli("map", "--rootfs", str(sample_tree), "--json").stdout)
    sizes = {c["name"]: c["size"] for c in mapped["components"]}
    assert {e["name"]: e["size"] for e in entries} == sizes


def test_plan_from_a_saved_mapping_equals_plan_from_the_tree(
    run_cli: RunCli, sample_tree: Path, tmp_path: Path
) -> None:
    mapped = run_cli("map", "--rootfs", str(sample_tree), "--json")
    assert mapped.returncode == 0, mapped.stderr
    saved = tmp_path / "mapping.json"
    saved.write_text(mapped.stdout)
    # The saved mapping carries the split: data parts name their package.
    parts = [c for c in json.loads(mapped.stdout)["components"] if c.get("part_of")]
    assert parts and all(c["name"] == c["part_of"] + ":data" for c in parts)
    for layers in ("4", "8", "64"):
        from_tree = run_cli("plan", "--rootfs", str(sample_tree), "--max-layers", layers, "--json")
        from_file = run_cli("plan", "--mapping", str(saved), "--max-layers", layers, "--json")
        assert from_tree.returncode == 0 and from_file.returncode == 0, from_file.stderr
        assert json.loads(from_file.stdout) == json.loads(from_tree.stdout)


def test_tls_verify_reaches_every_image_read(run_cli: RunCli, sample_tree: Path, registry: str) -> None:
    """The test registry speaks plain HTTP: reading it works only when
    --tls-verify false reaches skopeo, for plan --prior, --prior and
    --compare-with-build alike."""
    image = f"registry:{registry}/tls:first"
    pushed = run_cli(
        "--rootfs", str(sample_tree), image, "--max-layers", "6", "--dest-tls-verify", "false", "-q",
        program="container-encapsulate",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    reads = [
        ("plan", "--rootfs", str(sample_tree), "--prior", image, "--max-layers", "6"),
        ("encapsulate", "--rootfs", str(sample_tree), f"registry:{registry}/tls:second", "--prior", image,
         "--max-layers", "6", "--dest-tls-verify", "false"),
        ("encapsulate", "--rootfs", str(sample_tree), f"registry:{registry}/tls:third",
         "--compare-with-build", image, "--max-layers", "6", "--dest-tls-verify", "false"),
    ]  # fmt: skip
    for args in reads:
        refused = run_cli(*args)
        assert refused.returncode == 1, (args, refused.stderr)
        assert "HTTP response to HTTPS client" in refused.stderr and len(refused.stderr.splitlines()) == 1
        accepted = run_cli(*args, "--tls-verify", "false")
        assert accepted.returncode == 0, (args, accepted.stderr)
    compared = run_cli(*reads[2], "--tls-verify", "false")
    assert "compared with " in compared.stdout and "6 of 6 layers reused" in compared.stdout
