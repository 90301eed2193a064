"""The ``debchunk`` and ``container-encapsulate`` entry points
(encapsulate/cli/main.py), run in this process: what each subcommand prints
(--dry-run, --json, --quiet, the plan table), the exit statuses (0; 1 and one
line for a failure, even an unforeseen one; 2 and the usage for a usage
error) and the log levels.  tests/test_cli.py and tests/test_cli_errors.py
run them as processes (map, --version, --help, refusals, Ctrl-C, a full disk).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from encapsulate.cli import main
from encapsulate.cli.main import container_encapsulate_main, debchunk_main
from tests.images import EPOCH

Entry = Callable[[Sequence[str] | None], int]


class Ran:
    """A command's exit status and what it printed."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def one_error(self, prog: str = "debchunk") -> str:
        """Exit 1 and one error line (nothing else on stderr); that line."""
        assert self.status == 1, self.err
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), self.err
        return lines[0]

    def usage_error(self, prog: str = "debchunk") -> str:
        """Exit 2, the usage, then one error line; that line."""
        assert self.status == 2, self.err
        lines = self.err.splitlines()
        # argparse names the subcommand too (``debchunk plan: error: ...``).
        assert lines[0].startswith(f"usage: {prog}") and re.match(rf"{prog}( \w+)?: error: ", lines[-1]), (
            self.err
        )
        assert "Traceback" not in self.err
        return lines[-1]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """Run ``debchunk`` (or ``entry``) with ``args`` at ``EPOCH``."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    monkeypatch.delenv("CI", raising=False)

    def go(*args: str, entry: Entry = debchunk_main) -> Ran:
        capsys.readouterr()
        try:
            status = entry(list(args))
        except SystemExit as e:  # argparse: --help, --version, usage errors
            status = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return Ran(status, out, err)

    return go


def test_dry_run_json_prints_the_plan_and_writes_nothing(
    run: Callable[..., Ran], sample_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    dry = run("--rootfs", str(sample_tree), f"oci:{out}", "--max-layers", "6", "--dry-run", "--json",
              entry=container_encapsulate_main)  # fmt: skip
    assert dry.status == 0, dry.err
    plan = json.loads(dry.out)
    assert plan["max_layers"] == 6 and len(plan["layers"]) + plan["reserved_layers"] <= 6
    # The plan the build would write is the one 'debchunk plan' makes.
    planned = run("plan", "--rootfs", str(sample_tree), "--max-layers", "6", "--json")
    assert planned.status == 0 and json.loads(planned.out) == plan
    # Without --json, the plan as a table; the same from 'debchunk encapsulate'.
    table = run("encapsulate", "--rootfs", str(sample_tree), f"oci:{out}", "--max-layers", "6", "--dry-run")
    assert table.status == 0, table.err
    assert table.out == run("plan", "--rootfs", str(sample_tree), "--max-layers", "6").out
    lines = table.out.splitlines()
    assert lines[0].split() == ["LAYER", "COMPONENTS", "SIZE", "P(WEEK)", "E(BYTES)"]
    assert len(lines) == 1 + len(plan["layers"]) + 2
    assert lines[-1].startswith(f"{len(plan['layers'])} content layers + 1 metadata = ")
    assert not out.exists()


def test_a_build_prints_its_image(run: Callable[..., Ran], sample_tree: Path, tmp_path: Path) -> None:
    layout = tmp_path / "img"
    # IMGREF may come before the options (as container-encapsulate takes it).
    built = run(f"oci:{layout}:one", "--rootfs", str(sample_tree), "--max-layers", "5", "--json",
                entry=container_encapsulate_main)  # fmt: skip
    assert built.status == 0, built.err
    result = json.loads(built.out)
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    assert result["destination"] == f"oci:{layout}:one" and result["manifest"] == entry["digest"]
    assert result["config"] == manifest["config"]["digest"]
    assert [layer["digest"] for layer in result["layers"]] == [d["digest"] for d in manifest["layers"]]
    assert [layer["size"] for layer in result["layers"]] == [d["size"] for d in manifest["layers"]]
    assert len(result["plan"]["layers"]) == len(manifest["layers"]) - 1
    # 'debchunk encapsulate' is the same command: the same image, one line for it.
    again = run("encapsulate", "--rootfs", str(sample_tree), f"oci:{layout}:two", "--max-layers", "5")
    assert again.status == 0, again.err
    count = len(manifest["layers"])
    assert again.out.startswith(f"oci:{layout}:two: {entry['digest']}, {count} layers, ")
    assert again.out.endswith(f" ({count} already in the layout)\n") and again.out.count("\n") == 1
    # --quiet: nothing on stdout or stderr.
    quiet = run("encapsulate", "--rootfs", str(sample_tree), f"oci:{layout}:three", "--max-layers", "5", "-q")
    assert (quiet.status, quiet.out, quiet.err) == (0, "", "")
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in manifests] == [
        "one",
        "two",
        "three",
    ]
    assert {m["digest"] for m in manifests} == {entry["digest"]}


def test_plan_subcommand(run: Callable[..., Ran], sample_tree: Path, tmp_path: Path) -> None:
    planned = run("plan", "--rootfs", str(sample_tree), "--max-layers", "4", "--json")
    assert planned.status == 0, planned.err
    plan = json.loads(planned.out)
    assert plan["max_layers"] == 4 and len(plan["layers"]) == 3
    # Planned again with that plan as the previous build's, nothing moves.
    saved = tmp_path / "plan.json"
    saved.write_text(planned.out)
    again = run(
        "plan", "--rootfs", str(sample_tree), "--max-layers", "4", "--prior-plan", str(saved), "--json"
    )
    assert again.status == 0, again.err
    assert [layer["components"] for layer in json.loads(again.out)["layers"]] == [
        layer["components"] for layer in plan["layers"]
    ]
    table = run("plan", "--rootfs", str(sample_tree), "--max-layers", "4")
    rows = table.out.splitlines()[1:4]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]


def test_usage_errors_exit_2(run: Callable[..., Ran], sample_tree: Path, tmp_path: Path) -> None:
    tree = str(sample_tree)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(run("map", "--rootfs", tree, "--json").out)
    cases = [
        (("plan", "--rootfs", tree, "--max-layers", "1"), "--max-layers 1: an image has 2"),
        (("plan", "--rootfs", tree, "--prior", "oci:/x", "--prior-plan", "p"), "only one previous build"),
        (("plan", "--mapping", str(mapping), "--rootfs", tree), "--mapping FILE takes no --repo, REF"),
        (("plan",), "give --repo REPO REF, or --rootfs DIR"),
        (("map",), "give --repo REPO REF, or --rootfs DIR"),
        (("map", "--repo", "/r", "ref", "--rootfs", tree), "--repo REPO REF and --rootfs DIR: give one"),
        (("map", "--rootfs", tree, "--bogus"), "unrecognized arguments: --bogus"),
        (("plan", "--rootfs", tree, "--max-layers", "many"), "'many' is not a whole number"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        ((), "the following arguments are required: COMMAND"),
    ]  # fmt: skip
    for args, message in cases:
        ran = run(*args)
        line = ran.usage_error()
        assert message in line, (args, line)
        assert ran.out == "", args


def test_failures_exit_1_in_one_line_naming_the_file(
    run: Callable[..., Ran], sample_tree: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    assert str(missing) in run("map", "--rootfs", str(missing)).one_error()
    for name, text in (
        ("bad.json", "{not json"),
        ("list.json", "[1, 2]"),
        ("wrong.json", '{"components": 3}'),
    ):
        path = tmp_path / name
        path.write_text(text)
        ran = run("plan", "--mapping", str(path))
        assert str(path) in ran.one_error() and "Traceback" not in ran.err, (name, ran.err)
    for args in (("--prior-plan", str(missing)), ("--prior", f"oci:{missing}")):
        ran = run("plan", "--rootfs", str(sample_tree), *args)
        assert str(missing) in ran.one_error(), args


def test_an_unforeseen_error_is_one_line_and_debug_shows_it(
    run: Callable[..., Ran], sample_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the unforeseen")

    monkeypatch.setattr(main, "build_mapping", broken)
    line = run("map", "--rootfs", str(sample_tree)).one_error()
    assert line == (
        "debchunk: error: internal error: RuntimeError: the unforeseen; rerun with --debug and report it"
    )
    with pytest.raises(RuntimeError, match="the unforeseen"):
        debchunk_main(["map", "--rootfs", str(sample_tree), "--debug"])


def test_warnings_unless_quiet_and_debug_messages_with_debug(
    run: Callable[..., Ran], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("box\n")
    told = run("map", "--rootfs", str(tree))
    assert told.status == 0
    (warning,) = told.err.splitlines()
    assert warning.startswith(f"debchunk: warning: {tree}: no dpkg database found")
    quiet = run("map", "--rootfs", str(tree), "-q")
    assert (quiet.status, quiet.err) == (0, "") and quiet.out == told.out
    # What the library logs after each: debug records only with --debug,
    # warnings unless --quiet, errors always; one line each, named by the program.
    library = logging.getLogger("debchunk.mapping")
    for options, shown in (
        ((), ["warning", "error"]),
        (("-q",), ["error"]),
        (("--debug",), ["debug", "warning", "error"]),
    ):
        assert run("map", "--rootfs", str(tree), *options).status == 0
        for level in ("debug", "warning", "error"):
            getattr(library, level)("a %s record", level)
        assert capsys.readouterr().err.splitlines() == [
            f"debchunk: {level}: a {level} record" for level in shown
        ]


def test_help_lists_the_subcommands(run: Callable[..., Ran]) -> None:
    helped = run("--help")
    assert helped.status == 0 and helped.out.startswith("usage: debchunk ")
    for command in ("map", "plan", "encapsulate", "rechunk", "inspect", "diff", "report", "validate"):
        assert re.search(rf"\n    {command}\s", helped.out), command


def test_a_reader_that_went_away_is_not_an_error(sample_tree: Path) -> None:
    """``debchunk map --json | head -c0``: the pipe closes; exit 1, nothing said."""
    read, write = os.pipe()
    os.close(read)
    code = "import sys; from encapsulate.cli.main import debchunk_main as m; sys.exit(m())"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, "map", "--rootfs", str(sample_tree), "--json"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
        )
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (1, "")
