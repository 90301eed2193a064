"""The manual pages and bash completion written from the command line parsers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from encapsulate.cli.manpage import bash_completion, debchunk_page, encapsulate_page, roff_text, write_all
from encapsulate.cli.settings import SETTINGS


def test_roff_text_escapes_what_roff_would_read() -> None:
    assert roff_text("a-b \\ c") == "a\\-b \\e c"
    # A line starting with a control character is text, not a request.
    assert roff_text("x\n.SH NOT\n'br") == "x\n\\&.SH NOT\n\\&'br"


def test_pages_list_every_option_of_the_settings_table() -> None:
    page = debchunk_page("2026-01-01", "1.2")
    single = encapsulate_page("2026-01-01", "1.2")
    assert page.startswith('.TH DEBCHUNK 1 "2026-01-01" "debchunk 1.2"')
    assert single.startswith('.TH CONTAINER\\-ENCAPSULATE 1 "2026-01-01"')
    for setting in SETTINGS:
        if setting.positional:
            continue
        flag = roff_text(setting.flags[0])
        assert f"\\fB{flag}\\fR" in page, setting.flags
        if "encapsulate" in setting.commands:
            assert f"\\fB{flag}\\fR" in single, setting.flags
    for command in ("map", "plan", "encapsulate", "rechunk", "inspect", "diff", "report", "validate", "sbom"):
        assert f".SS\n\\fBdebchunk {command}\\fR" in page, command
    # No line of running text is read as a request.
    requests = {line.split()[0] for line in page.splitlines() if line.startswith((".", "'"))}
    assert requests <= {".TH", ".SH", ".SS", ".PP", ".TP", ".RS", ".RE", ".nf", ".fi", ".br"}, requests


def test_completion_offers_each_commands_options(tmp_path: Path) -> None:
    path = tmp_path / "debchunk"
    path.write_text(bash_completion())
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0

    def complete(function: str, *words: str) -> list[str]:
        words_text = " ".join(words)
        script = (
            f"source {path}; COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; {function}; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        (tmp_path / "complete.sh").write_text(script)
        done = subprocess.run(
            ["bash", str(tmp_path / "complete.sh")], capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    assert complete("_debchunk", "debchunk", "re") == ["rechunk", "report"]
    assert complete("_debchunk", "debchunk", "rechunk", "--max-l") == ["--max-layers"]
    assert "--sbom" in complete("_debchunk", "debchunk", "encapsulate", "--sb")
    assert complete("_container_encapsulate", "container-encapsulate", "--from") == ["--from"]


def test_written_files_are_the_same_for_the_same_epoch(tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"}
    for out in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "encapsulate.cli.manpage", str(tmp_path / out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["container-encapsulate.1", "debchunk", "debchunk.1"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert '"2023-11-14"' in (tmp_path / "a/debchunk.1").read_text().split("\n", 1)[0]
    assert write_all(tmp_path / "c")[0].name == "debchunk.1"
